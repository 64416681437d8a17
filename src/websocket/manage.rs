//! The `@connections` management API, shared by the admin listener and the public one
//! (`/{stage}{base_path}/@connections/{id}`, AWS-style): POST sends the body to the
//! connection, GET describes it, DELETE closes it. Errors are AWS's, named in
//! `x-amzn-ErrorType` (GoneException 410, PayloadTooLargeException 413,
//! LimitExceededException 429), so an AWS SDK's ApiGatewayManagementApi client reads them.

use super::{Push, Registry};
use bytes::Bytes;

/// An answer: status, `x-amzn-ErrorType` (errors), JSON body.
pub struct Answer {
    pub status: u16,
    pub error_type: Option<&'static str>,
    pub body: Vec<u8>,
}

/// An AWS-style management error: `status`, `x-amzn-ErrorType: kind`, `{"message"}`.
pub fn error(status: u16, kind: &'static str, message: &str) -> Answer {
    Answer { status, error_type: Some(kind), body: serde_json::json!({"message": message}).to_string().into_bytes() }
}

/// The `x-amzn-ErrorType` values this API answers with.
pub const ERROR_TYPES: [&str; 6] = [
    "GoneException",
    "ForbiddenException",
    "PayloadTooLargeException",
    "LimitExceededException",
    "BadRequestException",
    "InternalServerErrorException",
];

pub fn gone(id: &str) -> Answer {
    error(410, "GoneException", &format!("connection {id} is gone"))
}

/// The connection id of a management path's last segment, percent-decoded (SDKs encode
/// `=`, `+` and `/`).
pub fn decode_id(segment: &str) -> Option<String> {
    let id = crate::request::decode_component(segment).into_owned();
    (!id.is_empty() && !id.contains('/') && id.len() <= 128).then_some(id)
}

/// A management path (below the admin root, or below a WebSocket API's stage and base path):
/// `/@connections` (`@` raw or as `%40`) gives `Some("")` (a broadcast), `/@connections/{id}`
/// gives the raw id; anything else, `None`.
pub fn connections_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/@connections").or_else(|| path.strip_prefix("/%40connections"))?;
    match rest {
        "" => Some(""),
        r => r.strip_prefix('/').filter(|id| !id.is_empty()),
    }
}

/// Runs one management call on this node's registry; `scope` (API, stage) limits it to the
/// connections of one API stage (the public listener's form).
pub fn handle(reg: &Registry, method: &http::Method, id: &str, body: Bytes, scope: Option<(&str, &str)>) -> Answer {
    let Some(conn) = reg.get(id) else { return gone(id) };
    if scope.is_some_and(|(a, s)| *conn.api != *a || *conn.stage != *s) {
        return gone(id);
    }
    match *method {
        http::Method::POST => {
            if body.len() > conn.max_message {
                return error(413, "PayloadTooLargeException", "the message is larger than max_message_size");
            }
            let p = match std::str::from_utf8(&body) {
                Ok(t) => Push::Text(t.to_string()),
                Err(_) => Push::Binary(body),
            };
            match conn.push(p) {
                Ok(()) => Answer { status: 200, error_type: None, body: Vec::new() },
                Err(true) => error(429, "LimitExceededException", "too many messages queued for this connection"),
                Err(false) => gone(id),
            }
        }
        http::Method::GET => Answer { status: 200, error_type: None, body: conn.describe().to_string().into_bytes() },
        http::Method::DELETE => {
            // gone at once for every later call, here and through the cluster relay; the
            // close frame follows on the connection's own task
            reg.unregister(&conn);
            match conn.close(1000, "closed by the management API") {
                true => Answer { status: 204, error_type: None, body: Vec::new() },
                false => gone(id),
            }
        }
        _ => error(405, "BadRequestException", "use POST, GET or DELETE"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_ids() {
        assert_eq!(connections_path("/@connections/abc%3D"), Some("abc%3D"));
        assert_eq!(connections_path("/%40connections/abc"), Some("abc"));
        assert_eq!(connections_path("/@connections"), Some(""));
        assert_eq!(connections_path("/@connections/"), None);
        assert_eq!(connections_path("/@connectionsX/y"), None);
        assert_eq!(connections_path("/x/@connections/y"), None, "only at the root of the API");
        assert_eq!(decode_id("L0SM9cOFvHcCIhw%3D").as_deref(), Some("L0SM9cOFvHcCIhw="));
        assert_eq!(decode_id("a%2Fb"), None);
        assert_eq!(decode_id(""), None);
        let a = handle(&Registry::default(), &http::Method::POST, "nope", Bytes::from_static(b"x"), None);
        assert_eq!((a.status, a.error_type), (410, Some("GoneException")));
    }
}
