//! Certificates and client identities: the TLS data a compiled snapshot holds. A leaf
//! module (no imports from the rest of the crate), so the snapshot can hold it while the
//! handshake callbacks in `tls` read the snapshot.

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use std::collections::HashMap;

/// Why a certificate, key or TLS setting does not load.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot parse certificate: {0}")]
    Certificate(String),
    #[error("no certificate in file")]
    NoCertificate,
    #[error("cannot parse private key: {0}")]
    PrivateKey(String),
    #[error("certificate has no public key: {0}")]
    PublicKey(String),
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    #[error("{0} {1:?}: {2}")]
    Setting(&'static str, String, String),
    #[error("cannot load client CA {0}: {1}")]
    ClientCa(String, String),
    #[error("client_auth needs a ca")]
    NoClientCa,
    #[error("TLS: {0}")]
    Openssl(String),
}

/// `[tls] client_auth.mode`, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    #[default]
    Off,
    Optional,
    Required,
}

/// A certificate chain and its key, parsed at load.
pub struct CertKey {
    pub leaf: X509,
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
    /// A DER OCSP response stapled to handshakes with this certificate.
    pub ocsp: Option<Vec<u8>>,
}

/// SNI -> certificate; the first configured certificate is the default.
#[derive(Default)]
pub struct CertStore {
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
    certs: Vec<CertKey>,
}

impl CertStore {
    /// Loads a PEM chain and key; the key must match the leaf.
    pub fn load(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertKey, TlsError> {
        let mut stack = X509::stack_from_pem(cert_pem).map_err(|e| TlsError::Certificate(e.to_string()))?;
        if stack.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let leaf = stack.remove(0);
        let key = PKey::private_key_from_pem(key_pem).map_err(|e| TlsError::PrivateKey(e.to_string()))?;
        let public = leaf.public_key().map_err(|e| TlsError::PublicKey(e.to_string()))?;
        if !public.public_eq(&key) {
            return Err(TlsError::KeyMismatch);
        }
        Ok(CertKey { leaf, chain: stack, key, ocsp: None })
    }

    pub fn add(&mut self, names: &[String], ck: CertKey) {
        let i = self.certs.len();
        self.certs.push(ck);
        for n in names {
            let n = n.to_ascii_lowercase();
            match n.strip_prefix("*.") {
                Some(suffix) => self.wildcard.entry(suffix.to_string()).or_insert(i),
                None => self.exact.entry(n).or_insert(i),
            };
        }
    }

    /// The certificate for a server name: exact, then `*.parent`, then the default.
    pub fn find(&self, sni: &str) -> Option<&CertKey> {
        let sni = sni.to_ascii_lowercase();
        let i = self
            .exact
            .get(&sni)
            .or_else(|| sni.split_once('.').and_then(|(_, parent)| self.wildcard.get(parent)))
            .copied()
            .unwrap_or(0);
        self.certs.get(i)
    }
}

/// The verified client certificate of a mutual-TLS connection.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClientCert {
    #[serde(rename = "subjectDN")]
    pub subject: String,
    #[serde(rename = "issuerDN")]
    pub issuer: String,
    #[serde(rename = "serialNumber")]
    pub serial: String,
    pub sans: Vec<String>,
    /// SHA-256 of the DER certificate, hex.
    pub fingerprint: String,
}

fn dn(name: &openssl::x509::X509NameRef) -> String {
    name.entries()
        .map(|e| {
            let k = e.object().nid().short_name().unwrap_or("?");
            let v = String::from_utf8_lossy(e.data().as_slice()).into_owned();
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl ClientCert {
    pub fn from_x509(c: &X509) -> ClientCert {
        let sans = c
            .subject_alt_names()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| {
                        n.dnsname()
                            .map(|d| format!("DNS:{d}"))
                            .or_else(|| n.email().map(|e| format!("email:{e}")))
                            .or_else(|| n.uri().map(|u| format!("URI:{u}")))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let fingerprint = c.digest(MessageDigest::sha256()).map(|d| hex::encode(&*d)).unwrap_or_default();
        let serial =
            c.serial_number().to_bn().ok().and_then(|b| b.to_hex_str().ok().map(|s| s.to_string())).unwrap_or_default();
        ClientCert { subject: dn(c.subject_name()), issuer: dn(c.issuer_name()), serial, sans, fingerprint }
    }
}

/// Mozilla "intermediate" (v5.7): TLS 1.2 ciphers, forward secret AEAD only.
pub const DEFAULT_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
/// Mozilla "intermediate": TLS 1.3 suites.
pub const DEFAULT_CIPHERSUITES: &str = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
/// Mozilla "intermediate": X25519, prime256v1, secp384r1 (no X448, no secp521r1).
pub const DEFAULT_CURVES: &str = "X25519:prime256v1:secp384r1";

/// The listener's TLS profile, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub ciphers: String,
    pub ciphersuites: String,
    pub curves: String,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            ciphers: DEFAULT_CIPHERS.into(),
            ciphersuites: DEFAULT_CIPHERSUITES.into(),
            curves: DEFAULT_CURVES.into(),
        }
    }
}

impl Profile {
    /// Applies the profile to an OpenSSL context; names the part OpenSSL refuses.
    pub fn apply(&self, b: &mut openssl::ssl::SslContextBuilder) -> Result<(), TlsError> {
        b.set_cipher_list(&self.ciphers)
            .map_err(|e| TlsError::Setting("ciphers", self.ciphers.clone(), e.to_string()))?;
        b.set_ciphersuites(&self.ciphersuites)
            .map_err(|e| TlsError::Setting("ciphersuites", self.ciphersuites.clone(), e.to_string()))?;
        b.set_groups_list(&self.curves).map_err(|e| TlsError::Setting("curves", self.curves.clone(), e.to_string()))?;
        Ok(())
    }
}
