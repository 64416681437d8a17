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
