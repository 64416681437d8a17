//! Command line (see the contract's interfaces.md).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "edgegate", version, about = "Self-hosted API gateway on Pingora")]
pub struct Cli {
    /// The configuration file.
    #[arg(short = 'c', long = "config", global = true, default_value = "/etc/edgegate/edgegate.toml")]
    pub config: PathBuf,
    /// Run in the background (daemonize).
    #[arg(short = 'd', long)]
    pub daemon: bool,
    /// Take the listening sockets over from the running instance (graceful upgrade).
    #[arg(short = 'u', long)]
    pub upgrade: bool,
    /// Validate the configuration and exit (as `check`).
    #[arg(short = 't', long)]
    pub test: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate everything the config names; print "ok" or FILE:LINE:COL errors.
    Check,
    /// Print SigV4 headers for a request (for curl and for tests).
    Sign {
        #[arg(long)]
        access_key: String,
        /// The environment variable holding the secret key.
        #[arg(long)]
        secret_env: String,
        #[arg(long, default_value = "us-east-1")]
        region: String,
        #[arg(long, default_value = "execute-api")]
        service: String,
        /// More headers to sign, as 'Name: value'.
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// The request body.
        #[arg(short = 'd', long = "data")]
        data: Option<String>,
        method: String,
        url: String,
    },
    /// API key management.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Print an [[apis]] block for an API description document.
    Import {
        #[command(subcommand)]
        what: ImportWhat,
    },
    /// Print an API of the configuration as an API description document.
    Export {
        #[command(subcommand)]
        what: ExportWhat,
    },
}

#[derive(Subcommand, Debug)]
pub enum ExportWhat {
    /// OpenAPI 3.0 with API Gateway's x-amazon-apigateway-* extensions.
    Openapi {
        /// The API's name.
        #[arg(long)]
        api: String,
        /// The stage the document describes (named in `servers`).
        #[arg(long)]
        stage: Option<String>,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
pub enum ImportWhat {
    /// OpenAPI 3.0/3.1 or Swagger 2.0, JSON or YAML.
    Openapi {
        /// The document.
        doc: PathBuf,
        /// The API's name (default: from info.title).
        #[arg(long)]
        name: Option<String>,
        /// A stage and its backend URL, as prod=https://backend.internal (repeatable).
        #[arg(long = "stage", value_parser = parse_stage)]
        stages: Vec<(String, String)>,
    },
}

fn parse_stage(s: &str) -> Result<(String, String), String> {
    let (name, url) = s.split_once('=').ok_or("use NAME=URL, as prod=http://127.0.0.1:9000")?;
    if name.is_empty() || !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err("use NAME=URL with an http:// or https:// URL".into());
    }
    Ok((name.to_string(), url.to_string()))
}

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// Print a new random key once, and the key-file entry to append (its hash only).
    Create {
        /// The usage plan the key belongs to.
        #[arg(long)]
        plan: String,
        /// A name for people (the customer, the app).
        #[arg(long)]
        name: String,
    },
}
