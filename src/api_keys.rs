//! API keys (`[api_keys]`): a key file of hashed keys (`sha256:<hex>`; the key itself is
//! never stored), each tied to a usage plan. A presented key is hashed once and looked up by
//! its hash; the stored hash is then compared in constant time.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    #[serde(default)]
    pub keys: Vec<KeyRecord>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub hash: String,
    pub plan: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// A key as requests see it.
#[derive(Debug)]
pub struct Key {
    pub id: Arc<str>,
    pub plan: String,
    pub enabled: bool,
    hash: [u8; 32],
}

#[derive(Debug, Default)]
pub struct KeyStore {
    by_hash: HashMap<[u8; 32], Arc<Key>, DigestHash>,
}

/// The key store's hasher. Its keys are SHA-256 digests: uniform, and not chosen by a caller
/// (a key whose digest lands in a chosen bucket takes a preimage search), so the digest's
/// first eight bytes are the hash. SipHash over the digest again cost more than the lookup.
#[derive(Clone, Copy, Debug, Default)]
pub struct DigestHash;

pub struct DigestHasher(u64);

impl std::hash::BuildHasher for DigestHash {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

impl std::hash::Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        if let Some(head) = bytes.first_chunk::<8>() {
            self.0 = u64::from_le_bytes(*head);
        }
    }
    // an array hashes its length first: not part of the hash
    fn write_usize(&mut self, _: usize) {}
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Parses "sha256:<64 hex>".
pub fn parse_hash(s: &str) -> Result<[u8; 32], String> {
    let hex_part = s.strip_prefix("sha256:").ok_or_else(|| format!("hash {s:?} must start with \"sha256:\""))?;
    let bytes = hex::decode(hex_part).map_err(|_| format!("hash {s:?} is not hex"))?;
    bytes.try_into().map_err(|_| format!("hash {s:?} must be 32 bytes (64 hex digits)"))
}

pub fn hash_key(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

impl KeyStore {
    pub fn insert(&mut self, id: &str, hash: [u8; 32], plan: &str, enabled: bool) -> bool {
        let k = Arc::new(Key { id: Arc::from(id), plan: plan.to_string(), enabled, hash });
        self.by_hash.insert(hash, k).is_none()
    }

    /// Every key, in no order.
    pub fn keys(&self) -> impl Iterator<Item = &Arc<Key>> {
        self.by_hash.values()
    }

    /// The key whose hash matches the presented key, if any.
    pub fn find(&self, presented: &[u8]) -> Option<&Arc<Key>> {
        let h = hash_key(presented);
        self.by_hash.get(&h).filter(|k| openssl::memcmp::eq(&k.hash, &h))
    }
}

/// A new random key (40 URL-safe characters, 240 bits) and its key-file entry.
pub fn create(plan: &str, name: &str) -> Result<(String, String), String> {
    let mut raw = [0u8; 30];
    openssl::rand::rand_bytes(&mut raw).map_err(|e| e.to_string())?;
    let key: String = openssl::base64::encode_block(&raw).replace('+', "-").replace('/', "_");
    let mut idb = [0u8; 6];
    openssl::rand::rand_bytes(&mut idb).map_err(|e| e.to_string())?;
    let id = format!("key-{}", hex::encode(idb));
    let entry = format!(
        "[[keys]]\nid = \"{id}\"\nname = {}\nhash = \"sha256:{}\"\nplan = {}\nenabled = true\n",
        toml::Value::from(name),
        hex::encode(hash_key(key.as_bytes())),
        toml::Value::from(plan)
    );
    Ok((key, entry))
}

/// `[api_keys]`, compiled: the header keys are read from and the hashed keys.
pub struct ApiKeys {
    pub header: http::HeaderName,
    pub store: KeyStore,
}

/// Admission step: the route's API key (AWS: after the authorizer, before throttles).
/// The key is read under the one header rule (`request::header`): a repeated key header is
/// its lines joined, which matches no key. `Ok` is the key's id and its plan for the stage.
pub fn check<'s>(
    keys: Option<&ApiKeys>,
    plans: &'s HashMap<String, crate::throttle::Plan>,
    headers: &http::HeaderMap,
    stage: (usize, usize),
) -> Result<(Arc<str>, &'s crate::throttle::Plan), crate::responses::Refusal> {
    use crate::responses::{Refusal, ResponseType as T};
    let keys = keys.ok_or_else(|| Refusal::auth("api_key", "no_keys", T::ApiKeyInvalid))?;
    let presented = crate::request::header(headers, &keys.header)
        .ok_or_else(|| Refusal::auth("api_key", "missing_key", T::MissingAuthenticationToken))?;
    let k = keys
        .store
        .find(presented.as_bytes())
        .filter(|k| k.enabled)
        .ok_or_else(|| Refusal::auth("api_key", "invalid_key", T::ApiKeyInvalid))?;
    let plan = plans
        .get(&k.plan)
        .filter(|p| p.stages.contains(&stage))
        .ok_or_else(|| Refusal::auth("api_key", "not_in_plan", T::ApiKeyInvalid))?;
    Ok((k.id.clone(), plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_hashes_as_its_first_eight_bytes() {
        use std::hash::BuildHasher;
        let d = hash_key(b"some key");
        assert_eq!(DigestHash.hash_one(d), u64::from_le_bytes(d[..8].try_into().expect("8 bytes")));
        // digests that share their first eight bytes still find their own entries
        let (mut a, mut b) = ([7u8; 32], [7u8; 32]);
        a[31] = 1;
        b[31] = 2;
        let mut store = KeyStore::default();
        assert!(store.insert("a", a, "p", true) && store.insert("b", b, "p", true));
        assert_eq!(store.by_hash.get(&a).map(|k| &*k.id), Some("a"));
        assert_eq!(store.by_hash.get(&b).map(|k| &*k.id), Some("b"));
    }

    #[test]
    fn created_keys_verify_against_their_entry() {
        let (key, entry) = create("gold", "acme \"corp\"").expect("create");
        assert_eq!(key.len(), 40);
        let file: KeyFile = toml::from_str(&entry).expect("entry parses");
        let r = &file.keys[0];
        let mut store = KeyStore::default();
        assert!(store.insert(&r.id, parse_hash(&r.hash).expect("hash"), &r.plan, r.enabled));
        let found = store.find(key.as_bytes()).expect("found");
        assert_eq!((found.plan.as_str(), found.enabled), ("gold", true));
        assert!(store.find(b"wrong").is_none());
        assert!(!entry.contains(&key), "the key itself is never written");
    }

    #[test]
    fn hash_format_is_checked() {
        assert!(parse_hash("sha256:zz").is_err());
        assert!(parse_hash("md5:00").is_err());
        assert!(parse_hash(&format!("sha256:{}", "ab".repeat(32))).is_ok());
    }
}
