//! One Cella node: opens the store, the wasm host and the module registry, wires the entity
//! layer, and serves HTTP until shut down. `Node::start(options)` returns a [`NodeHandle`]
//! whose `shutdown` drains in-flight requests before the store closes.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use cella_cluster::{Cluster, ClusterJournal, ClusterOptions, Placement};
use cella_core::Journal;

use cella_host::{Host, HostConfig};
use cella_store::{Store, StoreOptions};
use hyper::Request;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::{
    auth::{Action, Caller, Tokens},
    edge::{Edge, EdgeOptions},
    effects::EffectOptions,
    entities::{Entities, EntityOptions},
    error::{Error, Result},
    metrics::Metrics,
    registry::Registry,
};

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// When set, module upload and delete need `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// A token file (`--tokens`, see [`crate::auth`]), reloaded when it changes.
    pub tokens_file: Option<PathBuf>,
    /// Entity commands and reads, topic publications and streams need an `invoke` token.
    pub require_invoke_token: bool,
    /// Largest accepted command payload.
    pub max_payload: usize,
    /// Largest accepted component upload.
    pub max_module: usize,
    /// TLS and the limits of the HTTP edge (connections, request heads).
    pub edge: EdgeOptions,
    pub host: HostConfig,
    /// The executable that compiles components in a child process (`EXE __compile`, see
    /// [`crate::compiler`]); `cella serve` passes itself. `None` compiles in this process.
    pub compiler: Option<PathBuf>,
    pub entities: EntityOptions,
    pub effects: EffectOptions,
    /// Replication of crdt entities (gossip, anti-entropy, quorums).
    pub crdt: crate::crdt::CrdtOptions,
    pub store: StoreOptions,
    /// The node's part in a cluster (a single node is a cluster of one: the same replicated
    /// path with one voter). `None` journals straight to the store, without raft; only for
    /// embedding the entity layer in tests.
    pub cluster: Option<ClusterSettings>,
}

/// How a node joins a cluster.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub node_id: u64,
    /// The initial members, id → `host:port` (this node included: its entry is the address
    /// the other nodes reach it at). Empty: this node alone, at its listen address.
    pub initial: BTreeMap<u64, String>,
    /// Raft groups the entity space is split into.
    pub partitions: u32,
    /// Replicas per partition.
    pub replicas: usize,
    /// Joining an existing cluster: wait to be added instead of initializing.
    pub join: bool,
    /// Raft log entries between partition snapshots.
    pub raft_snapshot_every: u64,
    /// How peer requests are signed and checked (`cella_cluster::auth`): a cluster secret,
    /// insecure, or closed (a single node that accepts no peers).
    pub peers: Arc<cella_cluster::auth::PeerAuth>,
    /// How partition leadership follows load.
    pub rebalance: cella_cluster::rebalance::RebalanceOptions,
}

impl ClusterSettings {
    /// A cluster of this node alone (node 1): what `cella serve` runs without cluster flags.
    /// Nodes can join it later (`cella cluster add-node`).
    pub fn single() -> ClusterSettings {
        ClusterSettings {
            node_id: 1,
            initial: BTreeMap::new(),
            partitions: cella_cluster::Placement::default().partitions,
            replicas: 3,
            join: false,
            raft_snapshot_every: cella_cluster::cluster::DEFAULT_SNAPSHOT_EVERY,
            peers: Arc::new(cella_cluster::auth::PeerAuth::closed()),
            rebalance: cella_cluster::rebalance::RebalanceOptions::default(),
        }
    }
}

impl NodeOptions {
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        let host = HostConfig::default();
        let entities = EntityOptions {
            deadline: host.deadline,
            ..EntityOptions::default()
        };
        Self {
            data_dir,
            listen,
            admin_token: None,
            tokens_file: None,
            require_invoke_token: false,
            max_payload: 1 << 20,
            max_module: 128 << 20,
            edge: EdgeOptions::default(),
            host,
            compiler: None,
            entities,
            effects: EffectOptions::default(),
            crdt: crate::crdt::CrdtOptions::default(),
            store: StoreOptions::default(),
            cluster: Some(ClusterSettings::single()),
        }
    }
}

/// The wired parts of a running node, shared by every request.
pub struct Node {
    pub options: NodeOptions,
    pub store: Store,
    pub host: Host,
    pub registry: Arc<Registry>,
    pub entities: Entities,
    /// This node's replicas of crdt entities.
    pub crdts: Arc<crate::crdt::Crdts>,
    pub metrics: Arc<Metrics>,
    /// This node's raft groups, in a cluster.
    pub cluster: Option<Arc<Cluster>>,
    /// The connections and forwarding exchanges being served, which shutdown waits for.
    pub connections: Tracker,
    /// Who may do what ([`crate::auth`]).
    pub tokens: Tokens,
}

