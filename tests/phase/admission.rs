//! The admission pipeline (`edgegate::admission`): its order, its refusals, and what it
//! reads of the body.

use async_trait::async_trait;
use bytes::Bytes;
use edgegate::admission::{self, Incoming};
use edgegate::aws::sigv4;
use edgegate::clock::unix_now;
use edgegate::proxy::ctx::Timing;
use edgegate::request::{BodyError, Caller, Client, Matched, RequestView};
use edgegate::responses::{Counted, Refusal, ResponseType};
use std::collections::BTreeMap;

const SECRET: &str = "phase-secret";

/// A request as plain values; counts how often its body is read.
struct Fixture {
    head: http::request::Parts,
    body: Bytes,
    read: Option<Bytes>,
    reads: usize,
    client: Client,
    caller: Caller,
    route_key: &'static str,
    path: &'static str,
    variables: BTreeMap<String, String>,
}

impl Fixture {
    fn new(method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8], route_key: &'static str) -> Fixture {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (head, ()) = b.body(()).expect("request").into_parts();
        let path = route_key.split_once(' ').map(|(_, p)| p).unwrap_or("/");
        Fixture {
            head,
            body: Bytes::copy_from_slice(body),
            read: None,
            reads: 0,
            client: Client { ip: Some("127.0.0.7".parse().expect("ip")), ..Client::default() },
            caller: Caller::default(),
            route_key,
            path,
            variables: BTreeMap::new(),
        }
    }
}

#[async_trait]
impl Incoming for Fixture {
    fn view(&self) -> RequestView<'_> {
        RequestView {
            head: &self.head,
            route: Matched {
                api: "p",
                stage: "prod",
                route_key: self.route_key,
                path: self.path,
                params: &[],
                variables: &self.variables,
            },
            client: &self.client,
            caller: &self.caller,
            request_id: "phase-1",
            received_at: std::time::SystemTime::now(),
            body: self.read.as_deref(),
        }
    }

    fn has_body(&mut self) -> bool {
        !self.body.is_empty()
    }

    async fn read_body(&mut self, max: u64) -> Result<(), BodyError> {
        self.reads += 1;
        if self.body.len() as u64 > max {
            return Err(BodyError::TooLarge);
        }
        self.read = Some(self.body.clone());
        Ok(())
    }
}

fn config(dir: &std::path::Path) -> String {
    std::fs::write(
        dir.join("credentials.toml"),
        format!(
            r#"[[credentials]]
access_key_id = "AKPHASE"
secret = "{SECRET}"
policies = ['{{"Statement": [{{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*"}}]}}']
"#
        ),
    )
    .expect("credentials");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgegate"))
        .args(["keys", "create", "--plan", "gold", "--name", "acme"])
        .output()
        .expect("keys");
    let keys: String = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("keys.toml"), keys).expect("keys file");
    format!(
        r#"{server}
[api_keys]
file = "keys.toml"

[[usage_plans]]
name = "gold"
stages = ["p:prod"]
throttle = {{ rate = 0.001, burst = 1 }}

[authorizers.fn]
type = "request"
uri = "http://127.0.0.1:9/authorize"
identity_sources = ["$request.header.x-token"]
response = "simple"
result_ttl = "0s"

[authorizers.iam]
type = "sigv4"
service = "execute-api"
region = "us-east-1"
credentials = "credentials.toml"

[[apis]]
name = "p"
[apis.stages.prod]
[apis.integrations.ok]
type = "mock"
body = "ok"

[[apis.routes]]
route = "GET /guarded"
integration = "ok"
authorizer = "fn"
throttle = {{ rate = 0.001, burst = 1 }}

[[apis.routes]]
route = "GET /who"
integration = "ok"
authorizer = "fn"

[[apis.routes]]
route = "POST /pets"
integration = "ok"
validate = {{ body = {{ type = "object", required = ["name"], properties = {{ name = {{ type = "string" }}, tags = {{ type = "array" }} }} }}, query = ["lang"] }}

[[apis.routes]]
route = "GET /key"
integration = "ok"
api_key_required = true

[[apis.routes]]
route = "POST /signed"
integration = "ok"
authorizer = "iam"
"#,
        server = super::SERVER
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    snap: std::sync::Arc<edgegate::snapshot::Snapshot>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let snap = super::snapshot(dir.path(), &config(dir.path()));
    Setup { _dir: dir, snap }
}

impl Setup {
    fn route(&self, key: &str) -> (usize, usize, usize) {
        let ri = self.snap.apis[0].routes.iter().position(|r| &*r.key == key).expect("route");
        (0, 0, ri)
    }

    async fn admit(&self, f: &mut Fixture) -> Result<admission::Admitted, Refusal> {
        let rules = edgegate::proxy::admission::rules(&self.snap, self.route(f.route_key), &Timing::now());
        admission::admit(f, &rules).await
    }
}

fn refused(r: Result<admission::Admitted, Refusal>) -> Refusal {
    match r {
        Ok(_) => panic!("admitted, expected a refusal"),
        Err(r) => r,
    }
}

#[tokio::test]
async fn throttles_run_before_the_authorizer() {
    let s = setup();
    // the authorizer's address answers nothing: calling it fails the request (500)
    let mut f = Fixture::new("GET", "/guarded", &[("x-token", "t")], b"", "GET /guarded");
    let first = refused(s.admit(&mut f).await);
    assert_eq!(first.response, ResponseType::AuthorizerFailure, "the authorizer was called and failed");
    // the route's bucket (burst 1) is now empty: the next request never reaches the authorizer
    let mut f = Fixture::new("GET", "/guarded", &[("x-token", "t")], b"", "GET /guarded");
    let second = refused(s.admit(&mut f).await);
    assert_eq!(second.response, ResponseType::Throttled);
    assert!(matches!(second.counted, Counted::Throttled("route")));
    assert!(second.headers.iter().any(|(k, _)| *k == "retry-after"));
}

