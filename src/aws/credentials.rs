//! AWS credentials, from the standard places, in the SDKs' order:
//! 1. `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`);
//! 2. the profile `AWS_PROFILE` (default `default`) in `AWS_SHARED_CREDENTIALS_FILE`
//!    (default `~/.aws/credentials`).
//!
//! None found means calls go unsigned (local emulators). Read when a call is made and reused
//! for a minute, so rotated credentials are picked up without a reload and without a file
//! read per request.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the secret or the token
        f.debug_struct("Credentials").field("access_key", &self.access_key).finish_non_exhaustive()
    }
}

/// How long credentials read from the environment or the file are reused: rotations are
/// picked up within this, without a file read per call on the request path.
const REUSE: std::time::Duration = std::time::Duration::from_secs(60);

impl Credentials {
    /// The first credentials of the chain, if any. Each thread reads the chain at most once a
    /// minute and keeps what it found, so the request path takes no lock and copies nothing.
    pub fn load() -> Option<Arc<Credentials>> {
        thread_local! {
            static CACHE: RefCell<Option<(Instant, Option<Arc<Credentials>>)>> = const { RefCell::new(None) };
        }
        CACHE.with(|cache| {
            let mut g = cache.borrow_mut();
            if let Some((_, c)) = g.as_ref().filter(|(at, _)| at.elapsed() < REUSE) {
                return c.clone();
            }
            let c = Self::read().map(Arc::new);
            *g = Some((Instant::now(), c.clone()));
            c
        })
    }

    /// These credentials, to sign with.
    pub fn keys(&self) -> crate::aws::sigv4::Keys<'_> {
        crate::aws::sigv4::Keys {
            access_key: &self.access_key,
            secret: &self.secret,
            session_token: self.session_token.as_deref(),
        }
    }

    fn read() -> Option<Credentials> {
        from_env(|k| std::env::var(k).ok()).or_else(|| {
            let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
            let file = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")))?;
            let text = std::fs::read_to_string(file).ok()?;
            from_ini(&text, &profile)
        })
    }
}

fn from_env(get: impl Fn(&str) -> Option<String>) -> Option<Credentials> {
    let access_key = get("AWS_ACCESS_KEY_ID").filter(|v| !v.is_empty())?;
    let secret = get("AWS_SECRET_ACCESS_KEY").filter(|v| !v.is_empty())?;
    Some(Credentials { access_key, secret, session_token: get("AWS_SESSION_TOKEN").filter(|v| !v.is_empty()) })
}

/// `[profile]` sections of an AWS credentials file.
fn from_ini(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_profile = false;
    let (mut ak, mut sk, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => ak = Some(v),
                "aws_secret_access_key" => sk = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(Credentials { access_key: ak?, secret: sk?, session_token: token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_then_profile() {
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AK".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("SK".to_string()),
            _ => None,
        };
        assert_eq!(
            from_env(env).map(|c| (c.access_key, c.secret, c.session_token)),
            Some(("AK".into(), "SK".into(), None))
        );
        assert!(from_env(|_| None).is_none());
        let ini = "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n[ci]\naws_access_key_id=C\naws_secret_access_key=CS\naws_session_token = T\n";
        assert_eq!(from_ini(ini, "default").map(|c| c.access_key), Some("D".into()));
        let ci = from_ini(ini, "ci").expect("ci");
        assert_eq!((ci.access_key.as_str(), ci.session_token.as_deref()), ("C", Some("T")));
        assert!(from_ini(ini, "missing").is_none());
        assert!(!format!("{ci:?}").contains("CS"), "Debug never shows the secret");
    }
}