/// Counts what a node serves (connections, upgraded exchanges), so that shutdown can wait
/// until all of it has ended.
#[derive(Clone)]
pub struct Tracker(Arc<watch::Sender<usize>>);

/// One thing being served; dropping it says it ended.
pub struct Tracked(Tracker);

impl Tracker {
    fn new() -> Tracker {
        Tracker(Arc::new(watch::Sender::new(0)))
    }

    /// Counts one more until the returned guard is dropped.
    pub fn track(&self) -> Tracked {
        self.0.send_modify(|n| *n += 1);
        Tracked(self.clone())
    }

    /// Resolves once nothing is tracked.
    async fn idle(&self) {
        let mut count = self.0.subscribe();
        let _ = count.wait_for(|n| *n == 0).await;
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Node {
    /// Opens storage, starts the node's raft groups and loads deployed modules; `addr` is the
    /// address the node listens on.
    pub async fn open(options: NodeOptions, addr: SocketAddr) -> Result<Arc<Node>> {
        let tokens = Tokens::new(
            options.admin_token.as_deref(),
            options.tokens_file.as_deref(),
            options.require_invoke_token,
        )?;
        let store = Store::open(&options.data_dir, options.store.clone())?;
        let host = Host::new(options.host.clone()).map_err(|e| Error::Start {
            what: "cannot start the WebAssembly engine".into(),
            source: Box::new(e),
        })?;
        let cluster = match &options.cluster {
            Some(settings) => Some(start_cluster(&store, settings, addr).await?),
            None => None,
        };
        let loader = crate::compiler::Loader::new(
            host.clone(),
            options.compiler.clone(),
            Some(options.data_dir.join("artifacts")),
        );
        let registry = Registry::open(loader, store.clone(), cluster.clone()).await?;
        if let Some(mut events) = cluster.as_ref().and_then(|c| c.take_module_events()) {
            // Module changes replicated from the metadata group's leader: load them here.
            let registry = Arc::downgrade(&registry);
            tokio::spawn(async move {
                while let Some(entity_type) = events.recv().await {
                    let Some(registry) = registry.upgrade() else {
                        break;
                    };
                    if let Err(e) = registry.refresh(&entity_type).await {
                        // A version that does not load was logged as it was recorded; any
                        // other failure (reading the store, say) is logged here.
                        let message = e.to_string();
                        let recorded = registry
                            .load_error(&entity_type)
                            .is_some_and(|(_, recorded)| recorded == message);
                        if !recorded {
                            tracing::warn!("loading the replicated module `{entity_type}`: {e}");
                        }
                    }
                }
            });
        }
        let metrics = Arc::new(Metrics::default());
        let crdts = Arc::new(crate::crdt::Crdts::open(
            store.clone(),
            cluster.clone(),
            registry.clone(),
            crate::entities::now_ms(),
            options.crdt.clone(),
        )?);
        let journal: Arc<dyn Journal> = match &cluster {
            Some(cluster) => Arc::new(ClusterJournal::new(cluster.clone(), store.clone())),
            None => Arc::new(store.clone()),
        };
        let mut entity_options = options.entities.clone();
        // Warm instances hold pool slots: never all of them. The slots left over are for the
        // fresh instances of commands, activations and reads, which are alive only while they
        // compute (an eighth of the pool, at least 64; past that they wait for a slot).
        let pool = options.host.max_instances as usize;
        entity_options.warm_recycle_bytes = options.host.memory_limit / 2;
        entity_options.warm_max_count = entity_options
            .warm_max_count
            .min(pool.saturating_sub((pool / 8).max(64)));
        let mut entities =
            Entities::new(journal, registry.clone(), metrics.clone(), entity_options);
        if let Some(cluster) = &cluster {
            entities = entities.with_forwarder(crate::routing::forwarder(cluster));
            let routed = cluster.clone();
            entities = entities.with_partitions(
                Arc::new(move |id| routed.partition_of(id)),
                cluster.placement().groups().collect(),
            );
        }
        let (notices_tx, notices) = tokio::sync::mpsc::unbounded_channel();
        entities = entities.with_notices(notices_tx).with_crdts(crdts.clone());
        let effects = options.effects.clone();
        let node = Arc::new(Node {
            options,
            store,
            host,
            registry,
            entities,
            crdts,
            metrics,
            cluster,
            connections: Tracker::new(),
            tokens,
        });
        crate::effects::start(&node, notices, effects);
        crate::crdt::start(&node.crdts);
        crate::auth::watch(&node);
        sweep_warm(&node);
        Ok(node)
    }

    /// Checks the request's token for `action` ([`Tokens::authorize`]): who it is, or 401/403.
    pub fn authorize<B>(&self, req: &Request<B>, action: Action<'_>) -> Result<Caller> {
        self.tokens.authorize(req.headers(), action)
    }

    /// Prometheus text for `/metrics`.
    pub fn render_metrics(&self) -> String {
        let rendered = self.metrics.render(
            &self.store.stats(),
            &self.host.stats(),
            crate::metrics::Resident {
                entities: self.entities.cached(),
                warm: self.entities.warm_instances(),
            },
            self.registry.len(),
        );
        let rendered = crate::memory_metrics::with_resident_memory(
            rendered,
            self.entities.resident_bytes(),
            self.entities.resident_budget(),
        );
        crate::crdt::with_crdts(rendered, &self.crdts)
    }

    /// Starts a node and serves HTTP on `options.listen`.
    pub async fn start(options: NodeOptions) -> Result<NodeHandle> {
        let edge = Edge::new(&options.edge).map_err(|e| Error::Start {
            what: "cannot serve TLS".into(),
            source: Box::new(e),
        })?;
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|e| Error::Start {
                what: format!("cannot listen on {}", options.listen),
                source: Box::new(e),
            })?;
        let addr = listener.local_addr().map_err(|e| Error::Start {
            what: "cannot read the listen address".into(),
            source: Box::new(e),
        })?;
        let node = Node::open(options, addr).await?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, node.clone(), edge, stop_rx));
        Ok(NodeHandle {
            addr,
            node,
            stop: stop_tx,
            task,
        })
    }
}

