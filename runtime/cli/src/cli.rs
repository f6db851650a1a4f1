//! The `cella` command line (clap): `serve` runs a node; `deploy` (and `deploy --check`),
//! `rollback`, `call`, `inspect` and `modules` talk to a running node over HTTP and turn its
//! answers into readable output; `new`, `build` and `dev` are the developer loop (see
//! `cella_dev`). Errors exit 1, a
//! `deploy --check` that finds differences exits 3.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use hyper::Method;

use cella_dev::{
    dev::{self, DevOptions},
    guest_build,
    scaffold::{self, Kind},
};
use cella_node::{Node, NodeOptions};

use crate::client::{self, encode_segment};

/// Exit code of `deploy --check` when the candidate diverges or fails on existing entities.
pub const EXIT_CHECK_FAILED: u8 = 3;

/// An error that asks for a specific exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitWith {
    pub code: u8,
    pub message: String,
}

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
    /// Create an entity crate: `cella new my-counter`.
    New {
        /// Crate name (also the default entity type name).
        name: String,
        /// The kind of entity.
        #[arg(long, value_enum, default_value = "value")]
        kind: Kind,
        /// Directory to create the crate in (default: ./NAME).
        #[arg(long, value_name = "DIR")]
        path: Option<PathBuf>,
        /// The language of the entity.
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
    },
    /// Build an entity project into a component and validate it: a Rust crate (wasm32-wasip2,
    /// release), a Python project (app.py, componentize-py) or a JavaScript project
    /// (package.json, componentize-js).
    Build {
        /// The entity crate.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Build, serve and reload on every save: an embedded node (data in PATH/.cella) that
    /// deploys each new build in place.
    Dev {
        /// The entity crate.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Address to serve HTTP on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Entity type to deploy as (default: the package name).
        #[arg(long, value_name = "TYPE")]
        name: Option<String>,
    },
    /// Run a node (an embedded single node; data and modules persist in --data-dir).
    Serve {
        /// Directory for the journal, snapshots and modules.
        #[arg(long, default_value = "./.cella")]
        data_dir: PathBuf,
        /// Address to serve HTTP on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Require `Authorization: Bearer TOKEN` for module upload, check, delete and rollback.
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
        /// This node's id in a cluster (with --initial-cluster or --join).
        #[arg(long, value_name = "N")]
        node_id: Option<u64>,
        /// Form a cluster: ID=HOST:PORT,... for every initial member, this node included; the
        /// lowest id initializes it. Journals are then replicated with Raft.
        #[arg(long, value_name = "ID=ADDR,...", requires = "node_id")]
        initial_cluster: Option<String>,
        /// Join an existing cluster through one of its nodes (HOST:PORT): the node learns the
        /// placement from it and waits to be added with `cella cluster add-node`.
        #[arg(
            long,
            value_name = "HOST:PORT",
            requires = "node_id",
            conflicts_with = "initial_cluster"
        )]
        join: Option<String>,
        /// A partition snapshots its state and purges its raft log every this many entries.
        #[arg(long, value_name = "ENTRIES", default_value_t = cella_cluster::cluster::DEFAULT_SNAPSHOT_EVERY)]
        raft_snapshot_every: u64,
        /// Raft groups the entity space is split into (fixed when the cluster is created).
        #[arg(long, default_value_t = 8)]
        partitions: u32,
        /// Replicas per partition.
        #[arg(long, default_value_t = 3)]
        replicas: usize,
    },
    /// Upload a component as the new version of an entity type.
    Deploy {
        /// The component (.wasm).
        file: PathBuf,
        /// Entity type name to deploy it as.
        #[arg(long)]
        name: String,
        /// Only check: replay the existing entities through the component and compare with the
        /// active version, without deploying. Exits 3 if any entity diverges or fails.
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        server: ServerArg,
        /// Admin token, when the node requires one.
        #[arg(long, env = "CELLA_ADMIN_TOKEN")]
        admin_token: Option<String>,
    },
    /// Make an earlier version of an entity type active again.
    Rollback {
        /// Entity type.
        #[arg(value_name = "TYPE")]
        entity_type: String,
        /// The version to activate (default: the one before the active version).
        #[arg(long, value_name = "VERSION")]
        to: Option<u32>,
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
    /// Inspect the cluster a node belongs to, add and remove nodes.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterAction {
    /// Add a node (started with `cella serve --node-id ID --listen ADDR --join ...`) to the
    /// cluster; partitions then move replicas to it and leaders spread over it.
    AddNode {
        /// The new node's id.
        id: u64,
        /// The address the other nodes reach it at (HOST:PORT, its --listen).
        addr: String,
        #[command(flatten)]
        server: ServerArg,
        /// Admin token, when the node requires one.
        #[arg(long, env = "CELLA_ADMIN_TOKEN")]
        admin_token: Option<String>,
    },
    /// Remove a node from the cluster; partitions move their replicas off it. Stop the node
    /// once `cella cluster status` shows it in no group.
    RemoveNode {
        /// The node's id.
        id: u64,
        #[command(flatten)]
        server: ServerArg,
        /// Admin token, when the node requires one.
        #[arg(long, env = "CELLA_ADMIN_TOKEN")]
        admin_token: Option<String>,
    },
    /// Nodes, partitions, leaders, terms and applied indexes, as one node sees them.
    Status {
        #[command(flatten)]
        server: ServerArg,
        /// Print the JSON of `GET /v1/cluster` instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Languages `cella new` scaffolds.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// What is logged when `CELLA_LOG` is not set: warnings, except openraft's failed heartbeats,
/// one per group and heartbeat (ten a second per group) while a peer is down; the replication
/// errors, which back off, still say so.
const DEFAULT_LOG: &str = "warn,openraft::core::heartbeat=error";

/// The whole `cella` program: logging to stderr (`CELLA_LOG`), argument parsing, exit code.
pub fn entry() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CELLA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG)),
        )
        .with_writer(std::io::stderr)
        .init();
    match main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<ExitWith>() {
                Some(exit) => std::process::ExitCode::from(exit.code),
                None => std::process::ExitCode::FAILURE,
            }
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