#[tokio::test]
async fn a_missing_identity_source_is_refused_without_a_call() {
    let s = setup();
    let mut f = Fixture::new("GET", "/who", &[], b"", "GET /who");
    let r = refused(s.admit(&mut f).await);
    assert_eq!((r.response, r.response.status()), (ResponseType::Unauthorized, 401));
}

#[tokio::test]
async fn validation_reads_the_body_once_and_names_the_rule() {
    let s = setup();
    let json = [("content-type", "application/json")];
    let mut f = Fixture::new("POST", "/pets?lang=en", &json, br#"{"name": "rex", "tags": 3}"#, "POST /pets");
    let r = refused(s.admit(&mut f).await);
    assert_eq!(r.response, ResponseType::BadRequestBody);
    assert_eq!(r.message.as_deref(), Some("Invalid request body: /tags violates type"));
    assert_eq!(f.reads, 1);

    let mut f = Fixture::new("POST", "/pets?lang=en", &json, br#"{"name": "rex"}"#, "POST /pets");
    assert!(s.admit(&mut f).await.is_ok());
    assert_eq!(f.reads, 1);

    // a missing parameter is refused before the body is read
    let mut f = Fixture::new("POST", "/pets", &json, br#"{"name": "rex"}"#, "POST /pets");
    let r = refused(s.admit(&mut f).await);
    assert_eq!(r.response, ResponseType::BadRequestParameters);
    assert_eq!(f.reads, 0);

    // a media type the route does not take: 415, the body unread
    let mut f = Fixture::new("POST", "/pets?lang=en", &[("content-type", "text/plain")], b"name=rex", "POST /pets");
    let r = refused(s.admit(&mut f).await);
    assert_eq!((r.response, r.status), (ResponseType::BadRequestBody, Some(415)));
    assert_eq!(f.reads, 0);

    // a body over max_body is refused as too large
    let big = vec![b' '; 300 * 1024];
    let mut f = Fixture::new("POST", "/pets?lang=en", &json, &big, "POST /pets");
    assert_eq!(refused(s.admit(&mut f).await).response, ResponseType::RequestTooLarge);
}

#[tokio::test]
async fn api_keys_and_their_plans() {
    let s = setup();
    let mut f = Fixture::new("GET", "/key", &[], b"", "GET /key");
    let r = refused(s.admit(&mut f).await);
    assert_eq!(r.response, ResponseType::MissingAuthenticationToken);
    let mut f = Fixture::new("GET", "/key", &[("x-api-key", "not-a-key")], b"", "GET /key");
    assert_eq!(refused(s.admit(&mut f).await).response, ResponseType::ApiKeyInvalid);
}

fn signed_fixture(body_signed: &[u8], body_sent: &[u8]) -> Fixture {
    let h = sigv4::sign_request(
        "AKPHASE",
        SECRET,
        "us-east-1",
        "execute-api",
        "POST",
        "http://localhost/signed",
        &[],
        body_signed,
        unix_now(),
    )
    .expect("sign");
    let mut headers: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    headers.push(("host", "localhost"));
    let mut f = Fixture::new("POST", "/signed", &headers, body_sent, "POST /signed");
    f.head.uri = "http://localhost/signed".parse().expect("uri");
    f
}

#[tokio::test]
async fn sigv4_checks_the_body_it_read() {
    let s = setup();
    let mut f = signed_fixture(b"{\"amount\": 1}", b"{\"amount\": 1}");
    let a = s.admit(&mut f).await.unwrap_or_else(|r| panic!("refused: {:?} {:?}", r.response, r.message));
    assert_eq!(a.caller.principal.as_ref().map(|p| p.principal_id.as_str()), Some("AKPHASE"));
    assert_eq!(f.reads, 1);
    let mut f = signed_fixture(b"{\"amount\": 1}", b"{\"amount\": 9}");
    let r = refused(s.admit(&mut f).await);
    assert_eq!(r.response, ResponseType::InvalidSignature, "{:?}", r.message);
    assert_eq!(f.reads, 1);
}

#[tokio::test]
async fn limiter_state_belongs_to_the_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = config(dir.path());
    let rt = edgegate::runtime::Runtime::new();
    let first =
        Setup { _dir: tempfile::tempdir().expect("tempdir"), snap: super::snapshot_with(dir.path(), &toml, &rt) };
    let mut f = Fixture::new("GET", "/guarded", &[("x-token", "t")], b"", "GET /guarded");
    assert_eq!(refused(first.admit(&mut f).await).response, ResponseType::AuthorizerFailure);
    // a reload compiles the same config with the same runtime: the spent bucket stays spent
    let reloaded =
        Setup { _dir: tempfile::tempdir().expect("tempdir"), snap: super::snapshot_with(dir.path(), &toml, &rt) };
    let mut f = Fixture::new("GET", "/guarded", &[("x-token", "t")], b"", "GET /guarded");
    assert_eq!(refused(reloaded.admit(&mut f).await).response, ResponseType::Throttled);
    // another runtime (another process) starts with full buckets
    let fresh = Setup { _dir: tempfile::tempdir().expect("tempdir"), snap: super::snapshot(dir.path(), &toml) };
    let mut f = Fixture::new("GET", "/guarded", &[("x-token", "t")], b"", "GET /guarded");
    assert_eq!(refused(fresh.admit(&mut f).await).response, ResponseType::AuthorizerFailure);
}
