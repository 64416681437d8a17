//! TLS termination: SNI certificates, minimum version, HTTP/2 by ALPN, h2c, mutual TLS.

use crate::common::*;
use openssl::ssl::SslVersion;
use std::process::Command;

fn tls_config(dir: &std::path::Path, p: &Ports, mode: &str, min: &str) -> String {
    format!(
        r#"{server}
[tls]
listen = ["127.0.0.1:{tls}"]
min_version = "{min}"
[[tls.certificates]]
sni = ["default.test"]
cert = "default.test.pem"
key = "default.test.key"
[[tls.certificates]]
sni = ["api.test", "*.api.test"]
cert = "api.test.pem"
key = "api.test.key"
[tls.client_auth]
mode = "{mode}"
ca = "ca.pem"

[[apis]]
name = "s"
[apis.stages.prod]
[[apis.routes]]
route = "GET /whoami"
integration = {{ type = "mock", body = "cert=[{{{{ context.identity.clientCert.subjectDN }}}}] sans={{{{ context.identity.clientCert.sans | join(',') }}}}" }}
"#,
        server = server_section(dir, p, ""),
        tls = p.tls
    )
}

fn start(mode: &str, min: &str) -> Gateway {
    let mode = mode.to_string();
    let min = min.to_string();
    Gateway::start(move |d, p| {
        Pki::create(d, &["default.test", "api.test"]);
        tls_config(d, p, &mode, &min)
    })
}

#[test]
fn certificates_are_chosen_by_sni() {
    let gw = start("off", "1.2");
    let ca = gw.dir.path().join("ca.pem");
    let (cn, r) = tls_get(gw.tls_addr(), "api.test", "/prod/whoami", &ca, None, None).expect("tls");
    assert_eq!(cn, "api.test");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "cert=[] sans=");
    let (cn, _) = tls_get(gw.tls_addr(), "x.api.test", "/prod/whoami", &ca, None, None).expect("wildcard");
    assert_eq!(cn, "api.test", "wildcard entry");
    let (cn, r) = tls_get(gw.tls_addr(), "default.test", "/prod/whoami", &ca, None, None).expect("tls");
    assert_eq!((cn.as_str(), r.status), ("default.test", 200));
    // unknown names get the first (default) certificate, which then fails hostname verification
    assert!(tls_get(gw.tls_addr(), "other.test", "/prod/whoami", &ca, None, None).is_err());
    // the integration is told the request came over TLS
    let line = gw.wait_log("\"path\":\"/prod/whoami\"");
    assert!(line.contains("\"status\":200"), "{line}");
}

#[test]
fn minimum_version_is_enforced() {
    let gw = start("off", "1.3");
    let ca = gw.dir.path().join("ca.pem");
    assert!(tls_get(gw.tls_addr(), "api.test", "/prod/whoami", &ca, None, Some(SslVersion::TLS1_2)).is_err());
    assert!(tls_get(gw.tls_addr(), "api.test", "/prod/whoami", &ca, None, None).is_ok());
}

