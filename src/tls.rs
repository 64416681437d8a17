//! TLS termination: certificates chosen by SNI from the running snapshot (so certificate
//! rotation is a config reload), minimum version, HTTP/2 by ALPN, and mutual TLS whose
//! verified client identity is handed to the request phases.

use crate::snapshot::Shared;
use async_trait::async_trait;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{NameType, SslRef, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::tls::ext;
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

/// A certificate chain and its key, parsed at load.
pub struct CertKey {
    pub leaf: X509,
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
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
    pub fn load(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertKey, String> {
        let mut stack = X509::stack_from_pem(cert_pem).map_err(|e| format!("cannot parse certificate: {e}"))?;
        if stack.is_empty() {
            return Err("no certificate in file".into());
        }
        let leaf = stack.remove(0);
        let key = PKey::private_key_from_pem(key_pem).map_err(|e| format!("cannot parse private key: {e}"))?;
        let public = leaf.public_key().map_err(|e| format!("certificate has no public key: {e}"))?;
        if !public.public_eq(&key) {
            return Err("the private key does not match the certificate".into());
        }
        Ok(CertKey { leaf, chain: stack, key })
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

/// The handshake callbacks: certificate by SNI from the current snapshot, and the client
/// identity captured once the handshake (and its verification) is complete.
pub struct Callbacks {
    pub shared: Shared,
}

#[async_trait]
impl TlsAccept for Callbacks {
    async fn certificate_callback(&self, ssl: &mut SslRef) {
        let snap = self.shared.load();
        let name = ssl.servername(NameType::HOST_NAME).unwrap_or("").to_string();
        if let Some(c) = snap.certs.find(&name) {
            if let Err(e) = ext::ssl_use_certificate(ssl, &c.leaf).and_then(|_| ext::ssl_use_private_key(ssl, &c.key)) {
                log::error!("TLS: cannot use certificate for {name:?}: {e}");
            }
            for x in &c.chain {
                if let Err(e) = ext::ssl_add_chain_cert(ssl, x) {
                    log::error!("TLS: cannot add chain certificate: {e}");
                }
            }
        }
    }

    async fn handshake_complete_callback(&self, ssl: &SslRef) -> Option<Arc<dyn Any + Send + Sync>> {
        let cert = ssl.peer_certificate()?;
        if ssl.verify_result() != openssl::x509::X509VerifyResult::OK {
            return None;
        }
        Some(Arc::new(ClientCert::from_x509(&cert)))
    }
}

/// Listener settings from `[tls]`: fixed for the process's life (a change needs a restart
/// or a graceful upgrade); certificates themselves come from the snapshot per handshake.
pub struct ListenerTls {
    pub min_version: SslVersion,
    pub client_auth: crate::config::model::ClientAuthMode,
    pub ca_file: Option<String>,
}

pub fn settings(shared: Shared, l: &ListenerTls) -> Result<TlsSettings, String> {
    let mut tls = TlsSettings::with_callbacks(Box::new(Callbacks { shared })).map_err(|e| e.to_string())?;
    tls.enable_h2();
    tls.set_min_proto_version(Some(l.min_version)).map_err(|e| e.to_string())?;
    use crate::config::model::ClientAuthMode::*;
    match l.client_auth {
        Off => tls.set_verify(SslVerifyMode::NONE),
        Optional | Required => {
            let ca = l.ca_file.as_deref().ok_or("client_auth needs a ca")?;
            tls.set_ca_file(ca).map_err(|e| format!("cannot load client CA {ca}: {e}"))?;
            if let Ok(names) = openssl::x509::X509Name::load_client_ca_file(ca) {
                tls.set_client_ca_list(names);
            }
            let mut mode = SslVerifyMode::PEER;
            if l.client_auth == Required {
                mode |= SslVerifyMode::FAIL_IF_NO_PEER_CERT;
            }
            tls.set_verify(mode);
        }
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(cn: &str) -> CertKey {
        use openssl::asn1::Asn1Time;
        use openssl::rsa::Rsa;
        use openssl::x509::X509NameBuilder;
        let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_text("CN", cn).expect("cn");
        let name = name.build();
        let mut b = X509::builder().expect("builder");
        b.set_version(2).expect("v");
        b.set_subject_name(&name).expect("s");
        b.set_issuer_name(&name).expect("i");
        b.set_pubkey(&key).expect("k");
        b.set_not_before(&Asn1Time::days_from_now(0).expect("t")).expect("nb");
        b.set_not_after(&Asn1Time::days_from_now(1).expect("t")).expect("na");
        b.sign(&key, MessageDigest::sha256()).expect("sign");
        CertKey { leaf: b.build(), chain: vec![], key }
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let mut s = CertStore::default();
        s.add(&["default.test".into()], self_signed("default"));
        s.add(&["*.example.test".into()], self_signed("wild"));
        s.add(&["api.example.test".into()], self_signed("exact"));
        let cn = |n: &str| ClientCert::from_x509(&s.find(n).expect("cert").leaf).subject;
        assert_eq!(cn("api.example.test"), "CN=exact");
        assert_eq!(cn("other.example.test"), "CN=wild");
        assert_eq!(cn("API.EXAMPLE.TEST"), "CN=exact");
        assert_eq!(cn("unknown.test"), "CN=default");
        assert_eq!(cn(""), "CN=default");
    }

    #[test]
    fn mismatched_key_is_refused() {
        let a = self_signed("a");
        let b = self_signed("b");
        let cert = a.leaf.to_pem().expect("pem");
        let key = b.key.private_key_to_pem_pkcs8().expect("pem");
        assert!(CertStore::load(&cert, &key).is_err());
        let key = a.key.private_key_to_pem_pkcs8().expect("pem");
        assert!(CertStore::load(&cert, &key).is_ok());
    }
}
