//! `cella cluster …`: its subcommands and what each runs (`admin.rs` for membership and
//! status, `placement.rs` for leadership and shard moves, `certs.rs` for certificates).

use std::path::PathBuf;

use clap::Subcommand;

use super::{FormatArgs, ServerArg, admin, certs, placement};

#[derive(Subcommand, Debug)]
pub(super) enum ClusterAction {
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
    /// Write a CA and certificates for a dev or test cluster into DIR: `ca.pem`/`ca-key.pem`,
    /// `node{i}.pem`/`node{i}-key.pem` for i in 1..=N (names 127.0.0.1 and localhost; server
    /// and client use, for `serve --tls-cert` and mutual TLS between peers).
    Certs {
        /// The directory to write them into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// How many node certificates to make.
        #[arg(long, value_name = "N", default_value_t = 3)]
        nodes: u32,
    },
    /// Nodes, partitions, leaders, terms and applied indexes, as one node sees them; every
    /// node's load and the leader moves made.
    Status {
        #[command(flatten)]
        server: ServerArg,
        #[command(flatten)]
        format: FormatArgs,
    },
    /// Move partition leadership toward spare CPU now, as the loads suggest (the metadata
    /// leader does it on its own too, unless nodes run with `--rebalance off`), or move one
    /// partition's leadership where you say.
    Rebalance {
        /// Only show what would be moved.
        #[arg(long)]
        dry_run: bool,
        /// Move this partition's leadership (with --to) instead of what the loads suggest.
        #[arg(long, value_name = "P", requires = "to")]
        partition: Option<u64>,
        /// The node to lead --partition (one of its voters).
        #[arg(long, value_name = "NODE", requires = "partition")]
        to: Option<u64>,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Move a shard (the entities that hash to it) to another partition: its data, calls and
    /// timers go with it, and no command is lost or run twice (made by the metadata leader).
    MoveShard {
        /// The shard (0 to the cluster's shard count - 1).
        #[arg(required_unless_present = "entity", conflicts_with = "entity")]
        shard: Option<u32>,
        /// Move the shard of this entity instead (`TYPE/KEY`).
        #[arg(long, value_name = "TYPE/KEY")]
        entity: Option<String>,
        /// The partition to move it to.
        #[arg(long, value_name = "P")]
        to: u64,
        #[command(flatten)]
        target: AdminTarget,
    },
}

/// The node an admin change goes to, its token and how the answer prints.
#[derive(clap::Args, Debug)]
pub(super) struct AdminTarget {
    #[command(flatten)]
    server: ServerArg,
    /// Admin token, when the node requires one.
    #[arg(long, env = "CELLA_ADMIN_TOKEN")]
    admin_token: Option<String>,
    #[command(flatten)]
    format: FormatArgs,
}

/// Runs `cella cluster ACTION`.
pub(super) async fn run(action: ClusterAction) -> anyhow::Result<()> {
    match action {
        ClusterAction::AddNode {
            id,
            addr,
            server,
            admin_token,
        } => admin::add_node(&server.server, id, &addr, admin_token.as_deref()).await,
        ClusterAction::RemoveNode {
            id,
            server,
            admin_token,
        } => admin::remove_node(&server.server, id, admin_token.as_deref()).await,
        ClusterAction::Certs { out, nodes } => certs::generate(&out, nodes),
        ClusterAction::Status { server, format } => {
            admin::cluster_status(&server.server, format.into()).await
        }
        ClusterAction::Rebalance {
            dry_run,
            partition,
            to,
            target,
        } => {
            placement::rebalance(
                &target.server.server,
                dry_run,
                partition.zip(to),
                target.admin_token.as_deref(),
                target.format.into(),
            )
            .await
        }
        ClusterAction::MoveShard {
            shard,
            entity,
            to,
            target,
        } => {
            let shard = match (shard, entity) {
                (Some(shard), _) => placement::ShardOf::Number(shard),
                (None, Some(entity)) => placement::ShardOf::Entity(entity),
                (None, None) => {
                    anyhow::bail!("name the shard, or an entity with --entity TYPE/KEY")
                }
            };
            placement::move_shard(
                &target.server.server,
                shard,
                to,
                target.admin_token.as_deref(),
                target.format.into(),
            )
            .await
        }
    }
}
