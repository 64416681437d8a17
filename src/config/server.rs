//! `[server]` and `[tls]`: listeners, limits, trusted proxies, certificates.

use super::*;

impl Compiler {
    pub(super) fn listen_addrs(&mut self, p: KeyPath, addrs: &[String], seen: &mut HashSet<SocketAddr>) {
        for (i, a) in addrs.iter().enumerate() {
            match a.parse::<SocketAddr>() {
                Ok(sa) => {
                    if !seen.insert(sa) {
                        self.err(p.idx(i), format!("address {a} is listed twice"));
                    }
                }
                Err(_) => {
                    self.err(p.idx(i), format!("{a:?} is not an address such as \"127.0.0.1:8080\" or \"[::1]:8080\""))
                }
            }
        }
    }

    pub(super) fn server(&mut self, p: &KeyPath, s: &Server) -> Settings {
        let mut seen = HashSet::new();
        self.listen_addrs(p.key("listen"), &s.listen, &mut seen);
        self.listen_addrs(p.key("private_listen"), &s.private_listen, &mut seen);
        self.listen_addrs(p.key("admin_listen"), std::slice::from_ref(&s.admin_listen), &mut seen);
        if s.threads > 1024 {
            self.err(p.key("threads"), "threads must be 0 (one per core) to 1024");
        }
        let mut trusted = vec![];
        for (i, c) in s.trusted_proxies.iter().enumerate() {
            match parse_cidr(c) {
                Ok(n) => trusted.push(n),
                Err(m) => self.err(p.key("trusted_proxies").idx(i), m),
            }
        }
        if s.max_body.0 == 0 {
            self.err(p.key("max_body"), "max_body must be greater than 0");
        }
        if s.max_header_size.0 < 1024 {
            self.err(p.key("max_header_size"), "max_header_size must be at least 1KiB");
        }
        if s.header_timeout.0 < Duration::from_millis(100) {
            self.err(p.key("header_timeout"), "header_timeout must be at least 100ms");
        }
        if s.max_headers == 0 {
            self.err(p.key("max_headers"), "max_headers must be greater than 0");
        }
        if s.max_integration_timeout.0.is_zero() {
            self.err(p.key("max_integration_timeout"), "max_integration_timeout must be greater than 0");
        }
        let access_log = match s.access_log.as_str() {
            "off" => AccessLogTarget::Off,
            "stdout" => AccessLogTarget::Stdout,
            f => {
                let full = self.dir.join(f);
                match full.parent() {
                    Some(d) if d.as_os_str().is_empty() || d.is_dir() => AccessLogTarget::File(full),
                    _ => {
                        self.err(p.key("access_log"), format!("the directory of {} does not exist", full.display()));
                        AccessLogTarget::Off
                    }
                }
            }
        };
        for (k, v) in [("upgrade_sock", &s.upgrade_sock), ("pid_file", &s.pid_file)] {
            if v.is_empty() {
                self.err(p.key(k), format!("{k} must not be empty"));
            }
        }
        let access_log_format = (!s.access_log_format.is_empty()).then(|| {
            crate::observability::access_log::Format::parse(&s.access_log_format)
                .map_err(|m| self.err(p.key("access_log_format"), m))
                .ok()
                .map(Arc::new)
        });
        Settings {
            access_log_format: access_log_format.flatten(),
            trusted_proxies: trusted,
            max_body: s.max_body.0,
            max_header_size: s.max_header_size.0,
            max_headers: s.max_headers,
            max_integration_timeout: s.max_integration_timeout.0,
            access_log,
            tracing: None,
        }
    }

