//! Hot-path benchmarks of access control: API key lookup, token-bucket checks (shared and
//! per key), resource-policy evaluation and JWT verification with a loaded key.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use edgegate::api_keys::{hash_key, KeyStore};
use edgegate::auth::jwt::{JwtAuthorizer, JwtSettings};
use edgegate::policy::Policy;
use edgegate::throttle::bucket::{now_ns, Bucket, KeyedBuckets};
use std::sync::Arc;

#[path = "support/counting.rs"]
mod counting;
#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;
use counting::report;

fn b64url(bytes: &[u8]) -> String {
    openssl::base64::encode_block(bytes).replace('+', "-").replace('/', "_").trim_end_matches('=').to_string()
}

fn bench(c: &mut Criterion) {
    let mut store = KeyStore::default();
    for i in 0..10_000 {
        store.insert(&format!("key-{i}"), hash_key(format!("secret-{i}").as_bytes()), "gold", true);
    }
    report("api key lookup", || store.find(b"secret-5000").is_some());
    c.bench_function("api key lookup (10,000 keys)", |b| b.iter(|| black_box(store.find(black_box(b"secret-5000")))));

    let bucket = Bucket::new(1e9, 1_000_000_000);
    c.bench_function("token bucket take", |b| b.iter(|| black_box(bucket.take(now_ns()))));
    let keyed = KeyedBuckets::new(1e9, 1_000_000_000);
    let key: Arc<str> = Arc::from("key-1");
    report("per-key token bucket take", || keyed.take(&key, now_ns()));
    let quota = edgegate::throttle::quota::Quota::new(u64::MAX, edgegate::throttle::quota::Period::Day, 0);
    report("quota take (known key)", || quota.take(&key, 1_795_525_200).is_ok());
    c.bench_function("quota take (known key)", |b| b.iter(|| black_box(quota.take(&key, 1_795_525_200))));
    c.bench_function("per-key token bucket take", |b| b.iter(|| black_box(keyed.take(&key, now_ns()))));

    let policy = Policy {
        allow: vec!["10.0.0.0/8".parse().expect("net"), "192.168.0.0/16".parse().expect("net")],
        deny: vec!["10.6.6.0/24".parse().expect("net")],
        require_headers: vec![],
    };
    let headers = http::HeaderMap::new();
    let ip = Some("10.1.2.3".parse().expect("ip"));
    c.bench_function("resource policy check", |b| b.iter(|| black_box(policy.check(ip, &headers))));

    let iam = edgegate::auth::iam::Policy::parse(&serde_json::json!({"Statement": [
        {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "arn:edgegate:execute-api:pets/prod/*"},
        {"Effect": "Deny", "Action": "execute-api:*", "Resource": "arn:edgegate:execute-api:pets/prod/DELETE/*"},
    ]}))
    .expect("policy");
    c.bench_function("IAM-like policy evaluation (allow + deny)", |b| {
        b.iter(|| black_box(iam.allows(black_box("arn:edgegate:execute-api:pets/prod/GET/pets/7"))))
    });

    let rsa = openssl::rsa::Rsa::generate(2048).expect("rsa");
    let jwks = serde_json::json!({"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256",
        "n": b64url(&rsa.n().to_vec()), "e": b64url(&rsa.e().to_vec())}]});
    let jwks = jwks.to_string();
    let algs = vec!["RS256".to_string()];
    let aud = vec!["api".to_string()];
    let authz = JwtAuthorizer::new(JwtSettings {
        issuer: Some("https://issuer/"),
        audience: &aud,
        algorithms: &algs,
        leeway: std::time::Duration::ZERO,
        identity_header: http::header::AUTHORIZATION,
        jwks: Some(jwks.as_bytes()),
        jwks_url: None,
        refresh: std::time::Duration::from_secs(600),
        secret: None,
    })
    .expect("authorizer");
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some("k1".into());
    let exp = jsonwebtoken::get_current_timestamp() + 3600;
    let claims = serde_json::json!({"iss": "https://issuer/", "aud": "api", "sub": "u", "exp": exp});
    let token = jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&rsa.private_key_to_pem().expect("pem")).expect("key"),
    )
    .expect("sign");
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().expect("header"));
    assert!(authz.authorize(&headers, &[]).is_ok());
    report("JWT RS256 repeat token (verified cache)", || authz.authorize(&headers, &[]).is_ok());
    c.bench_function("JWT RS256 repeat token (verified cache)", |b| {
        b.iter(|| black_box(authz.authorize(&headers, &[])))
    });
    // the signature and claims check itself, as on a cache miss
    c.bench_function("JWT RS256 verify (uncached, key loaded)", |b| {
        b.iter(|| black_box(authz.verify(black_box(&token))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
