//! One node's part of the cluster: a raft group per partition (and group 0 for cluster
//! metadata), all on the node's one store, with their submission queues, the layout of replicas
//! and preferred leaders, status, and the leader balancer.
//!
//! *Layout.* With the voters sorted by id, partition `p` is replicated on `replicas` consecutive
//! nodes starting at index `(p - 1) % n`, and prefers the first of them as leader, so replicas
//! and leaders are spread evenly. Group 0 (metadata) is replicated on every node. The lowest
//! id among a group's initial replicas initializes it; the others wait to be contacted. The balancer hands a partition's leadership to its preferred node once that node
//! has caught up, so leaders spread again when a node joins or comes back (see
//! [`crate::membership`] for joining, leaving and moving replicas).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use cella_core::{AppendFuture, EntityId, Write};
use cella_store::Store;
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::{
    BasicNode, Config, Raft, ReadPolicy, ServerState, SnapshotPolicy, alias::CommittedLeaderIdOf,
};

use crate::{
    Error, GroupId, LogStore, Placement, StateMachine, TypeConfig,
    network::{GroupNetwork, PeerClient},
    submit::Submitter,
};

type C = TypeConfig;

/// The metadata group.
pub const META_GROUP: GroupId = 0;

/// How a node takes part in the cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub node_id: u64,
    /// The address other nodes reach this node at (`host:port`).
    pub addr: String,
    /// The initial members (id → address), this node included.
    pub initial: BTreeMap<u64, String>,
    pub placement: Placement,
    /// Replicas per partition.
    pub replicas: usize,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: (u64, u64),
    /// A partition builds a snapshot (and purges its log up to it) every this many entries.
    pub snapshot_every: u64,
    /// Joining an existing cluster: never initialize; wait to be added (`add_node`).
    pub join: bool,
}

impl ClusterOptions {
    /// A cluster of this node alone.
    pub fn single(node_id: u64, addr: String) -> ClusterOptions {
        ClusterOptions {
            node_id,
            initial: BTreeMap::from([(node_id, addr.clone())]),
            addr,
            placement: Placement::default(),
            replicas: 3,
            heartbeat_ms: 100,
            election_timeout_ms: (400, 800),
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            join: false,
        }
    }
}

/// Entries between partition snapshots, by default.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 20_000;

/// Where a node's store records the placement it was created with.
const PLACEMENT_GROUP: GroupId = u64::MAX;

/// Records the placement on first start; refuses a different one later (entities would be
/// looked up in the wrong partitions).
async fn check_placement(store: &Store, placement: Placement) -> Result<(), Error> {
    match store.group_state(PLACEMENT_GROUP, "placement")? {
        Some(bytes) => {
            let stored: Placement = crate::types::decode("the placement", &bytes)?;
            if stored != placement {
                return Err(Error::Config(format!(
                    "this data directory belongs to a cluster of {} partitions over {} shards, not \
                     {} over {}; start with --partitions {}",
                    stored.partitions,
                    stored.shards,
                    placement.partitions,
                    placement.shards,
                    stored.partitions
                )));
            }
            Ok(())
        }
        None => store
            .write_group(vec![cella_store::GroupWrite::State {
                group: PLACEMENT_GROUP,
                name: "placement".into(),
                value: Some(crate::types::encode("the placement", &placement)?),
            }])
            .await
            .map_err(|e| Error::Config(format!("cannot record the placement: {e}"))),
    }
}

/// The voters of `group` given all `nodes` (sorted ids), and its preferred leader first.
pub fn layout(group: GroupId, nodes: &[u64], replicas: usize) -> Vec<u64> {
    if group == META_GROUP || nodes.is_empty() {
        return nodes.to_vec();
    }
    let n = nodes.len();
    let start = ((group - 1) % n as u64) as usize;
    (0..replicas.min(n))
        .map(|i| nodes[(start + i) % n])
        .collect()
}

/// One raft group on this node.
pub struct Group {
    pub id: GroupId,
    pub raft: Raft<C, StateMachine>,
    pub state_machine: StateMachine,
    submitter: Submitter,
}

