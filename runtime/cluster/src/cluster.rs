//! One node's part of the cluster: a raft group per partition (and group 0 for cluster
//! metadata), all on the node's one store, with their submission queues; the layout of replicas
//! and preferred leaders; and what the node asks of its groups: leadership, leaders, read
//! confirmation, submissions and barriers, status.
//!
//! *Layout.* With the voters sorted by id, partition `p` is replicated on `replicas` consecutive
//! nodes starting at index `(p - 1) % n`, and prefers the first of them as leader, so replicas
//! and leaders are spread evenly. Group 0 (metadata) is replicated on every node. The lowest
//! id among a group's initial replicas initializes it; the others wait to be contacted. The
//! balancer hands a partition's leadership to its preferred node once that node has caught up,
//! so leaders spread again when a node joins or comes back (see [`crate::membership`] for
//! joining, leaving, moving replicas and the balancer).
//!
//! Starting and stopping the groups is in `lifecycle.rs`, answering the peers' requests to them
//! in `serving.rs` (both `impl Cluster`).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use cella_core::{AppendFuture, EntityId, Write};
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::{Raft, ReadPolicy, alias::CommittedLeaderIdOf};

use crate::{
    Error, GroupId, Placement, StateMachine, TypeConfig, auth::PeerAuth, network::PeerClient,
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
    /// How partition leadership follows load (see [`crate::rebalance`]).
    pub rebalance: crate::rebalance::RebalanceOptions,
    /// How peer requests are signed and checked (see [`crate::auth`]).
    pub peers: Arc<PeerAuth>,
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
            rebalance: crate::rebalance::RebalanceOptions::default(),
            peers: Arc::new(PeerAuth::closed()),
        }
    }
}

/// Entries between partition snapshots, by default.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 20_000;

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
    pub(crate) submitter: Submitter,
    /// This node is handing the group's leadership over (`membership.rs`): no new command
    /// starts here, so that the appends in flight can commit before the transfer.
    pub(crate) handing_over: std::sync::atomic::AtomicBool,
}

