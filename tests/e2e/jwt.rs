//! JWT authorizers: good tokens pass with their claims; the attacks users worry about fail.

use crate::common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

fn b64url(bytes: &[u8]) -> String {
    openssl::base64::encode_block(bytes).replace('+', "-").replace('/', "_").trim_end_matches('=').to_string()
}

pub(crate) struct Keys {
    pub(crate) rsa_pem: Vec<u8>,
    rsa_pub_pem: Vec<u8>,
    other_rsa_pem: Vec<u8>,
    ec_pem: Vec<u8>,
}

fn rsa() -> (Vec<u8>, openssl::rsa::Rsa<openssl::pkey::Private>) {
    let k = openssl::rsa::Rsa::generate(2048).expect("rsa");
    (k.private_key_to_pem().expect("pem"), k)
}

/// Writes jwks.json (an RSA key "rsa1" and an EC key "ec1") and returns the private keys.
pub(crate) fn write_jwks(dir: &std::path::Path) -> Keys {
    let (rsa_pem, k) = rsa();
    let (other_rsa_pem, _) = rsa();
    let rsa_pub_pem = k.public_key_to_pem().expect("pub");
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).expect("group");
    let ec = openssl::ec::EcKey::generate(&group).expect("ec");
    let mut ctx = openssl::bn::BigNumContext::new().expect("ctx");
    let (mut x, mut y) = (openssl::bn::BigNum::new().expect("x"), openssl::bn::BigNum::new().expect("y"));
    ec.public_key().affine_coordinates(&group, &mut x, &mut y, &mut ctx).expect("coords");
    let ec_pem = openssl::pkey::PKey::from_ec_key(ec).expect("pkey").private_key_to_pem_pkcs8().expect("pem");
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa1", "use": "sig", "alg": "RS256", "n": b64url(&k.n().to_vec()), "e": b64url(&k.e().to_vec())},
        {"kty": "EC", "kid": "ec1", "use": "sig", "alg": "ES256", "crv": "P-256", "x": b64url(&x.to_vec_padded(32).expect("x")), "y": b64url(&y.to_vec_padded(32).expect("y"))},
    ]});
    std::fs::write(dir.join("jwks.json"), jwks.to_string()).expect("jwks");
    Keys { rsa_pem, rsa_pub_pem, other_rsa_pem, ec_pem }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs() as i64
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({"iss": "https://auth.example.test/", "aud": "pets-api", "sub": "user-42", "exp": now() + 300, "scope": "pets/read profile"});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

pub(crate) fn rs256(pem: &[u8], kid: &str, c: &serde_json::Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.to_string());
    encode(&h, c, &EncodingKey::from_rsa_pem(pem).expect("key")).expect("sign")
}

fn start() -> (Gateway, Keys) {
    let cell = std::sync::Arc::new(std::sync::Mutex::new(None));
    let c2 = cell.clone();
    let gw = Gateway::start(move |d, p| {
        *c2.lock().expect("lock") = Some(write_jwks(d));
        format!(
            r#"{server}
[authorizers.users]
type = "jwt"
issuer = "https://auth.example.test/"
audience = ["pets-api"]
jwks = "jwks.json"
algorithms = ["RS256", "ES256"]
identity_source = "$request.header.Authorization"
leeway = "30s"

[[apis]]
name = "pets"
[apis.stages.prod]
[apis.integrations.me]
type = "mock"
body = "{{{{ context.authorizer.principalId }}}} {{{{ context.authorizer.claims.aud }}}}"
[[apis.routes]]
route = "GET /me"
integration = "me"
authorizer = "users"
[[apis.routes]]
route = "GET /pets"
integration = "me"
authorizer = "users"
scopes = ["pets/read"]
[[apis.routes]]
route = "POST /pets"
integration = "me"
authorizer = "users"
scopes = ["pets/write"]
"#,
            server = server_section(d, p, "")
        )
    });
    let keys = cell.lock().expect("lock").take().expect("keys");
    (gw, keys)
}

fn call(gw: &Gateway, method: &str, path: &str, token: &str) -> Response {
    send(gw.addr(), method, path, &[("Authorization", &format!("Bearer {token}"))], b"")
}

#[test]
fn valid_tokens_pass_with_their_claims() {
    let (gw, k) = start();
    let t = rs256(&k.rsa_pem, "rsa1", &claims(json!({})));
    let r = call(&gw, "GET", "/prod/me", &t);
    assert_eq!((r.status, r.text().as_str()), (200, "user-42 pets-api"));
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("ec1".into());
    let t = encode(&h, &claims(json!({"sub": "ec-user"})), &EncodingKey::from_ec_pem(&k.ec_pem).expect("ec"))
        .expect("sign");
    assert_eq!(call(&gw, "GET", "/prod/me", &t).text(), "ec-user pets-api");
    // within the leeway
    let t = rs256(&k.rsa_pem, "rsa1", &claims(json!({"exp": now() - 10})));
    assert_eq!(call(&gw, "GET", "/prod/me", &t).status, 200);
    let line = gw.wait_log("\"principalId\":\"user-42\"");
    assert!(!line.contains(&t[..20]), "tokens are never logged");
}