/// Prints the answer of `PUT /v1/modules/{type}?check=true` readably; an error (exit code 3)
/// if any entity diverged or failed.
fn check_summary(entity_type: &str, body: &str) -> anyhow::Result<()> {
    let report: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| anyhow::anyhow!("the server's answer is not JSON ({e}): {body}"))?;
    let list = |field: &str| report[field].as_array().cloned().unwrap_or_default();
    let (diverged, failed) = (list("diverged"), list("failed"));
    let checked = report["checked"].as_u64().unwrap_or(0);
    let against = match report.get("activeVersion") {
        Some(serde_json::Value::Null) => " (no version is active)".to_string(),
        Some(v) => format!(" against the active v{v}"),
        None => String::new(),
    };
    let entities = if checked == 1 { "entity" } else { "entities" };
    println!("checked {checked} {entities} of `{entity_type}`{against}");
    if let Some(candidate) = report.get("candidate") {
        let commands: Vec<&str> = candidate["commands"]
            .as_array()
            .map(|c| c.iter().filter_map(|c| c.as_str()).collect())
            .unwrap_or_default();
        println!(
            "  candidate: {}, {} entity, commands {}",
            candidate["digest"].as_str().unwrap_or("?"),
            candidate["kind"].as_str().unwrap_or("?"),
            commands.join(", ")
        );
    }
    if report["truncated"].as_bool() == Some(true) {
        println!("  (more entities exist than were checked)");
    }
    let key = |entry: &serde_json::Value| entry["key"].as_str().unwrap_or("?").to_string();
    if !diverged.is_empty() {
        println!("diverged: {}", diverged.len());
        for entry in &diverged {
            println!("  {entity_type}/{}", key(entry));
            println!("    current:   {}", entry["current"]);
            println!("    candidate: {}", entry["candidate"]);
        }
    }
    if !failed.is_empty() {
        println!("failed: {}", failed.len());
        for entry in &failed {
            let error = entry["error"].as_str().unwrap_or("?").trim_end();
            println!(
                "  {entity_type}/{}: {}",
                key(entry),
                error.replace('\n', "\n    ")
            );
        }
    }
    if diverged.is_empty() && failed.is_empty() {
        println!("ok: every checked entity replays to the same state");
        return Ok(());
    }
    let hint = if failed.is_empty() {
        "if the differences are intended, deploy without --check"
    } else {
        "a deploy of this candidate would be refused: it cannot replay the entities that failed"
    };
    Err(ExitWith {
        code: EXIT_CHECK_FAILED,
        message: format!(
            "the candidate does not take over `{entity_type}` unchanged: {} diverged, {} \
             failed\nhint: {hint}",
            diverged.len(),
            failed.len()
        ),
    }
    .into())
}

fn split_entity(entity: &str) -> anyhow::Result<(&str, &str)> {
    match entity.split_once('/') {
        Some((t, k)) if !t.is_empty() && !k.is_empty() => Ok((t, k)),
        _ => bail!("`{entity}` is not an entity address\nhint: write TYPE/KEY, e.g. counter/alice"),
    }
}