/// Starts this node's raft groups.
async fn start_cluster(
    store: &Store,
    settings: &ClusterSettings,
    listen: SocketAddr,
) -> Result<Arc<Cluster>> {
    let mut settings = settings.clone();
    if settings.initial.is_empty() {
        settings
            .initial
            .insert(settings.node_id, listen.to_string());
    }
    let addr = settings
        .initial
        .get(&settings.node_id)
        .cloned()
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "node {} is not in the initial cluster ({})",
                settings.node_id,
                settings
                    .initial
                    .keys()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let mut options = ClusterOptions::single(settings.node_id, addr);
    options.initial = settings.initial.clone();
    options.replicas = settings.replicas;
    options.join = settings.join;
    options.snapshot_every = settings.raft_snapshot_every;
    options.peers = settings.peers.clone();
    options.rebalance = settings.rebalance.clone();
    options.placement = Placement {
        partitions: settings.partitions.max(1),
        ..Placement::default()
    };
    Cluster::start(store.clone(), options)
        .await
        .map_err(|e| match e {
            cella_cluster::Error::Config(m) => Error::BadRequest(m),
            other => Error::Start {
                what: "cannot start the cluster".into(),
                source: Box::new(other),
            },
        })
}

/// A running node.
pub struct NodeHandle {
    pub addr: SocketAddr,
    pub node: Arc<Node>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl NodeHandle {
    /// Stops accepting connections, lets in-flight requests finish (bounded), then returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    edge: Edge,
    mut stop: watch::Receiver<bool>,
) {
    let edge = Arc::new(edge);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                // Over --max-connections: closed at once (dropped).
                let Some(admitted) = edge.admit(&node) else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                edge.spawn(stream, peer, node.clone(), stop.clone(), admitted);
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    if let Some(cluster) = &node.cluster {
        cluster.stop_streams();
    }
    if tokio::time::timeout(Duration::from_secs(10), node.connections.idle())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within 10 s of shutdown");
    }
}

/// A future that resolves on Ctrl-C or (on Unix) SIGTERM, with both handlers installed now: a
/// signal that arrives before the future is first awaited (a node still logging its start) is
/// kept for it instead of killing the process with the default action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, interrupt) {
                (Some(mut term), Some(mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Drops warm guest instances idle past their time every 5 s, until the node is gone.
fn sweep_warm(node: &Arc<Node>) {
    let node = Arc::downgrade(node);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(node) = node.upgrade() else { break };
            // Dropping a thousand instances resets a thousand pool slots (tens of ms): off the
            // runtime's workers, so no request waits behind it.
            let _ = tokio::task::spawn_blocking(move || node.entities.sweep_warm()).await;
        }
    });
}
