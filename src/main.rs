//! `edgegate`: load and check the config, then run the gateway (see `server`).

use arc_swap::ArcSwap;
use clap::Parser;
use edgegate::cli::{Cli, Command, ExportWhat, Format, ImportWhat, KeysAction};
use edgegate::observability::{access_log, metrics};
use std::process::ExitCode;
use std::sync::Arc;

/// mimalloc: per-thread heaps keep the many small request-path allocations (headers, paths,
/// ids) free of the arena-lock contention glibc malloc shows across worker threads
/// (`edgegate::alloc`: entered by its unaligned fast path).
#[global_allocator]
static GLOBAL: edgegate::alloc::Allocator = edgegate::alloc::Allocator;

fn main() -> ExitCode {
    // First: a SIGHUP while starting (or taking sockets over) must not kill the process.
    edgegate::lifecycle::install_early_hup();
    let cli = Cli::parse();
    if cli.daemon && cli.command.is_none() && !cli.test {
        // before any thread exists; returns in the daemon only
        edgegate::lifecycle::daemon::daemonize();
    }
    if let Some(Command::Sign { access_key, secret_env, region, service, headers, data, method, url }) = &cli.command {
        let Ok(secret) = std::env::var(secret_env) else {
            eprintln!("edgegate: environment variable {secret_env} is not set");
            return ExitCode::FAILURE;
        };
        let extra: Vec<(String, String)> =
            headers.iter().filter_map(|h| h.split_once(':')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let now = edgegate::clock::unix_now();
        let body = data.as_deref().unwrap_or("").as_bytes();
        return match edgegate::aws::sigv4::sign_request(
            access_key, &secret, region, service, method, url, &extra, body, now,
        ) {
            Ok(hs) => {
                for (k, v) in hs {
                    println!("{k}: {v}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("edgegate: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Keys { action: KeysAction::Create { plan, name } }) = &cli.command {
        return match edgegate::api_keys::create(plan, name) {
            Ok((key, entry)) => {
                println!("# API key (shown once; store it now): {key}");
                println!("# Append to the [api_keys] file:");
                print!("{entry}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("edgegate: cannot create a key: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Import { what: ImportWhat::Openapi { doc, name, stages } }) = &cli.command {
        let out = std::fs::read(doc)
            .map_err(|e| format!("cannot read {}: {e}", doc.display()))
            .and_then(|bytes| edgegate::openapi::parse_document(&bytes))
            .and_then(|d| {
                edgegate::openapi::import(
                    &d,
                    &edgegate::openapi::Options { name: name.clone(), stages: stages.clone(), into_config: false },
                )
            })
            .and_then(|im| {
                for line in &im.report {
                    eprintln!("edgegate: not converted: {line}");
                }
                edgegate::openapi::to_toml(&im)
            });
        return match out {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("edgegate: {}: {e}", doc.display());
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Export { what: ExportWhat::Openapi { api, stage, format } }) = &cli.command {
        // only a configuration that compiles is exported
        if let Err(errs) = edgegate::config::load(&cli.config, &edgegate::runtime::Runtime::new()) {
            eprintln!("{errs}");
            return ExitCode::FAILURE;
        }
        let out = edgegate::config::export::openapi(&cli.config, api, stage.as_deref()).and_then(|x| {
            for line in &x.report {
                eprintln!("edgegate: not exported: {line}");
            }
            match format {
                Format::Json => serde_json::to_string_pretty(&x.doc).map_err(|e| e.to_string()),
                Format::Yaml => serde_yaml_ng::to_string(&x.doc).map_err(|e| e.to_string()),
            }
        });
        return match out {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("edgegate: {}: {e}", cli.config.display());
                ExitCode::FAILURE
            }
        };
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGEGATE_LOG").unwrap_or_else(|_| "info".into());
    // Colours only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
    // `log` records (ours and Pingora's) reach tracing through the gate, which turns
    // client-caused Pingora errors into counted debug lines.
    let gate = edgegate::observability::errors::Gate { inner: tracing_log::LogTracer::new() };
    if log::set_boxed_logger(Box::new(gate)).is_ok() {
        log::set_max_level(tracing_log::AsLog::as_log(&tracing::level_filters::LevelFilter::current()));
    }

    // An absolute path, so that file watching and reloads do not depend on the working
    // directory; symbolic links are not resolved here: every reload follows them anew.
    let config = std::path::absolute(&cli.config).unwrap_or(cli.config.clone());
    // the state that outlives reloads, owned from here to the end of the process
    let runtime = edgegate::runtime::Runtime::new();
    let snap = match edgegate::config::load(&config, &runtime) {
        Ok(s) => s,
        Err(errs) => {
            eprintln!("{errs}");
            return ExitCode::FAILURE;
        }
    };
    if cli.test || matches!(cli.command, Some(Command::Check)) {
        println!("ok");
        return ExitCode::SUCCESS;
    }
    metrics::init();
    metrics::set_config_version(&snap.version);
    access_log::configure(&snap.settings.access_log);
    access_log::set_format(snap.settings.access_log_format.clone());
    runtime.tracing.configure(snap.settings.tracing.as_ref());
    log::info!(
        "edgegate {} starting with config {} (version {})",
        env!("CARGO_PKG_VERSION"),
        config.display(),
        snap.version
    );
    let shared = Arc::new(ArcSwap::from_pointee(snap));
    let args = edgegate::server::RunArgs { config, upgrade: cli.upgrade };
    match edgegate::server::run(shared, runtime, args) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("edgegate: {e}");
            ExitCode::FAILURE
        }
    }
}
