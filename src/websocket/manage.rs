//! The `@connections` management API, shared by the admin listener and the public one
//! (`/{stage}{base_path}/@connections/{id}`, AWS-style): POST sends the body to the
//! connection, GET describes it, DELETE closes it. Errors are AWS's, named in
//! `x-amzn-ErrorType` (GoneException 410, PayloadTooLargeException 413,
//! LimitExceededException 429), so an AWS SDK's ApiGatewayManagementApi client reads them.

use super::{Push, REGISTRY};
use bytes::Bytes;

/// An answer: status, `x-amzn-ErrorType` (errors), JSON body.
pub struct Answer {
    pub status: u16,
    pub error_type: Option<&'static str>,
    pub body: Vec<u8>,
}

fn error(status: u16, kind: &'static str, message: &str) -> Answer {
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
pub fn handle(method: &http::Method, id: &str, body: Bytes, scope: Option<(&str, &str)>) -> Answer {
    let Some(conn) = REGISTRY.get(id).map(|c| c.clone()) else { return gone(id) };
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
            super::unregister(&conn);
            match conn.close(1000, "closed by the management API") {
                true => Answer { status: 204, error_type: None, body: Vec::new() },
                false => gone(id),
            }
        }
        _ => error(405, "BadRequestException", "use POST, GET or DELETE"),
    }
}

/// A management call wherever the connection is: this node, or (with `[cluster]`) the node
/// that holds it.
pub async fn handle_any(
    method: &http::Method,
    id: &str,
    body: Bytes,
    scope: Option<(&str, &str)>,
    cluster: Option<&std::sync::Arc<crate::throttle::cluster::Cluster>>,
) -> Answer {
    match (REGISTRY.contains_key(id), cluster) {
        (false, Some(c)) => super::cluster::remote(c, method, id, body, scope).await,
        _ => handle(method, id, body, scope),
    }
}

/// `POST /@connections` with `{"ids": [...], "data": "text"}` (or `"dataBase64"`): one message
/// to many connections, on any node. Each connection gets it at most once, in the order of
/// its own queue; the answer lists what was delivered and which ids were gone or full.
pub async fn broadcast(
    body: &[u8],
    scope: Option<(&str, &str)>,
    cluster: Option<&std::sync::Arc<crate::throttle::cluster::Cluster>>,
) -> Answer {
    use base64::Engine;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Req {
        ids: Vec<String>,
        data: Option<String>,
        data_base64: Option<String>,
    }
    let bad = |m: &str| error(400, "BadRequestException", m);
    let Ok(req) = serde_json::from_slice::<Req>(body) else {
        return bad("the body must be {\"ids\": [...], \"data\": \"...\"} (or \"dataBase64\")");
    };
    let data = match (req.data, req.data_base64) {
        (Some(t), None) => Bytes::from(t),
        (None, Some(b)) => match base64::engine::general_purpose::STANDARD.decode(b) {
            Ok(d) => Bytes::from(d),
            Err(_) => return bad("dataBase64 is not base64"),
        },
        _ => return bad("give data or dataBase64"),
    };
    if req.ids.len() > 10_000 {
        return bad("at most 10000 ids a call");
    }
    // each connection gets the message at most once, however often its id is listed
    let mut seen = std::collections::HashSet::with_capacity(req.ids.len());
    let mut ids = req.ids;
    ids.retain(|id| seen.insert(id.clone()));
    let calls = ids.iter().map(|id| handle_any(&http::Method::POST, id, data.clone(), scope, cluster));
    let answers = futures_util::future::join_all(calls).await;
    let mut delivered = 0;
    let (mut gone, mut failed) = (Vec::new(), Vec::new());
    for (id, a) in ids.iter().zip(answers) {
        match a.status {
            200 => delivered += 1,
            410 => gone.push(id.clone()),
            _ => failed.push(serde_json::json!({"id": id, "status": a.status, "errorType": a.error_type})),
        }
    }
    Answer {
        status: 200,
        error_type: None,
        body: serde_json::json!({"delivered": delivered, "gone": gone, "failed": failed}).to_string().into_bytes(),
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
        let a = handle(&http::Method::POST, "nope", Bytes::from_static(b"x"), None);
        assert_eq!((a.status, a.error_type), (410, Some("GoneException")));
    }
}
