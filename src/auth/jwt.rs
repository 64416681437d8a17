//! JWT authorizers (Cognito user pools / OIDC style): a bearer token verified against a JWKS
//! with the configured algorithms only, then `iss`, `aud`, `exp` and `nbf` (with leeway).
//!
//! Defences: `none` is never accepted (it is not an algorithm here); the token's `alg` must
//! be in the configured list *and* match the family of the key its `kid` selects, so an
//! RSA public key can never be used as an HMAC secret; HMAC needs `secret` and is only
//! used when HS* is listed; `exp`/`nbf` sent as strings are rejected (jsonwebtoken ≥ 10.3).

use super::Principal;
use arc_swap::ArcSwap;
use dashmap::DashMap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Verified tokens kept at most (the cache is emptied when it fills).
const CACHE_CAPACITY: usize = 65_536;

/// Bytes of a token its cache hash reads: the end of the signature, which differs between
/// any two tokens.
const HASHED_TAIL: usize = 32;

/// The verified-token cache's hasher: SipHash under the process's random keys over a token's
/// last [`HASHED_TAIL`] bytes, not the whole token (hundreds of bytes, hashed on every
/// request). A lookup still compares whole tokens, and only tokens that verified are stored,
/// so the shorter hash neither confuses two tokens nor lets a caller crowd one bucket.
#[derive(Clone, Default)]
pub struct TokenHash(std::collections::hash_map::RandomState);

pub struct TailHasher(std::collections::hash_map::DefaultHasher);

impl std::hash::BuildHasher for TokenHash {
    type Hasher = TailHasher;
    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

impl std::hash::Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..]);
    }
    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// Why a token was refused; `reason` is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No token: 401 UNAUTHORIZED.
    Missing,
    /// Bad signature, issuer, audience, algorithm or format: 401 UNAUTHORIZED.
    Invalid(&'static str),
    /// Past `exp` (plus leeway): 403 EXPIRED_TOKEN.
    Expired,
    /// Valid, but without one of the route's scopes: 403 ACCESS_DENIED.
    Scope,
}

impl Refused {
    pub fn response_type(self) -> crate::responses::ResponseType {
        use crate::responses::ResponseType as T;
        match self {
            Refused::Missing | Refused::Invalid(_) => T::Unauthorized,
            Refused::Expired => T::ExpiredToken,
            Refused::Scope => T::AccessDenied,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refused::Missing => "missing_token",
            Refused::Invalid(r) => r,
            Refused::Expired => "expired",
            Refused::Scope => "scope",
        }
    }
}

pub struct JwtSettings<'a> {
    pub issuer: Option<&'a str>,
    pub audience: &'a [String],
    pub algorithms: &'a [String],
    pub leeway: Duration,
    pub identity_header: http::HeaderName,
    pub jwks: Option<&'a [u8]>,
    /// Where `jwks` came from when it is a URL: refreshed in the background every `refresh`.
    pub jwks_url: Option<crate::outbound::Endpoint>,
    pub refresh: Duration,
    pub secret: Option<&'a str>,
}

/// Keys by `kid` (the key without a kid under "").
type Keys = HashMap<String, DecodingKey>;

/// Why a JWT authorizer or its key set does not load.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("JWKS is not valid: {0}")]
    Jwks(String),
    #[error("JWKS key {0:?}: {1}")]
    JwksKey(Option<String>, String),
    #[error("the JWKS has no keys")]
    NoKeys,
    #[error(transparent)]
    Fetch(#[from] crate::outbound::OutboundError),
    #[error("{0} answered {1}")]
    Status(String, u16),
    #[error("algorithms must list at least one algorithm")]
    NoAlgorithms,
    #[error("algorithm \"none\" is never accepted")]
    AlgorithmNone,
    #[error("unknown algorithm {0:?}")]
    UnknownAlgorithm(String),
    #[error("{0} needs secret = \"...\"")]
    NeedsSecret(String),
    #[error("a jwt authorizer needs jwks (or secret for HS* algorithms)")]
    NoKeySource,
}

/// Parses a JWKS document.
pub fn parse_jwks(bytes: &[u8]) -> Result<Keys, JwtError> {
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| JwtError::Jwks(e.to_string()))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let key =
            DecodingKey::from_jwk(jwk).map_err(|e| JwtError::JwksKey(jwk.common.key_id.clone(), e.to_string()))?;
        keys.insert(jwk.common.key_id.clone().unwrap_or_default(), key);
    }
    if keys.is_empty() {
        return Err(JwtError::NoKeys);
    }
    Ok(keys)
}

