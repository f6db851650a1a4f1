//! `cella serve`: the node's options from its flags, the cluster settings (a cluster of one,
//! `--initial-cluster` to form a cluster, `--join` to join one), and the running node, with the
//! components of `--deploy` uploaded once it listens.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use hyper::Method;

use cella_cluster::auth::PeerAuth;
use cella_node::{
    Node, NodeOptions,
    edge::EdgeOptions,
    entities::EntityOptions,
    node::ClusterSettings,
    tls::{PeerTlsFiles, TlsFiles},
};

use super::telemetry::{Otlp, SERVE};
use crate::client::{self, encode_segment};

// No doc comment on the struct: clap would take it as the command's about, which the `Serve`
// variant's doc comment gives.
#[derive(clap::Args, Debug)]
pub(super) struct ServeArgs {
    /// Directory for the journal, snapshots and modules.
    #[arg(long, default_value = "./.cella")]
    data_dir: PathBuf,
    /// Address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Serve HTTPS on --listen with this certificate chain (PEM; the node's certificate first),
    /// HTTP/2 and HTTP/1.1 by ALPN. With --tls-key. A cluster node needs --peer-ca/--peer-cert/
    /// --peer-key instead (which serve clients too); both given must name the same files.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds a connection has for each request head and for its TLS handshake; a client
    /// that sends a partial head and stalls is closed then (also idle keep-alive connections).
    #[arg(long, value_name = "SECS", default_value_t = EdgeOptions::default().header_read_timeout.as_secs())]
    header_read_timeout_secs: u64,
    /// Connections served at once; more are closed at once.
    #[arg(long, value_name = "N", default_value_t = EdgeOptions::default().max_connections)]
    max_connections: usize,
    /// Largest request head (request line and headers) in bytes: larger ones get 431.
    #[arg(long, value_name = "BYTES", default_value_t = EdgeOptions::default().max_header_bytes)]
    max_header_bytes: usize,
    /// Most headers in a request: more get 431.
    #[arg(long, value_name = "N", default_value_t = EdgeOptions::default().max_headers)]
    max_headers: usize,
    /// Require `Authorization: Bearer TOKEN` for module upload, check, delete and rollback.
    #[arg(long, env = "CELLA_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// Scoped tokens (JSON: `{"tokens": [{"id", "token", "role": "admin"|"deploy"|"invoke",
    /// "types", "topics", "read_only"}]}`), reloaded when the file changes.
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Entity commands and reads and topic streams need a token with role `invoke` (or
    /// `admin`) on their type or topic.
    #[arg(long)]
    require_invoke_token: bool,
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
    /// Memory, in MiB, that guest instances kept warm between the commands of hot entities may
    /// hold together (their linear memory); 0 runs every command in a fresh instance.
    #[arg(long, value_name = "MIB", default_value_t = EntityOptions::default().warm_memory >> 20)]
    warm_memory_mb: usize,
    /// A warm instance unused for this many seconds is dropped.
    #[arg(long, value_name = "SECS", default_value_t = EntityOptions::default().warm_idle.as_secs())]
    warm_idle_secs: u64,
    /// Memory, in MiB, for the entities held in memory and the warm instances together: past
    /// it, the least recently used idle entities are passivated (dropped from memory; their next
    /// command loads them again). Warm instances get a quarter of it at most. Unset: only
    /// --cache-capacity bounds the entities in memory
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    max_memory: Option<u64>,
    /// Size, in MiB, of the store's page cache (redb's cache of database pages).
    #[arg(long, value_name = "MIB", default_value_t = 32,
        value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    store_cache_mb: u64,
    #[command(flatten)]
    scheduler: super::sched_args::SchedulerArgs,
    /// Snapshot event-sourced entities every this many events.
    #[arg(long, default_value_t = 100)]
    snapshot_every: u64,
    /// How long processed request ids (delivered calls, clients' Idempotency-Key) are
    /// remembered, in seconds: a retry within it is answered without running again.
    #[arg(long, value_name = "SECS", default_value_t = 86_400)]
    dedup_retention_secs: u64,
    /// Calls and timer firings carried out at once per partition.
    #[arg(long, value_name = "N", default_value_t = 64)]
    effects_in_flight: usize,
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
    #[command(flatten)]
    rebalance: super::rebalance_args::RebalanceArgs,
    /// Messages kept per topic; older ones are removed (checked every 64 messages).
    #[arg(long, value_name = "N", default_value_t = EntityOptions::default().topic_keep)]
    topic_retention_messages: u64,
    /// How long a topic keeps a message, in seconds (the newest is always kept).
    #[arg(long, value_name = "SECS", default_value_t = EntityOptions::default().topic_max_age.as_secs())]
    topic_retention_secs: u64,
    /// The cluster's shared secret (at least 16 bytes; every node the same): each request
    /// between nodes carries an HMAC-SHA256 proof of it, never the secret. Needed with
    /// --initial-cluster or --join; on a single node, lets other nodes join it later.
    #[arg(
        long,
        env = "CELLA_CLUSTER_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    cluster_secret: Option<String>,
    /// Run a cluster without peer authentication: anyone who reaches a node's address can
    /// send it raft messages. Only for a network where every host is trusted.
    #[arg(long, conflicts_with_all = ["cluster_secret", "peer_ca"])]
    insecure_peers: bool,
    /// Mutual TLS between peers: the CA (PEM) that signed every node's --peer-cert. The node
    /// serves TLS on --listen with --peer-cert, takes peer requests only on connections whose
    /// client certificate this CA signed, and connects to its peers over TLS trusting only it.
    /// With --peer-cert and --peer-key (`cella cluster certs` makes them all).
    #[arg(long, value_name = "FILE", requires_all = ["peer_cert", "peer_key"])]
    peer_ca: Option<PathBuf>,
    /// This node's certificate (PEM) for mutual TLS between peers, signed by --peer-ca.
    #[arg(long, value_name = "FILE", requires_all = ["peer_ca", "peer_key"])]
    peer_cert: Option<PathBuf>,
    /// The private key of --peer-cert (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["peer_ca", "peer_cert"])]
    peer_key: Option<PathBuf>,
    /// Export traces over OTLP/HTTP (protobuf) to this collector: its base URL
    /// (`http://HOST:4318`; `/v1/traces` is added) or its traces URL. A command's spans follow
    /// it across nodes and into the calls it makes; a request's `traceparent` joins its trace.
    #[arg(long, value_name = "URL", env = "CELLA_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

impl ServeArgs {
    /// Where this node exports its spans (`--otlp-endpoint`), if anywhere.
    pub(super) fn otlp(&self) -> Option<Otlp> {
        self.otlp_endpoint.as_ref().map(|endpoint| Otlp {
            endpoint: endpoint.clone(),
            node_id: self.node_id.unwrap_or(1),
            addr: self.listen.to_string(),
        })
    }
}

/// Runs a node until SIGINT or SIGTERM, then lets in-flight requests finish.
pub(super) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let ServeArgs {
        data_dir,
        listen,
        tls_cert,
        tls_key,
        header_read_timeout_secs,
        max_connections,
        max_header_bytes,
        max_headers,
        admin_token,
        tokens,
        require_invoke_token,
        deploy,
        deadline_ms,
        memory_limit_mb,
        cache_capacity,
        warm_memory_mb,
        warm_idle_secs,
        scheduler,
        max_memory,
        store_cache_mb,
        snapshot_every,
        dedup_retention_secs,
        effects_in_flight,
        node_id,
        initial_cluster,
        join,
        raft_snapshot_every,
        partitions,
        replicas,
        rebalance,
        topic_retention_messages,
        topic_retention_secs,
        cluster_secret,
        insecure_peers,
        peer_ca,
        peer_cert,
        peer_key,
        otlp_endpoint,
    } = args;
    let peer_tls = match (peer_ca, peer_cert, peer_key) {
        (Some(ca), Some(cert), Some(key)) => Some(PeerTlsFiles { ca, cert, key }),
        (None, None, None) => None,
        _ => bail!("--peer-ca, --peer-cert and --peer-key go together: give all three or none"),
    };
    // This process's https requests (--join's, --deploy's to this node) go to nodes whose
    // certificates the peer CA signed.
    if let Some(peer) = &peer_tls {
        client::trust_ca(Some(&peer.ca))?;
    }
    let scheme = if peer_tls.is_some() { "https" } else { "http" };
    let facts = Facts {
        security: security(
            tls_cert.is_some(),
            peer_tls.is_some(),
            cluster_secret.is_some(),
            insecure_peers,
        ),
        otlp: otlp_endpoint,
    };
    let peers = peer_auth(
        node_id.is_some(),
        cluster_secret.as_deref(),
        insecure_peers,
        listen,
        peer_tls.as_ref(),
    )?;
    let mut options = NodeOptions::new(data_dir, listen);
    options.edge = EdgeOptions {
        tls: tls_cert
            .zip(tls_key)
            .map(|(cert, key)| TlsFiles { cert, key }),
        header_read_timeout: Duration::from_secs(header_read_timeout_secs.max(1)),
        max_connections: max_connections.max(1),
        max_header_bytes,
        max_headers: max_headers.max(1),
        peer_tls,
    };
    match (&options.edge.tls, &options.edge.peer_tls) {
        // One listener serves clients and peers: one certificate.
        (Some(tls), Some(peer)) if tls.cert != peer.cert || tls.key != peer.key => bail!(
            "--tls-cert/--tls-key and --peer-cert/--peer-key name different files, but clients \
             and peers share --listen and its one certificate\nhint: drop --tls-cert and \
             --tls-key (--peer-cert serves clients too), or give both the same files"
        ),
        (Some(_), None) if node_id.is_some() || cluster_secret.is_some() => bail!(
            "--tls-cert serves clients over TLS on --listen, where the nodes of a cluster also \
             reach each other: a cluster node (--node-id, --cluster-secret) needs mutual TLS \
             between peers for that\nhint: give every node --peer-ca, --peer-cert and \
             --peer-key (`cella cluster certs`), which serve clients over TLS too"
        ),
        _ => {}
    }
    let mut single = ClusterSettings::single();
    single.partitions = partitions;
    single.raft_snapshot_every = raft_snapshot_every.max(1);
    single.peers = peers.clone();
    single.rebalance = rebalance.options();
    options.cluster = Some(single);
    if let Some(node_id) = node_id {
        let mut settings = ClusterSettings {
            node_id,
            initial: BTreeMap::from([(node_id, listen.to_string())]),
            join: false,
            partitions,
            replicas: replicas.max(1),
            raft_snapshot_every: raft_snapshot_every.max(1),
            peers,
            rebalance: rebalance.options(),
        };
        match (initial_cluster, join) {
            (Some(initial), _) => settings.initial = parse_initial_cluster(&initial)?,
            (None, Some(peer)) => {
                settings.join = true;
                (settings.partitions, settings.replicas) = cluster_placement(scheme, &peer).await?;
            }
            (None, None) => bail!(
                "--node-id needs --initial-cluster (to form a cluster) or --join (to join \
                 one)\nhint: cella serve --node-id 1 --listen 127.0.0.1:7001 \
                 --initial-cluster 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"
            ),
        }
        options.cluster = Some(settings);
    }
    options.admin_token = admin_token;
    options.tokens_file = tokens;
    options.require_invoke_token = require_invoke_token;
    options.host.deadline = Duration::from_millis(deadline_ms);
    options.host.memory_limit = memory_limit_mb << 20;
    // Compile components in a child process of this same program (`cella __compile`): the
    // compiler's garbage then leaves with the child instead of staying in this one's heap.
    options.compiler = std::env::current_exe().ok();
    options.entities.deadline = options.host.deadline;
    options.entities.cache_capacity = cache_capacity.max(1);
    options.entities.warm_memory = warm_memory_mb.saturating_mul(1 << 20);
    options.entities.warm_idle = Duration::from_secs(warm_idle_secs);
    options.entities.scheduler = scheduler.options();
    options.entities.max_memory = max_memory.map_or(0, |mb| (mb as usize) << 20);
    options.store.cache_bytes = (store_cache_mb as usize) << 20;
    options.entities.snapshot_every = snapshot_every.max(1);
    options.effects.retention = Duration::from_secs(dedup_retention_secs);
    options.effects.in_flight = effects_in_flight.max(1);
    options.entities.topic_keep = topic_retention_messages.max(1);
    options.entities.topic_max_age = Duration::from_secs(topic_retention_secs);
    serve(options, deploy, facts).await
}

/// What a node states when it starts, besides what the running node knows.
struct Facts {
    /// How clients and peers are served and authenticated.
    security: String,
    otlp: Option<String>,
}

/// The TLS and peer authentication mode, in words.
fn security(tls: bool, peer_tls: bool, secret: bool, insecure: bool) -> String {
    let clients = if tls || peer_tls {
        "HTTPS (TLS)"
    } else {
        "plain HTTP"
    };
    let peers = match (peer_tls, secret, insecure) {
        (true, true, _) => "mutual TLS (peer certificates) and the cluster secret",
        (true, false, _) => "mutual TLS (peer certificates)",
        (false, true, _) => "the cluster secret (HMAC)",
        (false, false, true) => "not authenticated (--insecure-peers)",
        (false, false, false) => "none accepted (no cluster secret or peer certificates)",
    };
    format!("clients: {clients}; peers: {peers}")
}

/// Logs one line per fact of the started node (target `cella::serve`, shown by default).
fn log_start(
    handle: &cella_node::NodeHandle,
    base: &str,
    data_dir: &std::path::Path,
    facts: &Facts,
) {
    let node = &handle.node;
    tracing::info!(target: SERVE, "listening on {base}");
    tracing::info!(target: SERVE, "data directory: {}", data_dir.display());
    if let Some(cluster) = &node.cluster {
        let members: Vec<String> = cluster
            .nodes()
            .into_iter()
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect();
        tracing::info!(
            target: SERVE,
            "node {} of a cluster of {} ({})",
            cluster.node_id(),
            members.len(),
            members.join(", ")
        );
        tracing::info!(
            target: SERVE,
            "partitions: {}, replicas: {}",
            cluster.placement().partitions,
            cluster.replicas()
        );
    }
    let modules: Vec<String> = node
        .registry
        .list()
        .unwrap_or_default()
        .into_iter()
        .map(|m| match node.registry.load_error(&m.entity_type) {
            Some(_) => format!(
                "{} v{} (not loaded: see the error above)",
                m.entity_type, m.active
            ),
            None => format!("{} v{}", m.entity_type, m.active),
        })
        .collect();
    if modules.is_empty() {
        tracing::info!(target: SERVE, "modules: none deployed yet");
    } else {
        tracing::info!(target: SERVE, "modules: {}", modules.join(", "));
    }
    tracing::info!(target: SERVE, "security: {}", facts.security);
    match &facts.otlp {
        Some(endpoint) => tracing::info!(target: SERVE, "traces: exported over OTLP to {endpoint}"),
        None => tracing::info!(target: SERVE, "traces: off (--otlp-endpoint URL to export them)"),
    }
    tracing::info!(target: SERVE, "console: {base}/");
}

/// How this node authenticates its peers: with the secret, peer certificates or both;
/// insecure with `--insecure-peers`; a single node (no cluster flags) without a secret or
/// certificates accepts no peer; a cluster node without any refuses to start.
fn peer_auth(
    clustered: bool,
    secret: Option<&str>,
    insecure: bool,
    listen: SocketAddr,
    peer_tls: Option<&PeerTlsFiles>,
) -> anyhow::Result<Arc<PeerAuth>> {
    let client_tls = peer_tls
        .map(cella_node::tls::peer_client_config)
        .transpose()?;
    Ok(Arc::new(match (secret, insecure, client_tls) {
        (Some(secret), _, Some(tls)) => PeerAuth::secret(secret)
            .context("--cluster-secret")?
            .and_certificates(tls),
        (None, _, Some(tls)) => PeerAuth::certificates(tls),
        (Some(secret), _, None) => PeerAuth::secret(secret).context("--cluster-secret")?,
        (None, true, None) => {
            tracing::warn!(
                target: SERVE,
                "--insecure-peers: requests between nodes are not authenticated; anyone who \
                 reaches {listen} can send this node raft messages"
            );
            PeerAuth::insecure()
        }
        (None, false, None) if clustered => bail!(
            "a cluster node needs a --cluster-secret (or CELLA_CLUSTER_SECRET) or peer \
             certificates (--peer-ca, --peer-cert, --peer-key) so that only its peers can send \
             it raft messages\nhint: generate a secret with `openssl rand -hex 32` and give \
             every node the same, or certificates with `cella cluster certs` (or pass \
             --insecure-peers on a trusted network)"
        ),
        (None, false, None) => PeerAuth::closed(),
    }))
}

/// Parses `1=127.0.0.1:7001,2=127.0.0.1:7002`.
fn parse_initial_cluster(text: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut members = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((id, addr)) = part.split_once('=') else {
            bail!(
                "--initial-cluster: `{part}` is not ID=HOST:PORT\nhint: e.g. \
                 --initial-cluster 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"
            );
        };
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("--initial-cluster: `{id}` is not a node id (a number)"))?;
        let addr = addr.trim();
        addr.parse::<SocketAddr>().with_context(|| {
            format!("--initial-cluster: `{addr}` (node {id}) is not HOST:PORT with an IP address")
        })?;
        if members.insert(id, addr.to_string()).is_some() {
            bail!("--initial-cluster: node {id} is listed twice");
        }
    }
    if members.is_empty() {
        bail!("--initial-cluster lists no node");
    }
    Ok(members)
}