/// This node's groups.
pub struct Cluster {
    /// Applied module changes, by entity type (taken once by the node's registry).
    module_events: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>,
    pub(crate) options: ClusterOptions,
    pub(crate) placement: Placement,
    pub(crate) client: PeerClient,
    pub(crate) groups: BTreeMap<GroupId, Group>,
    /// Partitions whose membership change is under way (see [`crate::membership`]).
    pub(crate) reconciling: Arc<std::sync::Mutex<BTreeSet<GroupId>>>,
    /// Turns true when the node stops: the append streams it answers end.
    stopping: tokio::sync::watch::Sender<bool>,
}

/// One group as seen from this node, for `GET /v1/cluster`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    pub group: GroupId,
    pub state: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub last_log_index: u64,
    pub committed: u64,
    pub applied: u64,
    pub snapshot: u64,
    /// Snapshots this node installed from a leader since it started.
    pub snapshots_installed: u64,
}

/// The heartbeat suppression window: the heartbeat interval, or less if the election timeout
/// leaves less room (a suppressed heartbeat goes at most this window, an interval and one
/// tick late, which must stay under the least election timeout); `None` if it leaves none.
fn heartbeat_min_interval(options: &ClusterOptions) -> Option<u64> {
    let tick = (options.heartbeat_ms * 13 / 64).max(1);
    let room = options
        .election_timeout_ms
        .0
        .saturating_sub(options.heartbeat_ms + tick + 1);
    Some(room.min(options.heartbeat_ms)).filter(|w| *w > 0)
}