fn curl(args: &[&str]) -> Option<String> {
    let out = Command::new("curl").args(["-s", "--max-time", "10"]).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn http2_by_alpn_and_h2c() {
    let gw = start("off", "1.2");
    let ca = gw.dir.path().join("ca.pem");
    let url = format!("https://api.test:{}/prod/whoami", gw.ports.tls);
    let resolve = format!("api.test:{}:127.0.0.1", gw.ports.tls);
    let out = curl(&[
        "--http2",
        "--cacert",
        ca.to_str().expect("path"),
        "--resolve",
        &resolve,
        "-w",
        " %{http_version}",
        &url,
    ])
    .expect("curl over TLS");
    assert!(out.ends_with(" 2"), "negotiated HTTP/2 by ALPN: {out}");
    let out = curl(&[
        "--http2-prior-knowledge",
        "-w",
        " %{http_version}",
        &format!("http://127.0.0.1:{}/prod/whoami", gw.ports.listen),
    ])
    .expect("curl h2c");
    assert!(out.ends_with(" 2") && out.starts_with("cert=[]"), "h2c on the plain listener: {out}");
}

#[test]
fn mutual_tls_required_refuses_clients_without_a_certificate() {
    let gw = start("required", "1.2");
    let d = gw.dir.path();
    let ca = d.join("ca.pem");
    let client = (d.join("client.pem"), d.join("client.key"));
    let (_, r) =
        tls_get(gw.tls_addr(), "api.test", "/prod/whoami", &ca, Some((&client.0, &client.1)), None).expect("with cert");
    assert_eq!(r.status, 200);
    let body = r.text();
    assert!(body.contains("CN=client") && body.contains("DNS:client.test"), "{body}");
    let res = tls_get(gw.tls_addr(), "api.test", "/prod/whoami", &ca, None, None);
    assert!(res.is_err(), "no certificate, no answer: {res:?}");
    // a certificate from another CA is refused too
    let other = tempfile::tempdir().expect("tmp");
    Pki::create(other.path(), &[]);
    let res = tls_get(
        gw.tls_addr(),
        "api.test",
        "/prod/whoami",
        &ca,
        Some((&other.path().join("client.pem"), &other.path().join("client.key"))),
        None,
    );
    assert!(res.is_err(), "foreign client certificate accepted: {res:?}");
    let line = gw.wait_log("CN=client");
    assert!(line.contains("clientCert"), "{line}");
}

#[test]
fn mutual_tls_optional_admits_both() {
    let gw = start("optional", "1.2");
    let d = gw.dir.path();
    let ca = d.join("ca.pem");
    let (_, r) = tls_get(gw.tls_addr(), "api.test", "/prod/whoami", &ca, None, None).expect("without cert");
    assert_eq!(r.text(), "cert=[] sans=");
    let (_, r) = tls_get(
        gw.tls_addr(),
        "api.test",
        "/prod/whoami",
        &ca,
        Some((&d.join("client.pem"), &d.join("client.key"))),
        None,
    )
    .expect("with cert");
    assert!(r.text().contains("CN=client"), "{}", r.text());
}

#[test]
fn certificates_rotate_with_a_reload() {
    let gw = start("off", "1.2");
    let d = gw.dir.path();
    let ca = d.join("ca.pem");
    let (cn, _) = tls_get(gw.tls_addr(), "api.test", "/prod/whoami", &ca, None, None).expect("tls");
    assert_eq!(cn, "api.test");
    // a new certificate for the same name, written over the files the config names
    Pki::issue(d, "rotated", "subjectAltName=DNS:api.test");
    std::fs::copy(d.join("rotated.key"), d.join("api.test.key")).expect("key");
    std::fs::copy(d.join("rotated.pem"), d.join("api.test.pem")).expect("cert");
    eventually("the rotated certificate to be served", || {
        tls_get(gw.tls_addr(), "api.test", "/prod/whoami", &ca, None, None)
            .map(|(cn, _)| cn == "rotated")
            .unwrap_or(false)
    });
}

/// `openssl s_client` against `addr` with `args`; returns (handshake ok, its output).
fn s_client(addr: std::net::SocketAddr, args: &[&str]) -> (bool, String) {
    let mut c = Command::new("openssl");
    c.arg("s_client").arg("-connect").arg(addr.to_string()).arg("-servername").arg("default.test").args(args);
    c.stdin(std::process::Stdio::null());
    let out = c.output().expect("openssl s_client");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let ok = text.contains("Cipher is ") && !text.contains("Cipher is (NONE)");
    (ok, text)
}

fn profile_config(d: &std::path::Path, p: &Ports, tls_extra: &str, cert_extra: &str) -> String {
    Pki::create(d, &["default.test"]);
    format!(
        r#"{server}
[tls]
listen = ["127.0.0.1:{tls}"]
{tls_extra}
[[tls.certificates]]
sni = ["default.test"]
cert = "default.test.pem"
key = "default.test.key"
{cert_extra}
[[domains]]
host = "default.test"
hsts = "max-age=63072000; includeSubDomains"
mappings = [{{ base_path = "", api = "s", stage = "prod" }}]
[[apis]]
name = "s"
[apis.stages.prod]
[[apis.routes]]
route = "GET /ok"
integration = {{ type = "mock", body = "ok" }}
"#,
        server = server_section(d, p, ""),
        tls = p.tls
    )
}

#[test]
fn the_default_tls_profile_is_mozilla_intermediate() {
    let gw = Gateway::start(|d, p| profile_config(d, p, "", ""));
    let a = gw.tls_addr();
    let (ok, out) = s_client(a, &[]);
    assert!(ok && out.contains("X25519"), "default handshake uses X25519:\n{out}");
    for group in ["X448", "secp521r1"] {
        let (ok, out) = s_client(a, &["-groups", group]);
        assert!(!ok, "{group} must not be offered:\n{out}");
    }
    for group in ["prime256v1", "secp384r1"] {
        assert!(s_client(a, &["-groups", group]).0, "{group} is part of intermediate");
    }
    // TLS 1.2: forward-secret AEAD only
    for weak in ["AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA", "DES-CBC3-SHA"] {
        let (ok, out) = s_client(a, &["-tls1_2", "-cipher", weak]);
        assert!(!ok, "{weak} must be refused:\n{out}");
    }
    let (ok, out) = s_client(a, &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"]);
    assert!(ok && out.contains("ECDHE-RSA-AES128-GCM-SHA256"), "{out}");
    let (ok, out) = s_client(a, &["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"]);
    assert!(ok && out.contains("TLS_CHACHA20_POLY1305_SHA256"), "{out}");
    // no OCSP response configured: none stapled
    let (_, out) = s_client(a, &["-status"]);
    assert!(out.contains("OCSP response: no response sent"), "{out}");
}

#[test]
fn tls_ciphers_curves_ocsp_and_hsts_are_configurable() {
    let gw = Gateway::start(|d, p| {
        let text = profile_config(
            d,
            p,
            "curves = \"secp384r1\"\nciphers = \"ECDHE-RSA-AES256-GCM-SHA384\"\nciphersuites = \"TLS_AES_256_GCM_SHA384\"",
            "ocsp = \"default.test.ocsp.der\"",
        );
        // a real OCSP response for the server certificate, signed by the test CA
        let serial = Command::new("openssl")
            .args(["x509", "-in", "default.test.pem", "-noout", "-serial"])
            .current_dir(d)
            .output()
            .expect("serial");
        let serial = String::from_utf8_lossy(&serial.stdout).trim().trim_start_matches("serial=").to_string();
        std::fs::write(
            d.join("index.txt"),
            format!("V\t301231000000Z\t\t{serial}\tunknown\t/CN=default.test/O=edgegate tests\n"),
        )
        .expect("index");
        let st = Command::new("openssl")
            .args([
                "ocsp",
                "-index",
                "index.txt",
                "-rsigner",
                "ca.pem",
                "-rkey",
                "ca.key",
                "-CA",
                "ca.pem",
                "-issuer",
                "ca.pem",
                "-cert",
                "default.test.pem",
                "-respout",
                "default.test.ocsp.der",
                "-ndays",
                "1",
            ])
            .current_dir(d)
            .output()
            .expect("openssl ocsp");
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        text
    });
    let a = gw.tls_addr();
    let (ok, out) = s_client(a, &["-tls1_2"]);
    assert!(ok && out.contains("ECDHE-RSA-AES256-GCM-SHA384") && out.contains("secp384r1"), "{out}");
    assert!(!s_client(a, &["-groups", "X25519"]).0, "only the configured curve");
    assert!(!s_client(a, &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"]).0, "only the configured cipher");
    let (ok, out) = s_client(a, &["-tls1_3"]);
    assert!(ok && out.contains("TLS_AES_256_GCM_SHA384"), "{out}");
    let (_, out) = s_client(a, &["-status"]);
    assert!(out.contains("OCSP Response Status: successful"), "stapled:\n{out}");
    assert!(out.contains("Cert Status: good"), "{out}");
    // HSTS on HTTPS answers of the domain, never on plain HTTP
    let ca = gw.dir.path().join("ca.pem");
    let (_, r) = tls_get(a, "default.test", "/ok", &ca, None, None).expect("https");
    assert_eq!(r.header("strict-transport-security"), Some("max-age=63072000; includeSubDomains"));
    let plain = get(gw.addr(), "/ok", &[("host", "default.test")]);
    assert_eq!(plain.text(), "ok");
    assert_eq!(plain.header("strict-transport-security"), None);
}

#[test]
fn tls_profile_errors_name_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Ports::new();
    let cfg = dir.path().join("edgegate.toml");
    for (extra, key) in [
        ("curves = \"X25519:nope\"", "curves"),
        ("ciphers = \"NOPE-CIPHER\"", "ciphers"),
        ("ciphersuites = \"TLS_NOPE\"", "ciphersuites"),
    ] {
        std::fs::write(&cfg, profile_config(dir.path(), &p, extra, "")).expect("write");
        let out = Command::new(BIN).arg("check").arg("-c").arg(&cfg).output().expect("check");
        let err = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{extra}");
        assert!(err.contains(&format!("tls.{key}")) || err.contains(key), "{extra}: {err}");
        assert!(err.contains("edgegate.toml:"), "names the file and line: {err}");
    }
}
