// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

use crate::*;
use bytes::Bytes;
use http::header;

#[derive(Debug, Clone)]
pub struct CaseHeaderName(Bytes);

impl CaseHeaderName {
    pub fn new(name: String) -> Self {
        CaseHeaderName(name.into())
    }
}

impl CaseHeaderName {
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    pub fn from_slice(buf: &[u8]) -> Self {
        CaseHeaderName(Bytes::copy_from_slice(buf))
    }
}

/// A trait that converts into case-sensitive header names.
pub trait IntoCaseHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName;

    /// The name as given: a `HeaderName`, written in its default spelling, or a spelling
    /// with, when it can be had without parsing the bytes again, its `HeaderName` (a static
    /// lower-case name becomes one without a copy). Inserting a header then skips the parse
    /// and its allocation, and a default spelling is not made unless a case map needs it.
    fn into_names(self) -> GivenName
    where
        Self: Sized,
    {
        GivenName::Spelled(self.into_case_header_name(), None)
    }
}

/// A header name as given to an insert or append ([`IntoCaseHeaderName::into_names`]).
pub enum GivenName {
    /// A `HeaderName`: written as its default spelling.
    Default(HeaderName),
    /// A spelling, and its `HeaderName` when that came without parsing.
    Spelled(CaseHeaderName, Option<HeaderName>),
}

impl IntoCaseHeaderName for CaseHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        self
    }
}

impl IntoCaseHeaderName for String {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(self.into())
    }
}

impl IntoCaseHeaderName for &'static str {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(self.into())
    }

    fn into_names(self) -> GivenName {
        // `from_static` takes lower-case token characters only (it panics otherwise)
        let plain = !self.is_empty()
            && self.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        GivenName::Spelled(CaseHeaderName(self.into()), plain.then(|| HeaderName::from_static(self)))
    }
}

impl IntoCaseHeaderName for HeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(titled_header_name(&self))
    }

    fn into_names(self) -> GivenName {
        GivenName::Default(self)
    }
}

impl IntoCaseHeaderName for &HeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(titled_header_name(self))
    }

    fn into_names(self) -> GivenName {
        GivenName::Default(self.clone())
    }
}

impl IntoCaseHeaderName for Bytes {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(self)
    }
}

fn titled_header_name(header_name: &HeaderName) -> Bytes {
    titled_header_name_str(header_name).map_or_else(
        || Bytes::copy_from_slice(header_name.as_str().as_bytes()),
        |s| Bytes::from_static(s.as_bytes()),
    )
}

pub(crate) fn titled_header_name_str(header_name: &HeaderName) -> Option<&'static str> {
    Some(match *header_name {
        header::ACCEPT_RANGES => "Accept-Ranges",
        header::AGE => "Age",
        header::CACHE_CONTROL => "Cache-Control",
        header::CONNECTION => "Connection",
        header::CONTENT_TYPE => "Content-Type",
        header::CONTENT_ENCODING => "Content-Encoding",
        header::CONTENT_LENGTH => "Content-Length",
        header::DATE => "Date",
        header::TRANSFER_ENCODING => "Transfer-Encoding",
        header::HOST => "Host",
        header::SERVER => "Server",
        header::SET_COOKIE => "Set-Cookie",
        // the names HTTP/1 clients and origins send most, in the spelling they send: a head
        // whose names are all spelled this way keeps no case map
        header::ACCEPT => "Accept",
        header::ACCEPT_CHARSET => "Accept-Charset",
        header::ACCEPT_ENCODING => "Accept-Encoding",
        header::ACCEPT_LANGUAGE => "Accept-Language",
        header::AUTHORIZATION => "Authorization",
        header::CONTENT_DISPOSITION => "Content-Disposition",
        header::CONTENT_LANGUAGE => "Content-Language",
        header::CONTENT_RANGE => "Content-Range",
        header::COOKIE => "Cookie",
        header::ETAG => "ETag",
        header::EXPECT => "Expect",
        header::EXPIRES => "Expires",
        header::IF_MATCH => "If-Match",
        header::IF_MODIFIED_SINCE => "If-Modified-Since",
        header::IF_NONE_MATCH => "If-None-Match",
        header::IF_RANGE => "If-Range",
        header::IF_UNMODIFIED_SINCE => "If-Unmodified-Since",
        header::LAST_MODIFIED => "Last-Modified",
        header::LOCATION => "Location",
        header::ORIGIN => "Origin",
        header::PRAGMA => "Pragma",
        header::RANGE => "Range",
        header::REFERER => "Referer",
        header::RETRY_AFTER => "Retry-After",
        header::UPGRADE => "Upgrade",
        header::USER_AGENT => "User-Agent",
        header::VARY => "Vary",
        header::VIA => "Via",
        header::WWW_AUTHENTICATE => "WWW-Authenticate",
        _ => {
            return None;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_case_header_name() {
        assert_eq!("FoO".into_case_header_name().as_slice(), b"FoO");
        assert_eq!("FoO".to_string().into_case_header_name().as_slice(), b"FoO");
        assert_eq!(header::SERVER.into_case_header_name().as_slice(), b"Server");
    }

    #[test]
    fn titled_names() {
        for (name, titled) in [
            (header::ACCEPT_RANGES, "Accept-Ranges"),
            (header::AGE, "Age"),
            (header::CACHE_CONTROL, "Cache-Control"),
            (header::CONNECTION, "Connection"),
            (header::CONTENT_TYPE, "Content-Type"),
            (header::CONTENT_ENCODING, "Content-Encoding"),
            (header::CONTENT_LENGTH, "Content-Length"),
            (header::DATE, "Date"),
            (header::TRANSFER_ENCODING, "Transfer-Encoding"),
            (header::HOST, "Host"),
            (header::SERVER, "Server"),
            (header::SET_COOKIE, "Set-Cookie"),
            (header::ACCEPT, "Accept"),
            (header::AUTHORIZATION, "Authorization"),
            (header::USER_AGENT, "User-Agent"),
            (header::ETAG, "ETag"),
            (header::VARY, "Vary"),
            (header::WWW_AUTHENTICATE, "WWW-Authenticate"),
        ] {
            assert_eq!(titled_header_name_str(&name), Some(titled));
        }
        for name in [header::TE, header::ALT_SVC, header::X_FRAME_OPTIONS] {
            assert_eq!(titled_header_name_str(&name), None);
        }
        let custom = HeaderName::from_static("x-date");
        assert_eq!(titled_header_name_str(&custom), None);
        assert_eq!(custom.into_case_header_name().as_slice(), b"x-date");
    }
}
