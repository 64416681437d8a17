//! Management calls wherever the connection is: on this node's registry, or (with
//! `[cluster]`) relayed to the node that holds it; and broadcasts to many connections.

use super::manage::{self, error, Answer};
use bytes::Bytes;

/// A management call wherever the connection is: this node, or (with `[cluster]`) the node
/// that holds it.
pub async fn handle_any(
    reg: &super::Registry,
    method: &http::Method,
    id: &str,
    body: Bytes,
    scope: Option<(&str, &str)>,
    cluster: Option<&std::sync::Arc<crate::throttle::cluster::Cluster>>,
) -> Answer {
    match (reg.contains(id), cluster) {
        (false, Some(c)) => super::cluster::remote(c, method, id, body, scope).await,
        _ => manage::handle(reg, method, id, body, scope),
    }
}

/// `POST /@connections` with `{"ids": [...], "data": "text"}` (or `"dataBase64"`): one message
/// to many connections, on any node. Each connection gets it at most once, in the order of
/// its own queue; the answer lists what was delivered and which ids were gone or full.
pub async fn broadcast(
    reg: &super::Registry,
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
    let calls = ids.iter().map(|id| handle_any(reg, &http::Method::POST, id, data.clone(), scope, cluster));
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
