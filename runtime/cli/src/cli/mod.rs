//! The `cella` command line (clap): the commands and their flags, the program's entry (logging,
//! parsing, error report, exit code) and the dispatch to the modules that run them: [`serve`]
//! runs a node; [`admin`] sends `deploy` (and `deploy --check`), `rollback`, `call`, `inspect`,
//! `modules` and `cluster` to a running node over HTTP and turns its answers into readable
//! output; [`topics`] lists topics, publishes to one and follows one (`topics`, `publish`,
//! `follow`); [`entities`] lists the entities of a type; [`output`] holds the tables, JSON and
//! progress they print; [`project`] is the developer loop (`new`, `build`, `dev`; see
//! `cella_dev`). Errors exit 1, a `deploy --check` that finds differences exits 3.

mod admin;
mod audit;
mod certs;
mod cluster_cmd;
mod compile;
mod entities;
mod output;
mod placement;
mod project;
mod rebalance_args;
mod sched_args;
mod serve;
mod telemetry;
mod topics;
mod views;

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use cella_dev::scaffold::Kind;

pub use project::Lang;

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
    /// Trust the CA certificate(s) in this PEM file, besides the system's roots, for https://
    /// servers (every command that talks to a node, and `serve --deploy`/`--join`).
    #[arg(long, global = true, env = "CELLA_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// How logs are written on stderr: readable lines, or one JSON object per line (level,
    /// message, target, fields). What is logged: `CELLA_LOG` (e.g. `info`, `cella_node=debug`).
    #[arg(
        long,
        global = true,
        env = "CELLA_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    log_format: telemetry::LogFormat,
}

#[derive(clap::Args, Debug)]
struct ServerArg {
    /// URL of the Cella node to talk to.
    #[arg(long, env = "CELLA_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
}

/// How a command that has a terminal view prints (see `output.rs`).
#[derive(clap::Args, Debug)]
struct FormatArgs {
    /// Print the node's JSON (the default when stdout is not a terminal).
    #[arg(long, conflicts_with = "table")]
    json: bool,
    /// Print tables and summaries (the default on a terminal; also `CELLA_OUTPUT=table`).
    #[arg(long)]
    table: bool,
}

impl From<FormatArgs> for admin::Format {
    fn from(args: FormatArgs) -> Self {
        admin::Format {
            json: args.json,
            table: args.table,
        }
    }
}

