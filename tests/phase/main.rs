//! Phase-level tests: the admission pipeline and the body reader, in process, between the
//! unit tests and the end-to-end suite. The pipeline runs over a compiled configuration
//! (the real snapshot) and a request given as plain values; the body reader runs over a
//! real Pingora HTTP/1 session on an in-memory stream.

mod admission;
mod body;

/// Compiles a configuration (its files in `dir`) into a snapshot, with a runtime of its own.
pub fn snapshot(dir: &std::path::Path, toml: &str) -> std::sync::Arc<edgegate::snapshot::Snapshot> {
    snapshot_with(dir, toml, &edgegate::runtime::Runtime::new())
}

/// Compiles a configuration with the state of `rt` (as a reload does).
pub fn snapshot_with(
    dir: &std::path::Path,
    toml: &str,
    rt: &std::sync::Arc<edgegate::runtime::Runtime>,
) -> std::sync::Arc<edgegate::snapshot::Snapshot> {
    let path = dir.join("edgegate.toml");
    std::fs::write(&path, toml).expect("config");
    match edgegate::config::load_str(&path, toml, rt) {
        Ok(s) => std::sync::Arc::new(s),
        Err(e) => panic!("config: {e}"),
    }
}

pub const SERVER: &str = "[server]\nlisten = [\"127.0.0.1:9\"]\nmax_body = \"200KiB\"\n";