impl Group {
    /// Whether this node is handing the group's leadership over.
    pub fn handing_over(&self) -> bool {
        self.handing_over.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// This node's groups.
pub struct Cluster {
    /// Applied module changes, by entity type (taken once by the node's registry).
    pub(crate) module_events:
        std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>,
    pub(crate) options: ClusterOptions,
    pub(crate) placement: Placement,
    pub(crate) client: PeerClient,
    pub(crate) groups: BTreeMap<GroupId, Group>,
    /// Partitions whose membership change is under way (see [`crate::membership`]).
    pub(crate) reconciling: Arc<std::sync::Mutex<BTreeSet<GroupId>>>,
    /// Turns true when the node stops: the append streams it answers end.
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
    /// This node's load, per partition and in CPU (see [`crate::load`]).
    pub(crate) meter: Arc<crate::load::LoadMeter>,
    /// The applied leader placement of the metadata group (see [`crate::rebalance`]).
    pub(crate) leaders: Arc<std::sync::RwLock<crate::types::Leaders>>,
    /// Where requests for moved shards go, as the metadata group says (see [`crate::shards`]).
    pub(crate) routes: Arc<std::sync::RwLock<crate::shards::Routes>>,
    /// Whose writes to each shard take effect on this node.
    pub(crate) owners: Arc<crate::shards::Owners>,
    /// Shards this node is moving now (as the metadata leader), one move of each at a time.
    pub(crate) moves_running: std::sync::Mutex<BTreeSet<u32>>,
    /// Shards a partition here serves again (moved in, or unfrozen), as (partition, shard)
    /// (taken once by the node).
    pub(crate) moved_in:
        std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(GroupId, u32)>>>,
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

impl Cluster {
    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.options.node_id
    }

    /// How this node's peer requests are signed and checked.
    pub fn peer_auth(&self) -> &PeerAuth {
        &self.options.peers
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

    /// The partition requests for `id` go to: its shard's default partition, unless the
    /// shard moved.
    pub fn partition_of(&self, id: &EntityId) -> GroupId {
        let shard = self.placement.shard(id);
        self.routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .partition(&self.placement, shard)
    }

    /// The partition requests for `id` go to.
    pub fn group_of(&self, id: &EntityId) -> &Group {
        let group = self.partition_of(id);
        // Every partition of the placement has a group (created in `start`); a route names
        // only those.
        self.groups
            .get(&group)
            .unwrap_or_else(|| &self.groups[&self.placement.partition(id)])
    }

    /// Whether this node, leading `group`, may start a command of `id` now: its shard is not
    /// frozen for a move and is `group`'s here (a shard moved in is `group`'s once its data
    /// is).
    pub fn serves(&self, group: &Group, id: &EntityId) -> bool {
        self.serves_shard(group, self.placement.shard(id))
    }

    /// [`Cluster::serves`] for an entity of `shard`.
    fn serves_shard(&self, group: &Group, shard: u32) -> bool {
        let frozen = group
            .state_machine
            .frozen()
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&shard);
        !frozen && self.owners.owner(shard).0 == group.id
    }

    /// Shards a partition on this node serves again, moved in or unfrozen, as (partition,
    /// shard); `None` after the first call.
    pub fn take_moved_in(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<(GroupId, u32)>> {
        self.moved_in
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
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
        let preferred = self.preferred_leader(group.id, &replicas)?;
        let addr = self.nodes().remove(&preferred)?;
        Some((preferred, addr))
    }

    /// Waits until this node, as leader of `group`, has applied everything committed before it
    /// confirmed its leadership: reads of its state machine are then linearizable.
    pub async fn ready(&self, group: &Group) -> Result<(), Error> {
        group
            .raft
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
            .map(drop)
            .map_err(|e| Error::raft("confirming the leadership", e))
    }

    /// Resolves once this node is sure it still leads `group` under `leader`: at once while its
    /// leader lease holds (a quorum acknowledged it within the last election timeout, so no
    /// other leader can exist), else after a round of heartbeats (ReadIndex). It does not wait
    /// for the state machine: the caller reads state it cached under that leadership.
    pub async fn confirm(
        &self,
        group: &Group,
        leader: CommittedLeaderIdOf<C>,
    ) -> Result<(), Error> {
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
                .map_err(|e| Error::raft("confirming the leadership", e))?;
        }
        // Confirmed as leader just now; still under the same leadership as the caller's state?
        if self.leadership(group) == Some(leader) {
            Ok(())
        } else {
            Err(Error::NotLeader(
                "this node no longer leads the entity's partition".into(),
            ))
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
    pub async fn propose_module(&self, op: crate::types::ModuleOp) -> Result<(), Error> {
        self.groups[&META_GROUP]
            .raft
            .client_write(crate::Command::Module(op))
            .await
            .map(drop)
            .map_err(|e| Error::raft("replicating a module change", e))
    }

    /// Records an admin action in the audit trail of the metadata group, with the module
    /// change it makes (applied together on every node); resolves once applied here.
    pub async fn propose_admin(
        &self,
        record: crate::types::AuditRecord,
        module: Option<crate::types::ModuleOp>,
    ) -> Result<(), Error> {
        self.groups[&META_GROUP]
            .raft
            .client_write(crate::Command::Admin { record, module })
            .await
            .map(drop)
            .map_err(|e| Error::raft("replicating an admin action", e))
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

    /// Submits `writes` for `id` to `group` unless `id`'s shard is frozen for a move or is not
    /// `group`'s here, asked under the submitter's lock (see [`Submitter::submit_if`]): a
    /// move's barrier after its freeze then covers every append of the shard it let through.
    /// `None`: refused, nothing submitted.
    pub fn submit_serving(
        &self,
        group: &Group,
        id: &EntityId,
        writes: Vec<Write>,
        leader: Option<CommittedLeaderIdOf<C>>,
    ) -> Option<AppendFuture> {
        let shard = self.placement.shard(id);
        let submitted = group
            .submitter
            .submit_if(writes, leader, || self.serves_shard(group, shard));
        if submitted.is_some() {
            self.meter.record_shard(shard);
        }
        submitted
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

    /// The index of the last log entry of `group` applied to this node's store (0 before any):
    /// everything it wrote is readable from the store once it is applied.
    pub fn applied_index(&self, group: &Group) -> u64 {
        group
            .raft
            .data_metrics()
            .borrow_watched()
            .last_applied
            .map_or(0, |applied| applied.index)
    }

    /// Waits until this node has applied an entry of `group` beyond index `beyond`: `true` as
    /// soon as it has (at once if it already has), `false` once `timeout` passed without one.
    /// Built on openraft's data metrics, which it publishes after every apply (and which, unlike
    /// the full metrics, change only when the log, commit or apply progress do), so waiting costs
    /// nothing between applies. A group that stops (the node shuts down) waits out `timeout`.
    pub async fn wait_applied(&self, group: &Group, beyond: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut metrics = group.raft.data_metrics();
        loop {
            let applied = metrics
                .borrow_and_update()
                .last_applied
                .map_or(0, |applied| applied.index);
            if applied > beyond {
                return true;
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_stopped)) => {
                    tokio::time::sleep_until(deadline).await;
                    return false;
                }
                Err(_elapsed) => return false,
            }
        }
    }

    /// Waits (up to `timeout`) until this node has applied every entry of `group` it knows to
    /// be committed now, so that its store shows every change committed before the call as
    /// this node knows it (on the leader: every change it acknowledged). Whether it has.
    pub async fn caught_up(&self, group: &Group, timeout: Duration) -> bool {
        let committed = group
            .raft
            .data_metrics()
            .borrow_watched()
            .local_committed
            .map_or(0, |committed| committed.index);
        committed == 0 || self.wait_applied(group, committed - 1, timeout).await
    }

    /// Whether this node holds a full replica of `group`: one of its voters (a learner may
    /// still be catching up), and placed on this node by the current layout (a node moved off a
    /// group may not have heard that it was).
    pub fn replicates(&self, group: &Group) -> bool {
        let me = self.options.node_id;
        let voter = {
            let watch = group.raft.metrics();
            let metrics = watch.borrow_watched();
            metrics
                .membership_config
                .membership()
                .voter_ids()
                .any(|id| id == me)
        };
        let members = self.members();
        voter
            && (members.is_empty()
                || layout(group.id, &members, self.options.replicas).contains(&me))
    }

    /// Turns true when this node stops (see [`Cluster::stop_streams`]): long-lived answers such
    /// as event streams end then, so that a graceful shutdown need not wait for them.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
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