// `Serve` carries every node flag; the enum is parsed once, so its size does not matter.
#[allow(clippy::large_enum_variant)]
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
        /// Export traces over OTLP/HTTP to this collector (as `cella serve --otlp-endpoint`).
        #[arg(long, value_name = "URL", env = "CELLA_OTLP_ENDPOINT")]
        otlp_endpoint: Option<String>,
    },
    /// Run a node (an embedded single node; data and modules persist in --data-dir).
    Serve(serve::ServeArgs),
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
        limits: admin::LimitArgs,
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
        /// A token with role `invoke` on the type, when the node requires one.
        #[arg(long, env = "CELLA_TOKEN")]
        token: Option<String>,
    },
    /// Show an entity's state (and with --journal, its journal).
    Inspect {
        /// TYPE/KEY of the entity.
        entity: String,
        /// Show the journal instead of the state.
        #[arg(long)]
        journal: bool,
        #[command(flatten)]
        format: FormatArgs,
        #[command(flatten)]
        server: ServerArg,
        /// A token with role `invoke` (read-only is enough) on the type, when the node
        /// requires one.
        #[arg(long, env = "CELLA_TOKEN")]
        token: Option<String>,
    },
    /// List the entities of a type in key order: key, sequence, module version, last change.
    Entities {
        /// Entity type.
        #[arg(value_name = "TYPE")]
        entity_type: String,
        /// Only keys starting with this.
        #[arg(long, value_name = "P")]
        prefix: Option<String>,
        /// Only keys after this one (the `next` of the previous page).
        #[arg(long, value_name = "KEY")]
        after: Option<String>,
        /// Entities per page (1 to 1000).
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: u32,
        /// Every page, not only the first.
        #[arg(long)]
        all: bool,
        /// Print the JSON of `GET /v1/entities/{type}` instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArg,
        /// A token with role `invoke` (read-only is enough) on the type, when the node
        /// requires one.
        #[arg(long, env = "CELLA_TOKEN")]
        token: Option<String>,
    },
    /// List deployed entity types.
    Modules {
        #[command(flatten)]
        format: FormatArgs,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List the topics: retained offsets, and each subscriber's lag and failures.
    Topics {
        #[command(flatten)]
        server: ServerArg,
        /// Print the JSON of `GET /v1/topics` instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Publish a JSON message to a topic; prints its offset.
    Publish {
        /// The topic.
        topic: String,
        /// The message (JSON), e.g. '{"id": 1}'.
        message: String,
        /// Publish once even if retried with the same key (the `Idempotency-Key` header).
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
        #[command(flatten)]
        server: ServerArg,
        /// Admin token, when the node requires one.
        #[arg(long, env = "CELLA_ADMIN_TOKEN")]
        admin_token: Option<String>,
    },
    /// Print a topic's messages as they are published (`offset<TAB>json` per line) until
    /// Ctrl-C; a dropped connection resumes after the last offset printed.
    Follow {
        /// The topic.
        topic: String,
        /// Start at this offset (1: every retained message) instead of with the next message.
        #[arg(long, value_name = "OFFSET")]
        from: Option<u64>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// The audit trail: deploys, rollbacks, deletes, membership changes and token reloads,
    /// with the token id that made each (admin).
    Audit {
        /// Records to show at most.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Show the records after this index.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Print the JSON of `GET /v1/audit` instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArg,
        /// Admin token, when the node requires one.
        #[arg(long, env = "CELLA_ADMIN_TOKEN")]
        admin_token: Option<String>,
    },
    /// Inspect the cluster a node belongs to, add and remove nodes.
    Cluster {
        #[command(subcommand)]
        action: cluster_cmd::ClusterAction,
    },
    /// Compile the component on stdin for a node (its child process).
    #[command(name = "__compile", hide = true)]
    Compile(compile::CompileArgs),
}

/// The whole `cella` program: argument parsing, logging to stderr (`CELLA_LOG`,
/// `--log-format`; `telemetry.rs`), exit code.
pub fn entry() -> std::process::ExitCode {
    match main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", report(&e));
            match e.downcast_ref::<ExitWith>() {
                Some(exit) => std::process::ExitCode::from(exit.code),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}

/// An error as `cella` prints it: `error: ` and the messages of its chain joined by `: ` (as
/// anyhow's `{:#}`), then the `hint:` lines any of them ends with, so that a hint follows the
/// cause it is about rather than coming between a message and its cause.
fn report(error: &anyhow::Error) -> String {
    let mut text = String::from("error: ");
    let mut hints = Vec::new();
    for (i, cause) in error.chain().enumerate() {
        let message = cause.to_string();
        let (message, hint) = match message.split_once("\nhint: ") {
            Some((message, hint)) => (message.to_string(), Some(hint.to_string())),
            None => (message, None),
        };
        if i > 0 {
            text.push_str(": ");
        }
        text.push_str(&message);
        hints.extend(hint);
    }
    for hint in hints {
        text.push_str("\nhint: ");
        text.push_str(&hint);
    }
    text
}

/// Parses the command line, installs the logger (and `serve --otlp-endpoint`'s exporter) and
/// runs it.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let otlp = match &cli.command {
            Command::Serve(args) => args.otlp(),
            Command::Dev {
                otlp_endpoint,
                listen,
                ..
            } => otlp_endpoint.clone().map(|endpoint| telemetry::Otlp {
                endpoint,
                node_id: 1,
                addr: listen.to_string(),
            }),
            _ => None,
        };
        let telemetry = telemetry::init(cli.log_format, otlp)?;
        let done = run(cli).await;
        telemetry.shutdown().await;
        done
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(ca) = &cli.ca {
        crate::client::trust_ca(Some(ca))?;
    }
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Compile(args) => compile::run(args).await,
        Command::New {
            name,
            kind,
            path,
            lang,
        } => project::new(&name, kind, path, lang),
        Command::Build { path } => project::build(&path).await,
        Command::Dev {
            path, listen, name, ..
        } => project::dev(path, listen, name).await,
        Command::Deploy {
            file,
            name,
            check,
            limits,
            server,
            admin_token,
        } => {
            let path = admin::deploy_path(&name, check, &limits);
            admin::deploy(&server.server, &file, &name, &path, admin_token.as_deref()).await
        }
        Command::Rollback {
            entity_type,
            to,
            server,
            admin_token,
        } => admin::rollback(&server.server, &entity_type, to, admin_token.as_deref()).await,
        Command::Call {
            entity,
            command,
            payload,
            server,
            token,
        } => admin::call(&server.server, &entity, &command, payload, token.as_deref()).await,
        Command::Inspect {
            entity,
            journal,
            format,
            server,
            token,
        } => {
            let format = format.into();
            admin::inspect(&server.server, &entity, journal, format, token.as_deref()).await
        }
        Command::Entities {
            entity_type,
            prefix,
            after,
            limit,
            all,
            json,
            server,
            token,
        } => {
            let listing = entities::Listing {
                entity_type: &entity_type,
                prefix: prefix.as_deref(),
                after: after.as_deref(),
                limit,
                all,
                json,
            };
            entities::list(&server.server, listing, token.as_deref()).await
        }
        Command::Modules { format, server } => admin::modules(&server.server, format.into()).await,
        Command::Audit {
            limit,
            after,
            json,
            server,
            admin_token,
        } => audit::audit(&server.server, after, limit, json, admin_token.as_deref()).await,
        Command::Topics { server, json } => topics::list(&server.server, json).await,
        Command::Publish {
            topic,
            message,
            idempotency_key,
            server,
            admin_token,
        } => {
            topics::publish(
                &server.server,
                &topic,
                &message,
                idempotency_key.as_deref(),
                admin_token.as_deref(),
            )
            .await
        }
        Command::Follow {
            topic,
            from,
            server,
        } => topics::follow(&server.server, &topic, from).await,
        Command::Cluster { action } => cluster_cmd::run(action).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_follow_the_whole_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = anyhow::Error::new(io).context("cannot read x.wasm\nhint: build it first");
        assert_eq!(
            report(&error),
            "error: cannot read x.wasm: no such file\nhint: build it first"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(report(&plain), format!("error: {plain:#}"));
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
