//! Request and response transforms (`request_transform`, `response_transform`): header,
//! query, path and status changes, and body templates. Templates are compiled into the
//! snapshot's environment at load; here are the compiled forms and the pure helpers the
//! proxy phases call. Without a body template bodies stream through untouched.

use http::{HeaderName, StatusCode};

/// A template in the snapshot's environment, by name.
pub type TemplateName = String;

pub struct RequestTransform {
    pub set_headers: Vec<(HeaderName, TemplateName)>,
    pub remove_headers: Vec<HeaderName>,
    pub set_query: Vec<(String, TemplateName)>,
    /// Replaces the path of the integration request.
    pub path: Option<TemplateName>,
    pub body: Option<TemplateName>,
}

pub struct ResponseTransform {
    pub status: Vec<(StatusCode, StatusCode)>,
    pub set_headers: Vec<(HeaderName, TemplateName)>,
    pub remove_headers: Vec<HeaderName>,
    pub body: Option<TemplateName>,
}

impl ResponseTransform {
    pub fn map_status(&self, s: StatusCode) -> StatusCode {
        self.status.iter().find(|(from, _)| *from == s).map(|(_, to)| *to).unwrap_or(s)
    }
}

/// `binary_media_types`: bodies of these types bypass body templates (they pass through as
/// they are). Patterns are exact types or `type/*`.
#[derive(Default)]
pub struct BinaryTypes(pub Vec<String>);

impl BinaryTypes {
    pub fn matches(&self, content_type: Option<&str>) -> bool {
        let mt = crate::request::media_type(content_type);
        !mt.is_empty()
            && self.0.iter().any(|p| p == "*/*" || *p == mt || (p.ends_with("/*") && mt.starts_with(&p[..p.len() - 1])))
    }
}

/// Sets (or replaces) query parameters in an upstream target `path?query`.
pub fn set_query(target: &str, set: &[(&str, String)]) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let mut out: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let name = p.split('=').next().unwrap_or("");
            let name = crate::request::decode_component(name);
            !set.iter().any(|(k, _)| *k == name)
        })
        .map(str::to_string)
        .collect();
    out.extend(set.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))));
    if out.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", out.join("&"))
    }
}

/// Replaces the path of an upstream target, keeping its query.
pub fn set_path(target: &str, path: &str) -> String {
    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    match target.split_once('?') {
        Some((_, q)) => format!("{path}?{q}"),
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_path_edits() {
        assert_eq!(set_query("/a?x=1&y=2", &[("y", "b c".into()), ("z", "3".into())]), "/a?x=1&y=b%20c&z=3");
        assert_eq!(set_query("/a", &[]), "/a");
        assert_eq!(set_path("/a/b?x=1", "/c"), "/c?x=1");
        assert_eq!(set_path("/a", "c"), "/c");
    }

    #[test]
    fn binary_types_match_wildcards() {
        let b = BinaryTypes(vec!["image/*".into(), "application/octet-stream".into()]);
        assert!(b.matches(Some("image/png")));
        assert!(b.matches(Some("Application/Octet-Stream; x=1")));
        assert!(!b.matches(Some("application/json")));
        assert!(!b.matches(None));
    }

    #[test]
    fn status_remap() {
        let t = ResponseTransform {
            status: vec![(StatusCode::CREATED, StatusCode::OK)],
            set_headers: vec![],
            remove_headers: vec![],
            body: None,
        };
        assert_eq!(t.map_status(StatusCode::CREATED), StatusCode::OK);
        assert_eq!(t.map_status(StatusCode::ACCEPTED), StatusCode::ACCEPTED);
    }
}
