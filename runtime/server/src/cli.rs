//! The `cella` command line (clap): `serve` runs a node; `deploy`, `call`, `inspect` and
//! `modules` talk to a running node over HTTP and turn its answers into readable output.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use hyper::Method;

use crate::{
    client::{self, encode_segment},
    node::{Node, NodeOptions},
};

#[derive(Parser, Debug)]
#[command(
    name = "cella",
    version,
    about = "Cella: stateful serverless entities on WebAssembly components"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug)]
struct ServerArg {
    /// URL of the Cella node to talk to.
    #[arg(long, env = "CELLA_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node (an embedded single node; data and modules persist in --data-dir).
    Serve {
        /// Directory for the journal, snapshots and modules.
        #[arg(long, default_value = "./.cella")]
        data_dir: PathBuf,
        /// Address to serve HTTP on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Require `Authorization: Bearer TOKEN` for module upload and delete.
        #[arg(long, env = "CELLA_ADMIN_TOKEN")]
        admin_token: Option<String>,
        /// Deploy a component at start, as TYPE=FILE (repeatable).
        #[arg(long = "deploy", value_name = "TYPE=FILE")]
        deploy: Vec<String>,
        /// Per-call guest deadline in milliseconds.
        #[arg(long, default_value_t = 1000)]
        deadline_ms: u64,
        /// Memory limit per guest instance, in MiB.
        #[arg(long, default_value_t = 64)]
        memory_limit_mb: usize,
        /// Entities kept in memory.
        #[arg(long, default_value_t = 100_000)]
        cache_capacity: usize,
        /// Snapshot event-sourced entities every this many events.
        #[arg(long, default_value_t = 100)]
        snapshot_every: u64,
    },
    /// Upload a component as the new version of an entity type.
    Deploy {
        /// The component (.wasm).
        file: PathBuf,
        /// Entity type name to deploy it as.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        server: ServerArg,
        /// Admin token, when the node requires one.
        #[arg(long, env = "CELLA_ADMIN_TOKEN")]
        admin_token: Option<String>,
    },
    /// Send a command to an entity: `cella call counter/alice add 5`.
    Call {
        /// TYPE/KEY of the entity.
        entity: String,
        /// Command name.
        command: String,
        /// JSON payload (default: null).
        payload: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Show an entity's state (and with --journal, its journal).
    Inspect {
        /// TYPE/KEY of the entity.
        entity: String,
        /// Show the journal instead of the state.
        #[arg(long)]
        journal: bool,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List deployed entity types.
    Modules {
        #[command(flatten)]
        server: ServerArg,
    },
}

/// The whole `cella` program: logging to stderr (`CELLA_LOG`), argument parsing, exit code.
pub fn entry() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CELLA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Parses the command line and runs it.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(cli))
}

fn split_entity(entity: &str) -> anyhow::Result<(&str, &str)> {
    match entity.split_once('/') {
        Some((t, k)) if !t.is_empty() && !k.is_empty() => Ok((t, k)),
        _ => bail!("`{entity}` is not an entity address\nhint: write TYPE/KEY, e.g. counter/alice"),
    }
}

/// Prints a successful JSON body prettily, or turns an error body into an error.
fn finish(reply: client::Reply) -> anyhow::Result<()> {
    let parsed: Option<serde_json::Value> = serde_json::from_str(&reply.body).ok();
    if (200..300).contains(&reply.status) {
        match parsed {
            Some(v) => println!("{}", serde_json::to_string_pretty(&v)?),
            None => println!("{}", reply.body),
        }
        return Ok(());
    }
    let (code, message) = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .map(|e| {
            (
                e["code"].as_str().unwrap_or("error").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .unwrap_or_else(|| ("error".into(), reply.body.clone()));
    bail!("the server answered {} {code}: {message}", reply.status)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            data_dir,
            listen,
            admin_token,
            deploy,
            deadline_ms,
            memory_limit_mb,
            cache_capacity,
            snapshot_every,
        } => {
            let mut options = NodeOptions::new(data_dir.clone(), listen);
            options.admin_token = admin_token;
            options.host.deadline = Duration::from_millis(deadline_ms);
            options.host.memory_limit = memory_limit_mb << 20;
            options.entities.deadline = options.host.deadline;
            options.entities.cache_capacity = cache_capacity.max(1);
            options.entities.snapshot_every = snapshot_every.max(1);
            serve(options, deploy).await
        }
        Command::Deploy {
            file,
            name,
            server,
            admin_token,
        } => {
            let bytes = std::fs::read(&file).map_err(|e| {
                anyhow::anyhow!("cannot read {}: {e}\nhint: build the component first (cargo xtask build-examples)", file.display())
            })?;
            let reply = client::send(
                &server.server,
                Method::PUT,
                &format!("/v1/modules/{}", encode_segment(&name)),
                bytes,
                admin_token.as_deref(),
            )
            .await?;
            finish(reply)
        }
        Command::Call {
            entity,
            command,
            payload,
            server,
        } => {
            let (ty, key) = split_entity(&entity)?;
            let body = payload.unwrap_or_default().into_bytes();
            let path = format!(
                "/v1/entities/{}/{}/{}",
                encode_segment(ty),
                encode_segment(key),
                encode_segment(&command)
            );
            finish(client::send(&server.server, Method::POST, &path, body, None).await?)
        }
        Command::Inspect {
            entity,
            journal,
            server,
        } => {
            let (ty, key) = split_entity(&entity)?;
            let mut path = format!(
                "/v1/entities/{}/{}",
                encode_segment(ty),
                encode_segment(key)
            );
            if journal {
                path.push_str("/journal");
            }
            finish(client::send(&server.server, Method::GET, &path, Vec::new(), None).await?)
        }
        Command::Modules { server } => finish(
            client::send(&server.server, Method::GET, "/v1/modules", Vec::new(), None).await?,
        ),
    }
}

async fn serve(options: NodeOptions, deploy: Vec<String>) -> anyhow::Result<()> {
    let data_dir = options.data_dir.clone();
    let handle = Node::start(options)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = format!("http://{}", handle.addr);
    println!("cella listening on {base} (data in {})", data_dir.display());
    for spec in deploy {
        let (ty, file) = spec
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--deploy `{spec}` must be TYPE=FILE"))?;
        let bytes = std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {file}: {e}"))?;
        let (meta, _) = handle
            .node
            .registry
            .deploy(ty, &bytes)
            .await
            .map_err(|e| anyhow::anyhow!("deploying {file} as `{ty}` failed: {e}"))?;
        println!(
            "deployed {ty} v{} ({}, commands: {})",
            meta.version,
            meta.kind.as_str(),
            meta.commands.join(", ")
        );
    }
    wait_for_signal().await;
    eprintln!("shutting down: finishing in-flight requests");
    handle.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