/// JWKS documents larger than this are refused.
const MAX_JWKS: usize = 1 << 20;
/// The deadline of a JWKS fetch.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches a JWKS document at config load (https is verified against the system trust
/// store; `SSL_CERT_FILE` overrides it).
pub fn fetch_jwks(ep: &crate::outbound::Endpoint) -> Result<Vec<u8>, JwtError> {
    let a = crate::outbound::fetch_blocking(ep, JWKS_TIMEOUT, MAX_JWKS)?;
    if a.status != 200 {
        return Err(JwtError::Status(ep.url.clone(), a.status));
    }
    Ok(a.body.to_vec())
}

fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Whether the token's protected header lists `crit` extensions. None is understood here,
/// so any `crit` (even an empty or malformed one) refuses the token.
fn has_crit(token: &str) -> bool {
    use base64::Engine;
    let Some(head) = token.split('.').next() else { return true };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(head.trim_end_matches('=')) else {
        return true;
    };
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes) {
        Ok(h) => h.contains_key("crit"),
        Err(_) => true,
    }
}

/// The least time between two fetches caused by unknown `kid`s.
const REFETCH_INTERVAL: u64 = 30;

pub struct JwtAuthorizer {
    header: http::HeaderName,
    /// Keys by `kid`; swapped whole when a JWKS URL is fetched again.
    keys: ArcSwap<Keys>,
    url: Option<crate::outbound::Endpoint>,
    refresh: Duration,
    /// Unix time of the last fetch (0: never), for the refresh and the unknown-kid refetch.
    last_fetch: AtomicU64,
    /// Unix time of the last refetch caused by an unknown `kid` (0: never).
    last_kid_refetch: AtomicU64,
    secret: Option<DecodingKey>,
    /// One validation per allowed algorithm (jsonwebtoken wants one family per validation).
    validations: HashMap<Algorithm, Validation>,
    leeway: u64,
    /// Tokens already verified, until their `exp` (+ leeway): a signature check costs tens
    /// of microseconds, a repeat of the same token a hash lookup. The cache belongs to this
    /// authorizer instance, so a reload (new keys) starts it empty.
    verified: DashMap<Box<str>, (Arc<Principal>, u64), TokenHash>,
}