/// The partitions and replicas of the cluster `peer` (HOST:PORT) belongs to.
async fn cluster_placement(scheme: &str, peer: &str) -> anyhow::Result<(u32, usize)> {
    let url = format!("{scheme}://{peer}");
    let reply = client::send(&url, Method::GET, "/v1/cluster", Vec::new(), None).await?;
    if reply.status != 200 {
        bail!(
            "--join {peer}: the node answered {} to GET /v1/cluster: {}\nhint: --join takes the \
             HOST:PORT of a member of the cluster",
            reply.status,
            reply.body.trim()
        );
    }
    let status: serde_json::Value = serde_json::from_str(&reply.body)
        .with_context(|| format!("--join {peer}: the cluster status is not JSON"))?;
    match (status["partitions"].as_u64(), status["replicas"].as_u64()) {
        (Some(p), Some(r)) => Ok((u32::try_from(p)?, usize::try_from(r)?)),
        _ => bail!("--join {peer}: the cluster status names no partitions or replicas"),
    }
}

/// Starts the node, deploys the `--deploy` components through its own API and serves until a
/// signal.
async fn serve(options: NodeOptions, deploy: Vec<String>, facts: Facts) -> anyhow::Result<()> {
    let data_dir = options.data_dir.clone();
    let token = options.admin_token.clone();
    let scheme = if options.edge.tls.is_some() || options.edge.peer_tls.is_some() {
        "https"
    } else {
        "http"
    };
    // Before the address is printed: whoever starts the node may stop it as soon as it answers.
    let stop = cella_node::node::shutdown_signal();
    let handle = Node::start(options).await?;
    // With TLS, --deploy checks the node's certificate like any client: against the system's
    // roots and --ca.
    let base = format!("{scheme}://{}", handle.addr);
    println!("cella listening on {base} (data in {})", data_dir.display());
    log_start(&handle, &base, &data_dir, &facts);
    for spec in deploy {
        let Some((ty, file)) = spec.split_once('=') else {
            bail!("--deploy `{spec}` must be TYPE=FILE");
        };
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
        // Through the node's own API, so that in a cluster the change goes to the metadata
        // group's leader (and waits for one) like any upload.
        let path = format!("/v1/modules/{}", encode_segment(ty));
        let reply = client::send(&base, Method::PUT, &path, bytes, token.as_deref()).await?;
        if reply.status != 200 && reply.status != 201 {
            bail!(
                "deploying {file} as `{ty}` failed ({}): {}",
                reply.status,
                reply.body.trim()
            );
        }
        let meta: serde_json::Value = serde_json::from_str(&reply.body)
            .with_context(|| format!("deploying {file} as `{ty}`: the answer is not JSON"))?;
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
    stop.await;
    tracing::info!(target: SERVE, "shutting down: finishing in-flight requests");
    handle.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster() {
        let members = parse_initial_cluster("1=127.0.0.1:7001, 2=127.0.0.1:7002,").unwrap();
        assert_eq!(
            members,
            BTreeMap::from([
                (1, "127.0.0.1:7001".to_string()),
                (2, "127.0.0.1:7002".to_string())
            ])
        );
        let error = |text| format!("{:#}", parse_initial_cluster(text).unwrap_err());
        assert!(error("1").contains("is not ID=HOST:PORT"));
        // The cause stays in the chain.
        assert!(error("x=127.0.0.1:1").contains("not a node id (a number): invalid digit"));
        assert!(error("1=localhost:1").contains("with an IP address: invalid socket address"));
        assert!(error("1=127.0.0.1:1,1=127.0.0.1:2").contains("listed twice"));
        assert!(error("").contains("lists no node"));
    }
}