#[test]
fn missing_expired_and_foreign_tokens_are_refused() {
    let (gw, k) = start();
    let r = gw.get("/prod/me");
    assert_eq!((r.status, r.json()["message"].as_str()), (401, Some("Unauthorized")));
    let expired = rs256(&k.rsa_pem, "rsa1", &claims(json!({"exp": now() - 120})));
    let r = call(&gw, "GET", "/prod/me", &expired);
    assert_eq!((r.status, r.json()["message"].as_str()), (403, Some("The incoming token has expired")));
    let cases = [
        ("not yet valid", rs256(&k.rsa_pem, "rsa1", &claims(json!({"nbf": now() + 600})))),
        ("other issuer", rs256(&k.rsa_pem, "rsa1", &claims(json!({"iss": "https://evil.example.test/"})))),
        ("other audience", rs256(&k.rsa_pem, "rsa1", &claims(json!({"aud": "other-api"})))),
        ("unknown kid", rs256(&k.rsa_pem, "nope", &claims(json!({})))),
        ("other key, same kid", rs256(&k.other_rsa_pem, "rsa1", &claims(json!({})))),
        ("exp as a string", rs256(&k.rsa_pem, "rsa1", &claims(json!({"exp": "9999999999"})))),
        ("no exp", {
            let mut c = claims(json!({}));
            c.as_object_mut().expect("obj").remove("exp");
            rs256(&k.rsa_pem, "rsa1", &c)
        }),
        ("garbage", "abc.def.ghi".to_string()),
    ];
    for (what, t) in cases {
        let r = call(&gw, "GET", "/prod/me", &t);
        assert_eq!(r.status, 401, "{what}: {}", r.text());
    }
    eventually("auth failure metrics", || {
        let m = gw.metrics();
        m.contains(r#"authorizer="users",reason="expired""#) && m.contains(r#"authorizer="users",reason="issuer""#)
    });
}

#[test]
fn alg_none_and_key_confusion_are_refused() {
    let (gw, k) = start();
    // alg "none", no signature
    let body = b64url(claims(json!({})).to_string().as_bytes());
    for header in [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"None","kid":"rsa1"}"#] {
        let t = format!("{}.{body}.", b64url(header.as_bytes()));
        assert_eq!(call(&gw, "GET", "/prod/me", &t).status, 401, "{header}");
    }
    // HS256 signed with the RSA public key as the HMAC secret
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("rsa1".into());
    let t = encode(&h, &claims(json!({})), &EncodingKey::from_secret(&k.rsa_pub_pem)).expect("sign");
    assert_eq!(call(&gw, "GET", "/prod/me", &t).status, 401);
    // an RS256 header on the EC key
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("rsa1".into());
    let t = encode(&h, &claims(json!({})), &EncodingKey::from_ec_pem(&k.ec_pem).expect("ec")).expect("sign");
    assert_eq!(call(&gw, "GET", "/prod/me", &t).status, 401);
}

#[test]
fn route_scopes_are_enforced() {
    let (gw, k) = start();
    let read = rs256(&k.rsa_pem, "rsa1", &claims(json!({})));
    assert_eq!(call(&gw, "GET", "/prod/pets", &read).status, 200);
    let r = call(&gw, "POST", "/prod/pets", &read);
    assert_eq!(r.status, 403, "{}", r.text());
    let write = rs256(&k.rsa_pem, "rsa1", &claims(json!({"scope": null, "scp": ["pets/write"]})));
    assert_eq!(call(&gw, "POST", "/prod/pets", &write).status, 200, "scp array");
}

fn rsa_jwk(kid: &str) -> (Vec<u8>, serde_json::Value) {
    let (pem, k) = rsa();
    (pem, json!({"kty": "RSA", "kid": kid, "alg": "RS256", "n": b64url(&k.n().to_vec()), "e": b64url(&k.e().to_vec())}))
}

#[test]
fn jwks_urls_are_fetched_and_an_unknown_kid_refetches_once() {
    let (pem_a, jwk_a) = rsa_jwk("a1");
    let (pem_b, jwk_b) = rsa_jwk("b1");
    let doc = std::sync::Arc::new(std::sync::Mutex::new(json!({"keys": [jwk_a.clone()]}).to_string()));
    let served = doc.clone();
    let server = serve(move |_, _| (200, served.lock().expect("lock").clone()));
    let url = format!("{}/jwks.json", server.base);
    let gw = Gateway::start(|d, p| {
        format!(
            r#"{server}
[authorizers.users]
type = "jwt"
issuer = "https://auth.example.test/"
audience = ["pets-api"]
jwks = "{url}"
jwks_refresh = "10m"
algorithms = ["RS256"]

[[apis]]
name = "pets"
[apis.stages.prod]
[[apis.routes]]
route = "GET /me"
integration = {{ type = "mock", body = "{{{{ context.authorizer.principalId }}}}" }}
authorizer = "users"
"#,
            server = server_section(d, p, "")
        )
    });
    let fetched_at_load = server.hits();
    assert_eq!(fetched_at_load, 1, "fetched once when the config loaded");
    assert_eq!(call(&gw, "GET", "/prod/me", &rs256(&pem_a, "a1", &claims(json!({})))).text(), "user-42");

    // the issuer rotates in a new key: the first token with its kid makes one refetch
    *doc.lock().expect("lock") = json!({"keys": [jwk_a, jwk_b]}).to_string();
    let r = call(&gw, "GET", "/prod/me", &rs256(&pem_b, "b1", &claims(json!({"sub": "rotated"}))));
    assert_eq!((r.status, r.text().as_str()), (200, "rotated"));
    assert_eq!(server.hits(), 2);
    // unknown kids right after do not hammer the issuer
    for _ in 0..5 {
        assert_eq!(call(&gw, "GET", "/prod/me", &rs256(&pem_b, "zz", &claims(json!({})))).status, 401);
    }
    assert_eq!(server.hits(), 2, "rate-limited refetch");
}