impl JwtAuthorizer {
    pub fn new(s: JwtSettings<'_>) -> Result<JwtAuthorizer, JwtError> {
        if s.algorithms.is_empty() {
            return Err(JwtError::NoAlgorithms);
        }
        let mut validations = HashMap::new();
        for a in s.algorithms {
            if a.eq_ignore_ascii_case("none") {
                return Err(JwtError::AlgorithmNone);
            }
            let alg: Algorithm = a.parse().map_err(|_| JwtError::UnknownAlgorithm(a.to_string()))?;
            if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) && s.secret.is_none() {
                return Err(JwtError::NeedsSecret(a.to_string()));
            }
            let mut v = Validation::new(alg);
            v.leeway = s.leeway.as_secs();
            v.validate_nbf = true;
            // configured means required: a token without the claim is refused, not waved through
            let mut required = vec!["exp"];
            if s.issuer.is_some() {
                required.push("iss");
            }
            if !s.audience.is_empty() {
                required.push("aud");
            }
            v.set_required_spec_claims(&required);
            if let Some(iss) = s.issuer {
                v.set_issuer(&[iss]);
            }
            if s.audience.is_empty() {
                v.validate_aud = false;
            } else {
                v.set_audience(s.audience);
            }
            validations.insert(alg, v);
        }
        let keys = match s.jwks {
            Some(bytes) => parse_jwks(bytes)?,
            None => HashMap::new(),
        };
        let secret = s.secret.map(|x| DecodingKey::from_secret(x.as_bytes()));
        if keys.is_empty() && secret.is_none() {
            return Err(JwtError::NoKeySource);
        }
        Ok(JwtAuthorizer {
            header: s.identity_header,
            keys: ArcSwap::from_pointee(keys),
            refresh: s.refresh,
            last_fetch: AtomicU64::new(if s.jwks_url.is_some() { now_secs() } else { 0 }),
            url: s.jwks_url,
            last_kid_refetch: AtomicU64::new(0),
            secret,
            validations,
            leeway: s.leeway.as_secs(),
            verified: DashMap::with_hasher(TokenHash::default()),
        })
    }

    /// The header the token is read from.
    pub fn identity_header(&self) -> &http::HeaderName {
        &self.header
    }

    /// Fetches the JWKS URL again if `refresh` has passed (called from a background task).
    pub async fn refresh_if_due(&self) {
        if self.url.is_none() {
            return;
        }
        let last = self.last_fetch.load(Ordering::Relaxed);
        if now_secs() < last + self.refresh.as_secs() {
            return;
        }
        self.refetch().await;
    }

    /// Fetches the JWKS URL through the outbound client (never blocking a worker).
    async fn refetch(&self) -> bool {
        let Some(ep) = &self.url else { return false };
        self.last_fetch.store(now_secs(), Ordering::Relaxed);
        let call = crate::outbound::Call {
            method: "GET",
            headers: &[],
            body: None,
            timeout: JWKS_TIMEOUT,
            max_answer: MAX_JWKS,
        };
        let fetched = match crate::outbound::client().send(ep, call).await {
            Ok(a) if a.status == 200 => parse_jwks(&a.body),
            Ok(a) => Err(JwtError::Status(ep.url.clone(), a.status)),
            Err(e) => Err(e.into()),
        };
        match fetched {
            Ok(keys) => {
                self.install_keys(keys);
                true
            }
            Err(e) => {
                log::warn!("JWKS refresh failed, keeping the keys we have: {e}");
                false
            }
        }
    }

    /// Swaps in a fetched key set; tokens verified under a key that is gone (or replaced)
    /// are verified again.
    fn install_keys(&self, keys: Keys) {
        {
            let changed = {
                let old = self.keys.load();
                old.len() != keys.len() || keys.keys().any(|k| !old.contains_key(k))
            };
            self.keys.store(Arc::new(keys));
            if changed {
                // a removed (or replaced) key must not keep its tokens valid until exp
                self.verified.clear();
            }
        }
    }

    /// As `authorize`; a token whose `kid` is unknown makes one refetch of a JWKS URL (at most
    /// every 30 s across all requests), then one more try.
    pub async fn authorize_async(
        self: &Arc<Self>,
        headers: &http::HeaderMap,
        scopes: &[String],
    ) -> Result<Arc<Principal>, Refused> {
        match self.authorize(headers, scopes) {
            Err(Refused::Invalid("unknown_kid")) if self.url.is_some() => {
                let last = self.last_kid_refetch.load(Ordering::Relaxed);
                let now = now_secs();
                if (last != 0 && now < last + REFETCH_INTERVAL)
                    || self.last_kid_refetch.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_err()
                {
                    return Err(Refused::Invalid("unknown_kid"));
                }
                self.refetch().await;
                self.authorize(headers, scopes)
            }
            other => other,
        }
    }

    /// Verifies the request's token and checks `scopes` (any one of them suffices).
    pub fn authorize(&self, headers: &http::HeaderMap, scopes: &[String]) -> Result<Arc<Principal>, Refused> {
        // all lines of the header (request::header): a second line is never ignored here
        // and then read by the origin
        let raw = crate::request::header(headers, &self.header).ok_or(Refused::Missing)?;
        let raw: &str = &raw;
        let token = match raw.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            Some(_) => return Err(Refused::Invalid("format")),
            None => raw.trim(),
        };
        if token.is_empty() {
            return Err(Refused::Missing);
        }
        let now = jsonwebtoken::get_current_timestamp();
        let principal = match self.verified.get(token).filter(|e| now <= e.1).map(|e| e.0.clone()) {
            Some(p) => p,
            None => {
                let p = Arc::new(self.verify(token)?);
                let exp = p.claims.get("exp").and_then(|v| v.as_u64()).unwrap_or(0);
                if self.verified.len() >= CACHE_CAPACITY {
                    self.verified.clear();
                }
                self.verified.insert(token.into(), (p.clone(), exp.saturating_add(self.leeway)));
                p
            }
        };
        if !scopes.is_empty() && !scopes.iter().any(|s| principal.scopes.contains(s)) {
            return Err(Refused::Scope);
        }
        Ok(principal)
    }

    /// Signature, algorithm and claims of a token, without the cache (used on a cache miss).
    pub fn verify(&self, token: &str) -> Result<Principal, Refused> {
        if has_crit(token) {
            // RFC 7515 §4.1.11: extensions we do not understand make the token invalid
            return Err(Refused::Invalid("crit"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refused::Invalid("format"))?;
        let validation = self.validations.get(&header.alg).ok_or(Refused::Invalid("algorithm"))?;
        let keys = self.keys.load();
        let key = if header.alg.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            self.secret.as_ref()
        } else {
            match header.kid.as_deref() {
                Some(kid) => keys.get(kid),
                None if keys.len() == 1 => keys.values().next(),
                None => None,
            }
        }
        .ok_or(Refused::Invalid("unknown_kid"))?;
        if key.family() != header.alg.family() {
            return Err(Refused::Invalid("algorithm"));
        }
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, key, validation).map_err(
            |e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::ExpiredSignature => Refused::Expired,
                    K::ImmatureSignature => Refused::Invalid("not_yet_valid"),
                    K::InvalidIssuer => Refused::Invalid("issuer"),
                    K::InvalidAudience => Refused::Invalid("audience"),
                    K::InvalidSignature => Refused::Invalid("signature"),
                    K::InvalidAlgorithm => Refused::Invalid("algorithm"),
                    _ => Refused::Invalid("claims"),
                }
            },
        )?;
        let claims = data.claims;
        // `scope` (space-separated, OAuth 2) or `scp` (a list, or a string), whichever is set
        let token_scopes: Vec<String> = ["scope", "scp"]
            .iter()
            .find_map(|k| match claims.get(*k) {
                Some(serde_json::Value::String(s)) => Some(s.split_whitespace().map(str::to_string).collect()),
                Some(serde_json::Value::Array(a)) => {
                    Some(a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                }
                _ => None,
            })
            .unwrap_or_default();
        let principal_id = claims.get("sub").and_then(|v| v.as_str()).unwrap_or("").to_string();
        Ok(Principal { principal_id, claims, scopes: token_scopes, context: Default::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HMAC-only authorizer with the given algorithm list.
    fn with_algorithms(algorithms: &[&str]) -> Result<JwtAuthorizer, JwtError> {
        let algs: Vec<String> = algorithms.iter().map(|a| a.to_string()).collect();
        JwtAuthorizer::new(JwtSettings {
            issuer: Some("iss"),
            audience: &[],
            algorithms: &algs,
            leeway: Duration::ZERO,
            identity_header: http::header::AUTHORIZATION,
            jwks: None,
            jwks_url: None,
            refresh: Duration::from_secs(600),
            secret: Some("s3cret"),
        })
    }

    fn token(exp: u64, scope: &str) -> http::HeaderMap {
        let claims = serde_json::json!({"iss": "iss", "sub": "u1", "exp": exp, "scope": scope});
        let t = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"s3cret"),
        )
        .expect("sign");
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, format!("Bearer {t}").parse().expect("value"));
        h
    }

    #[test]
    fn cached_tokens_still_expire_and_scopes_are_checked_each_time() {
        let a = with_algorithms(&["HS256"]).expect("authorizer");
        let h = token(jsonwebtoken::get_current_timestamp() + 1, "read");
        assert_eq!(a.authorize(&h, &[]).expect("valid").principal_id, "u1");
        assert!(a.authorize(&h, &["read".to_string()]).is_ok(), "from the cache");
        assert_eq!(a.authorize(&h, &["write".to_string()]).err(), Some(Refused::Scope));
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(a.authorize(&h, &[]).err(), Some(Refused::Expired), "the cache honours exp");
    }

    #[test]
    fn a_cached_tokens_signature_under_another_payload_is_verified_again() {
        let a = with_algorithms(&["HS256"]).expect("authorizer");
        let now = jsonwebtoken::get_current_timestamp();
        let h = token(now + 600, "read");
        assert!(a.authorize(&h, &[]).is_ok());
        let t = h[http::header::AUTHORIZATION].to_str().expect("ascii").trim_start_matches("Bearer ").to_string();
        let (head, rest) = t.split_once('.').expect("head");
        let sig = rest.rsplit_once('.').expect("sig").1;
        let forged_claims = serde_json::json!({"iss": "iss", "sub": "admin", "exp": now + 600, "scope": "read"});
        let forged = format!(
            "{head}.{}.{sig}",
            openssl::base64::encode_block(forged_claims.to_string().as_bytes())
                .replace('+', "-")
                .replace('/', "_")
                .trim_end_matches('=')
        );
        assert_eq!(&forged[forged.len() - HASHED_TAIL..], &t[t.len() - HASHED_TAIL..], "same hashed tail");
        let mut f = http::HeaderMap::new();
        f.insert(http::header::AUTHORIZATION, format!("Bearer {forged}").parse().expect("value"));
        assert!(matches!(a.authorize(&f, &[]), Err(Refused::Invalid(_))), "the forged token is not the cached one");
        assert_eq!(a.verified.len(), 1);
    }

    #[test]
    fn none_is_never_an_algorithm() {
        let r = with_algorithms(&["none"]);
        assert!(r.is_err());
    }

    fn sign(claims: serde_json::Value, header: jsonwebtoken::Header) -> http::HeaderMap {
        let t =
            jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(b"s3cret")).expect("sign");
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, format!("Bearer {t}").parse().expect("value"));
        h
    }

    #[test]
    fn configured_issuer_and_audience_are_required() {
        let aud = vec!["api".to_string()];
        let a = JwtAuthorizer::new(JwtSettings {
            issuer: Some("iss"),
            audience: &aud,
            algorithms: &["HS256".to_string()],
            leeway: Duration::ZERO,
            identity_header: http::header::AUTHORIZATION,
            jwks: None,
            jwks_url: None,
            refresh: Duration::from_secs(600),
            secret: Some("s3cret"),
        })
        .expect("authorizer");
        let exp = jsonwebtoken::get_current_timestamp() + 60;
        let hs = || jsonwebtoken::Header::new(Algorithm::HS256);
        assert!(a.authorize(&sign(serde_json::json!({"iss": "iss", "aud": "api", "exp": exp}), hs()), &[]).is_ok());
        let no_iss = sign(serde_json::json!({"aud": "api", "exp": exp}), hs());
        assert!(a.authorize(&no_iss, &[]).is_err(), "a token without iss");
        let no_aud = sign(serde_json::json!({"iss": "iss", "exp": exp}), hs());
        assert!(a.authorize(&no_aud, &[]).is_err(), "a token without aud");
    }

    #[test]
    fn unknown_crit_extensions_refuse_the_token() {
        let a = with_algorithms(&["HS256"]).expect("authorizer");
        let exp = jsonwebtoken::get_current_timestamp() + 60;
        // jsonwebtoken's Header has no crit field: build the token by hand
        use base64::Engine;
        let enc = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let head = enc(&serde_json::json!({"alg": "HS256", "typ": "JWT", "crit": ["exp-ext"], "exp-ext": 1}));
        let body = enc(&serde_json::json!({"iss": "iss", "sub": "u", "exp": exp}));
        let input = format!("{head}.{body}");
        let key = openssl::pkey::PKey::hmac(b"s3cret").expect("key");
        let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).expect("signer");
        signer.update(input.as_bytes()).expect("update");
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signer.sign_to_vec().expect("sign"));
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, format!("Bearer {input}.{sig}").parse().expect("value"));
        assert_eq!(a.authorize(&h, &[]).err(), Some(Refused::Invalid("crit")));
        // the same token without crit passes: the signature was fine
        let plain = enc(&serde_json::json!({"alg": "HS256", "typ": "JWT"}));
        let input = format!("{plain}.{body}");
        let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).expect("signer");
        signer.update(input.as_bytes()).expect("update");
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signer.sign_to_vec().expect("sign"));
        h.insert(http::header::AUTHORIZATION, format!("Bearer {input}.{sig}").parse().expect("value"));
        assert!(a.authorize(&h, &[]).is_ok());
    }

    #[test]
    fn a_removed_key_ends_its_cached_tokens() {
        let (n, e) = ("sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "AQAB");
        let jwks = format!(
            r#"{{"keys": [{{"kty": "RSA", "kid": "k1", "alg": "RS256", "n": "{n}", "e": "{e}"}}, {{"kty": "RSA", "kid": "k2", "alg": "RS256", "n": "{n}", "e": "{e}"}}]}}"#
        );
        let a = JwtAuthorizer::new(JwtSettings {
            issuer: None,
            audience: &[],
            algorithms: &["RS256".to_string()],
            leeway: Duration::ZERO,
            identity_header: http::header::AUTHORIZATION,
            jwks: Some(jwks.as_bytes()),
            jwks_url: None,
            refresh: Duration::from_secs(600),
            secret: None,
        })
        .expect("authorizer");
        let p = Arc::new(Principal::default());
        a.verified.insert("tok".into(), (p, u64::MAX));
        let same = parse_jwks(jwks.as_bytes()).expect("jwks");
        a.install_keys(same);
        assert_eq!(a.verified.len(), 1, "an unchanged key set keeps the cache");
        let fewer = jwks.replace(r#", {"kty": "RSA", "kid": "k2""#, r#"]}, {"ignored": {"kty": "RSA", "kid": "k2""#);
        let fewer = parse_jwks(fewer.as_bytes()).or_else(|_| {
            parse_jwks(
                format!(r#"{{"keys": [{{"kty": "RSA", "kid": "k1", "alg": "RS256", "n": "{n}", "e": "{e}"}}]}}"#)
                    .as_bytes(),
            )
        });
        a.install_keys(fewer.expect("jwks"));
        assert_eq!(a.verified.len(), 0, "a removed key clears the verified tokens");
    }
}