    /// `[tracing]`: the collector's URL, the sampling ratio and what is propagated.
    pub(super) fn tracing(&mut self, p: &KeyPath, t: &Tracing) -> crate::observability::trace::Settings {
        let endpoint = t.otlp_endpoint.trim_end_matches('/').to_string();
        match endpoint.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() && u.query().is_none() => {}
            _ => self.err(
                p.key("otlp_endpoint"),
                format!("{:?} is not an http(s) URL such as \"http://127.0.0.1:4318\"", t.otlp_endpoint),
            ),
        }
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            self.err(p.key("sample_ratio"), "sample_ratio must be from 0 to 1");
        }
        if t.service_name.trim().is_empty() {
            self.err(p.key("service_name"), "service_name must not be empty");
        }
        let (mut w3c, mut amzn) = (false, false);
        for (i, f) in t.propagate.iter().enumerate() {
            match f.to_ascii_lowercase().as_str() {
                "traceparent" => w3c = true,
                "x-amzn-trace-id" => amzn = true,
                _ => {
                    self.err(p.key("propagate").idx(i), format!("{f:?} is not \"traceparent\" or \"x-amzn-trace-id\""))
                }
            }
        }
        crate::observability::trace::Settings {
            endpoint,
            service_name: t.service_name.clone(),
            sample_ratio: t.sample_ratio,
            w3c,
            amzn,
        }
    }

    pub(super) fn tls(
        &mut self,
        p: &KeyPath,
        cfg: &Config,
    ) -> (CertStore, Vec<String>, (crate::tls::certs::ClientAuth, Option<PathBuf>), crate::tls::certs::Profile) {
        let mut store = CertStore::default();
        let Some(t) = &cfg.tls else {
            return (store, vec![], (crate::tls::certs::ClientAuth::Off, None), Default::default());
        };
        let defaults = crate::tls::certs::Profile::default();
        let profile = crate::tls::certs::Profile {
            ciphers: t.ciphers.clone().unwrap_or(defaults.ciphers),
            ciphersuites: t.ciphersuites.clone().unwrap_or(defaults.ciphersuites),
            curves: t.curves.clone().unwrap_or(defaults.curves),
        };
        // OpenSSL is the judge of names: try the profile on a scratch context
        match openssl::ssl::SslContext::builder(openssl::ssl::SslMethod::tls()) {
            Ok(mut scratch) => {
                if let Err(e) = profile.apply(&mut scratch) {
                    let key = match &e {
                        crate::tls::TlsError::Setting(key, ..) => key.to_string(),
                        _ => "ciphers".to_string(),
                    };
                    self.err(p.key(&key), format!("OpenSSL does not accept {e}"));
                }
            }
            Err(e) => self.err(p.clone(), format!("OpenSSL: {e}")),
        }
        let mut seen: HashSet<SocketAddr> =
            cfg.server.listen.iter().chain(&cfg.server.private_listen).filter_map(|a| a.parse().ok()).collect();
        self.listen_addrs(p.key("listen"), &t.listen, &mut seen);
        if !matches!(t.min_version.as_str(), "1.2" | "1.3") {
            self.err(p.key("min_version"), format!("min_version {:?} must be \"1.2\" or \"1.3\"", t.min_version));
        }
        if !t.listen.is_empty() && t.certificates.is_empty() {
            self.err(p.key("listen"), "TLS listeners need at least one [[tls.certificates]]");
        }
        for (i, c) in t.certificates.iter().enumerate() {
            let cp = p.key("certificates").idx(i);
            let cert = self.file(cp.key("cert"), &c.cert);
            let key = self.file(cp.key("key"), &c.key);
            if let (Some((_, cert)), Some((_, key))) = (cert, key) {
                match CertStore::load(&cert, &key) {
                    Ok(mut ck) => {
                        if let Some(f) = &c.ocsp {
                            if let Some((_, der)) = self.file(cp.key("ocsp"), f) {
                                match openssl::ocsp::OcspResponse::from_der(&der) {
                                    Ok(_) => ck.ocsp = Some(der),
                                    Err(e) => self.err(cp.key("ocsp"), format!("{f}: not a DER OCSP response: {e}")),
                                }
                            }
                        }
                        store.add(&c.sni, ck)
                    }
                    Err(e) => self.err(cp.key("cert"), e),
                }
            }
        }
        // the compiled type, not the serde model's enum
        let mode = match t.client_auth.as_ref().map(|c| c.mode).unwrap_or_default() {
            ClientAuthMode::Off => crate::tls::certs::ClientAuth::Off,
            ClientAuthMode::Optional => crate::tls::certs::ClientAuth::Optional,
            ClientAuthMode::Required => crate::tls::certs::ClientAuth::Required,
        };
        if let Some(ca) = &t.client_auth {
            match (&ca.ca, ca.mode) {
                (None, ClientAuthMode::Optional | ClientAuthMode::Required) => {
                    self.err(p.key("client_auth").key("mode"), "client_auth needs ca = \"FILE\" (the client CA bundle)")
                }
                (Some(f), _) => {
                    if let Some((_, pem)) = self.file(p.key("client_auth").key("ca"), f) {
                        if openssl::x509::X509::stack_from_pem(&pem).map(|v| v.is_empty()).unwrap_or(true) {
                            self.err(
                                p.key("client_auth").key("ca"),
                                format!("{f}: no PEM certificate in the CA bundle"),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        let ca = t.client_auth.as_ref().and_then(|c| c.ca.as_ref()).map(|f| self.dir.join(f));
        (store, t.listen.clone(), (mode, ca), profile)
    }
}
