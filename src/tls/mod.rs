//! TLS termination: certificates chosen by SNI from the running snapshot (so certificate
//! rotation is a config reload), minimum version, HTTP/2 by ALPN, and mutual TLS whose
//! verified client identity is handed to the request phases.

pub mod certs;

use async_trait::async_trait;
pub use certs::{CertKey, CertStore, ClientAuth, ClientCert, TlsError};
use openssl::ssl::{NameType, SslRef, SslVerifyMode, SslVersion};
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::tls::ext;
use std::any::Any;
use std::sync::Arc;

/// Where handshakes find certificates: the running configuration's store (the snapshot
/// implements it, so a reload rotates certificates).
pub trait CertSource: Send + Sync + 'static {
    fn with_store(&self, f: &mut dyn FnMut(&CertStore));
}

/// The handshake callbacks: certificate by SNI from the current store, and the client
/// identity captured once the handshake (and its verification) is complete.
pub struct Callbacks {
    pub certs: Arc<dyn CertSource>,
}

#[async_trait]
impl TlsAccept for Callbacks {
    async fn certificate_callback(&self, ssl: &mut SslRef) {
        let name = ssl.servername(NameType::HOST_NAME).unwrap_or("").to_string();
        self.certs.with_store(&mut |store| {
            let Some(c) = store.find(&name) else { return };
            if let Err(e) = ext::ssl_use_certificate(ssl, &c.leaf).and_then(|_| ext::ssl_use_private_key(ssl, &c.key)) {
                log::error!("TLS: cannot use certificate for {name:?}: {e}");
            }
            for x in &c.chain {
                if let Err(e) = ext::ssl_add_chain_cert(ssl, x) {
                    log::error!("TLS: cannot add chain certificate: {e}");
                }
            }
        });
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
    pub profile: certs::Profile,
    pub min_version: SslVersion,
    pub client_auth: ClientAuth,
    pub ca_file: Option<String>,
}

pub fn settings(certs: Arc<dyn CertSource>, l: &ListenerTls) -> Result<TlsSettings, TlsError> {
    let mut tls = TlsSettings::with_callbacks(Box::new(Callbacks { certs: certs.clone() }))
        .map_err(|e| TlsError::Openssl(e.to_string()))?;
    tls.enable_h2();
    tls.set_min_proto_version(Some(l.min_version)).map_err(|e| TlsError::Openssl(e.to_string()))?;
    l.profile.apply(&mut tls)?;
    // OCSP stapling: the response configured for the certificate this handshake uses
    tls.set_status_callback(move |ssl| {
        let name = ssl.servername(NameType::HOST_NAME).unwrap_or("").to_string();
        let mut stapled = Ok(false);
        certs.with_store(&mut |store| {
            if let Some(der) = store.find(&name).and_then(|c| c.ocsp.as_ref()) {
                stapled = ssl.set_ocsp_status(der).map(|_| true);
            }
        });
        stapled
    })
    .map_err(|e| TlsError::Openssl(e.to_string()))?;
    use ClientAuth::*;
    match l.client_auth {
        Off => tls.set_verify(SslVerifyMode::NONE),
        Optional | Required => {
            let ca = l.ca_file.as_deref().ok_or(TlsError::NoClientCa)?;
            tls.set_ca_file(ca).map_err(|e| TlsError::ClientCa(ca.to_string(), e.to_string()))?;
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
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::x509::X509;

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
        CertKey { leaf: b.build(), chain: vec![], key, ocsp: None }
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