/// Prints a successful JSON body prettily, or turns an error body into an error.
/// Parses `1=127.0.0.1:7001,2=127.0.0.1:7002`.
fn parse_initial_cluster(text: &str) -> anyhow::Result<std::collections::BTreeMap<u64, String>> {
    let mut members = std::collections::BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('=').ok_or_else(|| {
            anyhow::anyhow!(
                "--initial-cluster: `{part}` is not ID=HOST:PORT\nhint: e.g. \
                 --initial-cluster 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"
            )
        })?;
        let id: u64 = id.trim().parse().map_err(|_| {
            anyhow::anyhow!("--initial-cluster: `{id}` is not a node id (a number)")
        })?;
        let addr = addr.trim();
        if addr.parse::<SocketAddr>().is_err() {
            anyhow::bail!(
                "--initial-cluster: `{addr}` (node {id}) is not HOST:PORT with an IP address"
            );
        }
        if members.insert(id, addr.to_string()).is_some() {
            anyhow::bail!("--initial-cluster: node {id} is listed twice");
        }
    }
    if members.is_empty() {
        anyhow::bail!("--initial-cluster lists no node");
    }
    Ok(members)
}

/// Prints the `warnings` of a deploy reply to stderr, one `warning:` line each.
fn print_warnings(body: &str) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        return;
    };
    for warning in value["warnings"].as_array().into_iter().flatten() {
        if let Some(w) = warning.as_str() {
            eprintln!("warning: {w}");
        }
    }
}

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
            node_id,
            initial_cluster,
            join,
            raft_snapshot_every,
            partitions,
            replicas,
        } => {
            let mut options = NodeOptions::new(data_dir.clone(), listen);
            let mut single = cella_node::node::ClusterSettings::single();
            single.partitions = partitions;
            single.raft_snapshot_every = raft_snapshot_every.max(1);
            options.cluster = Some(single);
            if let Some(node_id) = node_id {
                let mut settings = cella_node::node::ClusterSettings {
                    node_id,
                    initial: BTreeMap::from([(node_id, listen.to_string())]),
                    join: false,
                    partitions,
                    replicas: replicas.max(1),
                    raft_snapshot_every: raft_snapshot_every.max(1),
                };
                match (initial_cluster, join) {
                    (Some(initial), _) => settings.initial = parse_initial_cluster(&initial)?,
                    (None, Some(peer)) => {
                        settings.join = true;
                        let (p, r) = cluster_placement(&peer).await?;
                        (settings.partitions, settings.replicas) = (p, r);
                    }
                    (None, None) => anyhow::bail!(
                        "--node-id needs --initial-cluster (to form a cluster) or --join (to join \
                         one)\nhint: cella serve --node-id 1 --listen 127.0.0.1:7001 \
                         --initial-cluster 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"
                    ),
                }
                options.cluster = Some(settings);
            }
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
            check,
            server,
            admin_token,
        } => {
            let bytes = std::fs::read(&file).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read {}: {e}\nhint: build the component first (`cella build` in \
                     the entity crate)",
                    file.display()
                )
            })?;
            let mut path = format!("/v1/modules/{}", encode_segment(&name));
            if check {
                path.push_str("?check=true");
            }
            let reply = client::send(
                &server.server,
                Method::PUT,
                &path,
                bytes,
                admin_token.as_deref(),
            )
            .await?;
            if check && (200..300).contains(&reply.status) {
                return check_summary(&name, &reply.body);
            }
            print_warnings(&reply.body);
            finish(reply)
        }
        Command::Rollback {
            entity_type,
            to,
            server,
            admin_token,
        } => {
            let body = match to {
                Some(version) => serde_json::json!({ "version": version }).to_string(),
                None => String::new(),
            };
            let reply = client::send(
                &server.server,
                Method::POST,
                &format!("/v1/modules/{}/rollback", encode_segment(&entity_type)),
                body.into_bytes(),
                admin_token.as_deref(),
            )
            .await?;
            finish(reply)
        }
        Command::New {
            name,
            kind,
            path,
            lang,
        } => match lang {
            Lang::Rust => scaffold::run_new(&name, kind, path),
            Lang::Python => cella_dev::build_python::run_new(&name, kind, path),
            Lang::Js => cella_dev::build_js::run_new(&name, kind, path),
        },
        Command::Build { path } => guest_build::run_build(&path).await,
        Command::Dev { path, listen, name } => {
            dev::run(DevOptions {
                dir: path,
                listen,
                name,
            })
            .await
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
        Command::Cluster {
            action:
                ClusterAction::AddNode {
                    id,
                    addr,
                    server,
                    admin_token,
                },
        } => {
            let body = serde_json::to_vec(&serde_json::json!({ "id": id, "addr": addr }))?;
            finish(
                client::send(
                    &server.server,
                    Method::POST,
                    "/v1/cluster/nodes",
                    body,
                    admin_token.as_deref(),
                )
                .await?,
            )
        }
        Command::Cluster {
            action:
                ClusterAction::RemoveNode {
                    id,
                    server,
                    admin_token,
                },
        } => finish(
            client::send(
                &server.server,
                Method::DELETE,
                &format!("/v1/cluster/nodes/{id}"),
                Vec::new(),
                admin_token.as_deref(),
            )
            .await?,
        ),
        Command::Cluster {
            action: ClusterAction::Status { server, json },
        } => {
            let reply =
                client::send(&server.server, Method::GET, "/v1/cluster", Vec::new(), None).await?;
            if json || reply.status != 200 {
                return finish(reply);
            }
            let status: serde_json::Value = serde_json::from_str(&reply.body)?;
            print!("{}", cluster_table(&status));
            Ok(())
        }
    }
}