impl Cluster {
    /// Opens every group on `store` and starts them; initializes the groups of which this node
    /// is the lowest initial replica and that are not initialized yet.
    pub async fn start(store: Store, options: ClusterOptions) -> Result<Arc<Cluster>, Error> {
        let placement = options.placement;
        check_placement(&store, placement).await?;
        let client = PeerClient::new();
        let every = options.snapshot_every.max(1);
        let config = Config {
            cluster_name: "cella".into(),
            heartbeat_interval: options.heartbeat_ms,
            // No heartbeat to a follower that acknowledged an append this recently: under
            // sustained writes, replication already proves liveness and extends the lease.
            heartbeat_min_interval: heartbeat_min_interval(&options),
            election_timeout_min: options.election_timeout_ms.0,
            election_timeout_max: options.election_timeout_ms.1,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(every),
            // Keep a tail so that a briefly lagging replica catches up from the log.
            max_in_snapshot_log_to_keep: (every / 10).min(1_000),
            // An entry carries at most about `MAX_BATCH_BYTES` of appends (one large append
            // more): this many stay well under the peer transport's body limit.
            max_payload_entries: 64,
            ..Default::default()
        };
        // The metadata group keeps its whole log (its snapshot would not carry the modules):
        // a new node replays it.
        // Its entries may each carry a whole module: one per message.
        let meta_config = Config {
            snapshot_policy: SnapshotPolicy::Never,
            max_payload_entries: 1,
            ..config.clone()
        };
        let validate = |c: Config| c.validate().map_err(|e| Error::Config(e.to_string()));
        let (config, meta_config) = (
            Arc::new(validate(config)?),
            Arc::new(validate(meta_config)?),
        );
        let mut groups = BTreeMap::new();
        let (module_tx, module_rx) = tokio::sync::mpsc::unbounded_channel();
        for group in std::iter::once(META_GROUP).chain(placement.groups()) {
            let select: crate::state_machine::Selector = if group == META_GROUP {
                Arc::new(|_| false)
            } else {
                Arc::new(move |id: &EntityId| placement.partition(id) == group)
            };
            let log = LogStore::open(store.clone(), group)?;
            let mut state_machine = StateMachine::open(store.clone(), group, select)?;
            if group == META_GROUP {
                state_machine = state_machine.with_module_events(module_tx.clone());
            }
            let network = GroupNetwork {
                group,
                client: client.clone(),
            };
            let raft = Raft::new(
                options.node_id,
                if group == META_GROUP {
                    meta_config.clone()
                } else {
                    config.clone()
                },
                network,
                log,
                state_machine.clone(),
            )
            .await
            .map_err(|e| Error::Raft(format!("starting group {group}: {e}")))?;
            let submitter = Submitter::start(raft.clone());
            groups.insert(
                group,
                Group {
                    id: group,
                    raft,
                    state_machine,
                    submitter,
                },
            );
        }
        let cluster = Arc::new(Cluster {
            module_events: std::sync::Mutex::new(Some(module_rx)),
            reconciling: Arc::default(),
            stopping: tokio::sync::watch::Sender::new(false),
            options,
            placement,
            client,
            groups,
        });
        cluster.initialize().await?;
        cluster.settle_alone().await?;
        let balancer = Arc::downgrade(&cluster);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1000));
            loop {
                tick.tick().await;
                let Some(cluster) = balancer.upgrade() else {
                    break;
                };
                cluster.balance().await;
            }
        });
        Ok(cluster)
    }

    async fn initialize(&self) -> Result<(), Error> {
        if self.options.initial.is_empty() {
            return Err(Error::Config("the initial cluster is empty".into()));
        }
        if self.options.join {
            return Ok(());
        }
        let nodes: Vec<u64> = self.options.initial.keys().copied().collect();
        for group in self.groups.values() {
            // The lowest id among a group's initial replicas initializes it.
            let replicas = layout(group.id, &nodes, self.options.replicas);
            if replicas.iter().min() != Some(&self.options.node_id) {
                continue;
            }
            let initialized = group
                .raft
                .is_initialized()
                .await
                .map_err(|e| Error::Raft(e.to_string()))?;
            if initialized {
                continue;
            }
            let members: BTreeMap<u64, BasicNode> = replicas
                .into_iter()
                .map(|id| (id, BasicNode::new(self.options.initial[&id].clone())))
                .collect();
            group
                .raft
                .initialize(members)
                .await
                .map_err(|e| Error::Raft(format!("initializing group {}: {e}", group.id)))?;
        }
        Ok(())
    }

    /// A node alone in its cluster (the single-node default) elects itself in every group at
    /// once instead of after an election timeout, waits until it leads them all (so that the
    /// first requests find leaders), and records its current address if it moved (a restart
    /// on another port), for nodes that join later.
    async fn settle_alone(&self) -> Result<(), Error> {
        if self.options.join {
            return Ok(());
        }
        let me = self.options.node_id;
        for group in self.groups.values() {
            let initialized = group
                .raft
                .is_initialized()
                .await
                .map_err(|e| Error::Raft(e.to_string()))?;
            if !initialized {
                continue;
            }
            // Metrics follow initialization asynchronously: wait until they show the members.
            let metrics = group
                .raft
                .wait(Some(Duration::from_secs(10)))
                .metrics(
                    |m| {
                        m.membership_config
                            .membership()
                            .voter_ids()
                            .next()
                            .is_some()
                    },
                    "the group's membership is known",
                )
                .await
                .map_err(|e| Error::Raft(format!("group {}: {e}", group.id)))?;
            let membership = metrics.membership_config.membership();
            if membership.voter_ids().collect::<Vec<_>>() != [me] {
                continue;
            }
            let recorded = membership.get_node(&me).map(|n| n.addr.clone());
            if metrics.state != ServerState::Leader {
                let _ = group.raft.trigger().elect(false).await;
            }
            group
                .raft
                .wait(Some(Duration::from_secs(10)))
                .state(ServerState::Leader, "a node alone leads its groups")
                .await
                .map_err(|e| Error::Raft(format!("group {} elected no leader: {e}", group.id)))?;
            if recorded.as_deref() != Some(self.options.addr.as_str()) {
                let node = BTreeMap::from([(me, BasicNode::new(&self.options.addr))]);
                group
                    .raft
                    .change_membership(openraft::ChangeMembers::SetNodes(node), false)
                    .await
                    .map_err(|e| Error::Raft(format!("recording this node's address: {e}")))?;
            }
        }
        Ok(())
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.options.node_id
    }

    /// The pooled client to the other nodes.
    pub fn client(&self) -> &PeerClient {
        &self.client
    }

    /// Replicas per partition.
    pub fn replicas(&self) -> usize {
        self.options.replicas
    }

    /// How entities map to partitions.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// The group of `group_id`.
    pub fn group(&self, group: GroupId) -> Option<&Group> {
        self.groups.get(&group)
    }

    /// The partition owning `id`.
    pub fn group_of(&self, id: &EntityId) -> &Group {
        let group = self.placement.partition(id);
        // Every partition of the placement has a group (created in `start`).
        &self.groups[&group]
    }

    /// The leader id under which this node leads `group`, if it does.
    pub fn leadership(&self, group: &Group) -> Option<CommittedLeaderIdOf<C>> {
        group
            .raft
            .as_leader()
            .ok()
            .map(|l| l.to_committed_leader_id())
    }

    /// The current leader of `group` as this node knows it: its id and address. A node that is
    /// not among the group's replicas by the current layout (it was moved off the group, and
    /// stopped hearing from it) trusts a known leader only if that one is among them too (it
    /// may have been moved off and stopped as well), and else names the group's preferred
    /// replica, which knows.
    pub fn leader(&self, group: &Group) -> Option<(u64, String)> {
        let known = {
            // Borrowed, not cloned: this runs for every request forwarded to another node.
            let watch = group.raft.metrics();
            let metrics = watch.borrow_watched();
            metrics.current_leader.and_then(|leader| {
                let node = metrics.membership_config.membership().get_node(&leader)?;
                Some((leader, node.addr.clone()))
            })
        };
        let members = self.members();
        let replicas = layout(group.id, &members, self.options.replicas);
        if replicas.contains(&self.options.node_id) || members.is_empty() {
            return known;
        }
        if let Some((id, _)) = &known
            && replicas.contains(id)
        {
            return known;
        }
        let preferred = *replicas.first()?;
        let addr = self.nodes().remove(&preferred)?;
        Some((preferred, addr))
    }

    /// Waits until this node, as leader of `group`, has applied everything committed before it
    /// confirmed its leadership: reads of its state machine are then linearizable.
    pub async fn ready(&self, group: &Group) -> Result<(), String> {
        group
            .raft
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Resolves once this node is sure it still leads `group` under `leader`: at once while its
    /// leader lease holds (a quorum acknowledged it within the last election timeout, so no
    /// other leader can exist), else after a round of heartbeats (ReadIndex). It does not wait
    /// for the state machine: the caller reads state it cached under that leadership.
    pub async fn confirm(
        &self,
        group: &Group,
        leader: CommittedLeaderIdOf<C>,
    ) -> Result<(), String> {
        if group
            .raft
            .get_read_linearizer(ReadPolicy::LeaseRead)
            .await
            .is_err()
        {
            group
                .raft
                .get_read_linearizer(ReadPolicy::ReadIndex)
                .await
                .map(drop)
                .map_err(|e| e.to_string())?;
        }
        // Confirmed as leader just now; still under the same leadership as the caller's state?
        if self.leadership(group) == Some(leader) {
            Ok(())
        } else {
            Err("this node no longer leads the entity's partition".into())
        }
    }

    /// The receiver of applied module changes (entity types); `None` after the first call.
    pub fn take_module_events(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        self.module_events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Ok when this node leads the metadata group, else the leader's address (if known).
    pub fn meta_leadership(&self) -> Result<(), Option<String>> {
        let meta = &self.groups[&META_GROUP];
        if self.leadership(meta).is_some() {
            return Ok(());
        }
        Err(self
            .leader(meta)
            .filter(|(id, _)| *id != self.options.node_id)
            .map(|(_, addr)| addr))
    }

    /// Replicates a module change to every node; resolves once it is applied here.
    pub async fn propose_module(&self, op: crate::types::ModuleOp) -> Result<(), String> {
        self.groups[&META_GROUP]
            .raft
            .client_write(crate::Command::Module(op))
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Submits an entity append to its partition (see [`Submitter::submit`]).
    pub fn submit(
        &self,
        group: &Group,
        writes: Vec<Write>,
        leader: Option<CommittedLeaderIdOf<C>>,
    ) -> AppendFuture {
        group.submitter.submit(writes, leader)
    }

    /// Resolves once every append submitted to `group` so far has resolved.
    pub fn barrier(&self, group: &Group) -> AppendFuture {
        group.submitter.barrier()
    }

    /// Resolves once every append submitted to any group so far has resolved.
    pub fn barrier_all(&self) -> AppendFuture {
        let barriers: Vec<AppendFuture> = self
            .groups
            .values()
            .map(|g| g.submitter.barrier())
            .collect();
        Box::pin(async move {
            for barrier in barriers {
                barrier.await?;
            }
            Ok(())
        })
    }

    /// Every group as this node sees it.
    pub fn status(&self) -> Vec<GroupStatus> {
        self.groups
            .values()
            .map(|group| {
                let m = group.raft.metrics().borrow_watched().clone();
                let membership = m.membership_config.membership();
                GroupStatus {
                    group: group.id,
                    state: format!("{:?}", m.state).to_lowercase(),
                    leader: m.current_leader,
                    term: m.current_term,
                    voters: membership.voter_ids().collect(),
                    learners: membership.learner_ids().collect(),
                    last_log_index: m.last_log_index.unwrap_or(0),
                    committed: m.cluster_committed.map_or(0, |c| c.index),
                    applied: m.last_applied.map_or(0, |c| c.index),
                    snapshot: m.snapshot.map_or(0, |c| c.index),
                    snapshots_installed: group.state_machine.snapshots_installed(),
                }
            })
            .collect()
    }

    /// Every node known to the metadata group (id → address).
    pub fn nodes(&self) -> BTreeMap<u64, String> {
        let meta = &self.groups[&META_GROUP];
        let metrics = meta.raft.metrics().borrow_watched().clone();
        let nodes: BTreeMap<u64, String> = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect();
        if nodes.is_empty() {
            self.options.initial.clone()
        } else {
            nodes
        }
    }

    /// Answers a raft RPC addressed to `path` (`{group}/{kind}`, after [`crate::network::RAFT_PATH`]).
    pub async fn serve_peer(&self, path: &str, body: &[u8]) -> Result<Vec<u8>, Error> {
        let (group, kind) = path.split_once('/').ok_or_else(|| Error::Decode {
            what: "a raft RPC path",
            message: format!("`{path}` is not GROUP/KIND"),
        })?;
        crate::network::serve_rpc(&self.peer_group(group)?.raft, kind, body).await
    }

    /// Answers the append stream of `group` (see [`crate::stream`]).
    pub fn serve_append_stream(
        &self,
        group: &str,
        body: hyper::body::Incoming,
    ) -> Result<crate::stream::StreamingBody, Error> {
        Ok(crate::stream::serve(
            self.peer_group(group)?.raft.clone(),
            body,
            self.stopping.subscribe(),
        ))
    }

    /// Answers a peer's request for a forwarding exchange: the answer, and the exchange to run
    /// once it is sent, in which `handler` runs each command (see [`crate::mux::accept`]).
    pub fn serve_mux(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
        handler: crate::mux::Handler,
    ) -> (
        hyper::Response<crate::stream::StreamingBody>,
        Option<futures_util::future::BoxFuture<'static, ()>>,
    ) {
        crate::mux::accept(request, handler, self.stopping.subscribe())
    }

    /// The group named by the `group` segment of a raft RPC path.
    fn peer_group(&self, group: &str) -> Result<&Group, Error> {
        let bad = |message: String| Error::Decode {
            what: "a raft RPC path",
            message,
        };
        let id: GroupId = group
            .parse()
            .map_err(|_| bad(format!("`{group}` is not a group number")))?;
        self.groups
            .get(&id)
            .ok_or_else(|| bad(format!("there is no group {id}")))
    }

    /// Ends the append streams this node answers (they would hold a graceful shutdown of its
    /// connections until the leaders close them); leaders open new ones when they can.
    pub fn stop_streams(&self) {
        self.stopping.send_replace(true);
    }

    /// Stops every group.
    pub async fn shutdown(&self) {
        self.stop_streams();
        for group in self.groups.values() {
            let _ = group.raft.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_and_preferred_leaders_are_spread() {
        let nodes = [1, 2, 3];
        assert_eq!(layout(1, &nodes, 3), [1, 2, 3]);
        assert_eq!(layout(2, &nodes, 3), [2, 3, 1]);
        assert_eq!(layout(3, &nodes, 3), [3, 1, 2]);
        assert_eq!(layout(4, &nodes, 3), [1, 2, 3]);
        assert_eq!(layout(META_GROUP, &nodes, 3), [1, 2, 3]);
        let five = [1, 2, 3, 4, 5];
        assert_eq!(layout(4, &five, 3), [4, 5, 1]);
        let mut leaders = [0; 5];
        for g in 1..=10 {
            leaders[(layout(g, &five, 3)[0] - 1) as usize] += 1;
        }
        assert_eq!(leaders, [2, 2, 2, 2, 2]);
        assert_eq!(layout(1, &[7], 3), [7]);
    }
}