/// The partitions and replicas of the cluster `peer` (HOST:PORT) belongs to.
async fn cluster_placement(peer: &str) -> anyhow::Result<(u32, usize)> {
    let url = format!("http://{peer}");
    let reply = client::send(&url, Method::GET, "/v1/cluster", Vec::new(), None).await?;
    if reply.status != 200 {
        anyhow::bail!(
            "--join {peer}: the node answered {} to GET /v1/cluster: {}\nhint: --join takes the \
             HOST:PORT of a member of the cluster",
            reply.status,
            reply.body.trim()
        );
    }
    let status: serde_json::Value = serde_json::from_str(&reply.body)?;
    match (status["partitions"].as_u64(), status["replicas"].as_u64()) {
        (Some(p), Some(r)) => Ok((u32::try_from(p)?, usize::try_from(r)?)),
        _ => anyhow::bail!("--join {peer}: the cluster status names no partitions or replicas"),
    }
}

/// `cella cluster status` as text: the nodes, then one line per raft group.
fn cluster_table(status: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {} · {} partitions over {} shards",
        status["nodeId"], status["partitions"], status["shards"]
    );
    for node in status["nodes"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  node {:<4} {}",
            node["id"],
            node["addr"].as_str().unwrap_or("?")
        );
    }
    let _ = writeln!(
        out,
        "{:<6} {:<10} {:<7} {:<6} {:<12} {:>9} {:>9} {:>9}",
        "group", "state", "leader", "term", "voters", "last log", "committed", "applied"
    );
    for g in status["groups"].as_array().into_iter().flatten() {
        let voters: Vec<String> = g["voters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v.to_string())
            .collect();
        let name = match g["group"].as_u64() {
            Some(0) => "meta".to_string(),
            Some(n) => n.to_string(),
            None => "?".to_string(),
        };
        let leader = g["leader"]
            .as_u64()
            .map_or("-".to_string(), |l| l.to_string());
        let _ = writeln!(
            out,
            "{:<6} {:<10} {:<7} {:<6} {:<12} {:>9} {:>9} {:>9}",
            name,
            g["state"].as_str().unwrap_or("?"),
            leader,
            g["term"].to_string(),
            voters.join(","),
            g["lastLogIndex"].to_string(),
            g["committed"].to_string(),
            g["applied"].to_string()
        );
    }
    out
}

async fn serve(options: NodeOptions, deploy: Vec<String>) -> anyhow::Result<()> {
    let data_dir = options.data_dir.clone();
    let token = options.admin_token.clone();
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
        // Through the node's own API, so that in a cluster the change goes to the metadata
        // group's leader (and waits for one) like any upload.
        let path = format!("/v1/modules/{}", client::encode_segment(ty));
        let reply = client::send(&base, Method::PUT, &path, bytes, token.as_deref()).await?;
        if reply.status != 200 && reply.status != 201 {
            anyhow::bail!(
                "deploying {file} as `{ty}` failed ({}): {}",
                reply.status,
                reply.body.trim()
            );
        }
        let meta: serde_json::Value = serde_json::from_str(&reply.body)?;
        let commands: Vec<&str> = meta["commands"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str())
            .collect();
        println!(
            "deployed {ty} v{} ({}, commands: {})",
            meta["version"],
            meta["kind"].as_str().unwrap_or("?"),
            commands.join(", ")
        );
    }
    cella_node::node::wait_for_signal().await;
    eprintln!("shutting down: finishing in-flight requests");
    handle.shutdown().await;
    Ok(())
}
