//! Membership: nodes join and leave through the metadata group, and every partition follows.
//!
//! The metadata group's voters *are* the cluster's nodes. [`Cluster::add_node`] (on the
//! metadata leader) adds a node as a learner of group 0, waits for it to catch up, then makes it
//! a voter; [`Cluster::remove_node`] drains a node (it becomes a learner of group 0, so it
//! still hears that it is leaving), waits until no partition keeps a replica on it, then
//! forgets it. Partitions are reconciled declaratively:
//! every partition leader compares its group's voters with [`layout`] over the current nodes
//! and, when they differ, adds the missing replicas as learners (log replay, or a snapshot when
//! the log is purged), waits for them to catch up, then replaces the voters in one membership
//! change. A leader that is not in the new layout steps down once the change commits. The
//! balancer then hands each partition to its preferred node, so leaders spread over the new
//! set of nodes: it stops starting commands of that partition, lets the appends in flight
//! commit, then transfers leadership (so a move fails no command in flight).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use openraft::{BasicNode, ChangeMembers, ServerState, type_config::async_runtime::WatchReceiver};

use crate::{Cluster, Error, GroupStatus, META_GROUP, cluster::layout};

/// How long a new replica may take to catch up before a membership change gives up (the
/// reconciler tries again on its next round).
const CATCH_UP: Duration = Duration::from_secs(60);

/// How long a removal waits for the partitions to move off the node.
pub const DRAIN: Duration = Duration::from_secs(60);

/// How long a leadership hand-over waits for the appends in flight, then for the transfer.
const HAND_OVER: Duration = Duration::from_secs(2);

/// A hand-over transfers once its partition submitted no append for this long (a command that
/// started before it, running its guest, submits its append within it).
const QUIET: Duration = Duration::from_millis(20);

impl Cluster {
    /// The voters of the metadata group: the cluster's nodes, sorted.
    pub fn members(&self) -> Vec<u64> {
        let meta = &self.groups[&META_GROUP];
        let watch = meta.raft.metrics();
        let metrics = watch.borrow_watched();
        metrics.membership_config.membership().voter_ids().collect()
    }

    /// Adds node `id`, reachable at `addr`, to the cluster (this node must lead the metadata
    /// group). Resolves once it is a voter of the metadata group; partitions move replicas to
    /// it in the background. Adding a member again at the same address is a no-op.
    pub async fn add_node(&self, id: u64, addr: &str) -> Result<(), Error> {
        if !self.options.peers.accepts_peers() {
            return Err(Error::Membership(crate::auth::CLOSED.to_string()));
        }
        let nodes = self.nodes();
        let members = self.members();
        if let Some(known) = nodes.get(&id)
            && known != addr
        {
            return Err(Error::Membership(format!(
                "node {id} is already a member at {known}; remove it first to move it to {addr}"
            )));
        }
        if let Some((other, _)) = nodes.iter().find(|(n, a)| **n != id && *a == addr) {
            return Err(Error::Membership(format!(
                "{addr} is the address of node {other}"
            )));
        }
        if members.contains(&id) {
            return Ok(());
        }
        let meta = &self.groups[&META_GROUP].raft;
        let added =
            tokio::time::timeout(CATCH_UP, meta.add_learner(id, BasicNode::new(addr), true)).await;
        match added {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(Error::raft(format!("adding node {id}"), e)),
            Err(_) => {
                return Err(Error::Membership(format!(
                    "node {id} at {addr} did not catch up within {}s; is it running (started \
                     with --join)?",
                    CATCH_UP.as_secs()
                )));
            }
        }
        meta.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map(drop)
            .map_err(|e| Error::raft(format!("making node {id} a voter"), e))
    }

    /// Removes node `id` from the cluster (this node must lead the metadata group), draining it
    /// first: it becomes a learner of the metadata group (so it hears that it is leaving and
    /// hands over the partitions it leads), the partitions move their replicas off it, and
    /// once no partition keeps it, it is forgotten. Resolves when it is forgotten; after
    /// [`DRAIN`] it fails and a second call resumes the drain.
    pub async fn remove_node(&self, id: u64) -> Result<(), Error> {
        let members = self.members();
        let leaving = !members.contains(&id) && self.nodes().contains_key(&id);
        if !members.contains(&id) && !leaving {
            return Err(Error::Membership(format!(
                "node {id} is not a member; the members are {members:?}"
            )));
        }
        if members == [id] {
            return Err(Error::Membership(format!(
                "node {id} is the last member and cannot be removed"
            )));
        }
        let meta = &self.groups[&META_GROUP].raft;
        if !leaving {
            meta.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), true)
                .await
                .map_err(|e| Error::raft(format!("demoting node {id}"), e))?;
        }
        if id == self.options.node_id {
            // Demoted, this node hands the metadata group over; the new leader continues the
            // removal (the caller retries there).
            let _ = meta
                .wait(Some(Duration::from_secs(5)))
                .metrics(|m| m.state != ServerState::Leader, "stepped down")
                .await;
            return Err(Error::NotLeader(format!(
                "node {id} led the metadata group and stepped down to leave; the new leader \
                 continues its removal"
            )));
        }
        let drained = tokio::time::timeout(DRAIN, async {
            while !self.drained(id).await {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        if drained.is_err() {
            return Err(Error::Membership(format!(
                "node {id} still holds partition replicas after {}s; run remove-node again to \
                 keep waiting (`cella cluster status` shows where they are)",
                DRAIN.as_secs()
            )));
        }
        meta.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await
            .map(drop)
            .map_err(|e| Error::raft(format!("removing node {id}"), e))
    }

    /// Whether every partition is led by a member whose group no longer includes `id`, as the
    /// members report it.
    async fn drained(&self, id: u64) -> bool {
        let addrs = self.nodes();
        let mut led: BTreeMap<u64, bool> = BTreeMap::new();
        for member in self.members() {
            let Some(addr) = addrs.get(&member) else {
                return false;
            };
            let Ok(reply) = self
                .client
                .send(
                    addr,
                    hyper::Method::GET,
                    "/v1/cluster",
                    &[],
                    bytes::Bytes::new(),
                    Duration::from_secs(2),
                )
                .await
            else {
                continue;
            };
            #[derive(serde::Deserialize)]
            struct Status {
                groups: Vec<GroupStatus>,
            }
            let Ok(status) = serde_json::from_slice::<Status>(&reply.body) else {
                continue;
            };
            for g in status.groups {
                if g.group != META_GROUP && g.state == "leader" {
                    let clear = !g.voters.contains(&id) && !g.learners.contains(&id);
                    led.insert(g.group, clear);
                }
            }
        }
        self.placement.groups().all(|g| led.get(&g) == Some(&true))
    }

    /// One round of the reconciler and balancer over the partitions this node leads: a group
    /// whose voters differ from the layout over the current nodes changes its membership (in
    /// the background); a group laid out right is handed to its preferred leader once that
    /// node has caught up.
    pub(crate) async fn balance(&self) {
        let members = self.members();
        if members.is_empty() {
            return;
        }
        let addrs = self.nodes();
        for group in self.groups.values() {
            let desired = layout(group.id, &members, self.options.replicas);
            let metrics = group.raft.metrics().borrow_watched().clone();
            let membership = metrics.membership_config.membership();
            let voters: BTreeSet<u64> = membership.voter_ids().collect();
            let nodes: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
            // A node moved off a group no longer hears from it; it must not keep calling
            // elections there (its term would climb and disturb the group if it came back),
            // unless the group's voters in the new layout are no majority of its voters: then
            // a live quorum may hold none of them, and only the old voters can elect the
            // leader that moves the group.
            let staying = voters.iter().filter(|v| desired.contains(v)).count();
            let replica = desired.contains(&self.options.node_id) || 2 * staying <= voters.len();
            group.raft.runtime_config().elect(replica);
            if group.id == META_GROUP || metrics.state != ServerState::Leader {
                continue;
            }
            let wanted: BTreeSet<u64> = desired.iter().copied().collect();
            if wanted != voters || wanted != nodes {
                self.reconcile(group.id, wanted, &addrs);
                continue;
            }
            let Some(preferred) = self.preferred_leader(group.id, &desired) else {
                continue;
            };
            if preferred == self.options.node_id {
                continue;
            }
            let last = metrics.last_log_index.unwrap_or(0);
            let caught_up = metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(&preferred).cloned().flatten())
                .is_some_and(|matched| matched.index + 8 >= last);
            if caught_up {
                self.hand_over(group, preferred).await;
            }
        }
    }

    /// Hands `group`'s leadership to `to`: no new command starts here, the commands under way
    /// finish and their appends commit (until no append came for [`QUIET`], or [`HAND_OVER`]
    /// passes), then raft's leader transfer; commands start here again once it is done (or
    /// failed), routed to the new leader by then.
    async fn hand_over(&self, group: &crate::cluster::Group, to: u64) {
        use std::sync::atomic::Ordering;
        group.handing_over.store(true, Ordering::Release);
        let _ = tokio::time::timeout(HAND_OVER, async {
            loop {
                let submitted = group.submitter.submitted();
                let _ = self.barrier(group).await;
                tokio::time::sleep(QUIET).await;
                if group.submitter.submitted() == submitted {
                    break;
                }
            }
        })
        .await;
        let _ = group.raft.trigger().transfer_leader(to).await;
        let _ = group
            .raft
            .wait(Some(HAND_OVER))
            .metrics(|m| m.state != ServerState::Leader, "handed over")
            .await;
        group.handing_over.store(false, Ordering::Release);
    }

    /// Moves `group`'s voters to `wanted` in a background task, unless one is under way.
    fn reconcile(&self, group: u64, wanted: BTreeSet<u64>, addrs: &BTreeMap<u64, String>) {
        let Some(raft) = self.groups.get(&group).map(|g| g.raft.clone()) else {
            return;
        };
        {
            let mut busy = self
                .reconciling
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !busy.insert(group) {
                return;
            }
        }
        let new: BTreeMap<u64, String> = wanted
            .iter()
            .filter_map(|id| addrs.get(id).map(|a| (*id, a.clone())))
            .collect();
        if new.len() != wanted.len() {
            // A member without an address (not yet known here): try again next round.
            self.reconciling
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&group);
            return;
        }
        let busy = self.reconciling.clone();
        tokio::spawn(async move {
            let outcome = async {
                let mut membership = raft
                    .metrics()
                    .borrow_watched()
                    .membership_config
                    .membership()
                    .clone();
                let voters: BTreeSet<u64> = membership.voter_ids().collect();
                // Every wanted replica that is not a voter yet becomes a learner, and must
                // catch up before it votes. A learner left from an earlier round is not added
                // again (that would append a membership entry each round); it is waited for.
                for (id, addr) in &new {
                    if voters.contains(id) {
                        continue;
                    }
                    if membership.get_node(id).is_some() {
                        wait_caught_up(&raft, *id).await?;
                        continue;
                    }
                    // Blocking: resolves once the learner has caught up (by log or snapshot).
                    tokio::time::timeout(
                        CATCH_UP,
                        raft.add_learner(*id, BasicNode::new(addr), true),
                    )
                    .await
                    .map_err(|_| {
                        Error::Membership(format!(
                            "node {id} did not catch up within {}s",
                            CATCH_UP.as_secs()
                        ))
                    })?
                    .map_err(|e| Error::raft(format!("adding node {id} as a learner"), e))?;
                }
                if voters != wanted {
                    let changed = raft
                        .change_membership(ChangeMembers::ReplaceAllVoters(wanted.clone()), false)
                        .await
                        .map_err(|e| Error::raft(format!("making {wanted:?} the voters"), e))?;
                    membership = changed.membership.unwrap_or(membership);
                }
                // Learners outside the layout (a replica moved off, or one that never caught
                // up) are forgotten, so that a drain of their node can finish. The membership
                // is the one the last change answered (metrics may not show it yet).
                let extra: BTreeSet<u64> = membership
                    .nodes()
                    .map(|(id, _)| *id)
                    .filter(|id| !wanted.contains(id))
                    .collect();
                if !extra.is_empty() {
                    raft.change_membership(ChangeMembers::RemoveNodes(extra.clone()), false)
                        .await
                        .map_err(|e| Error::raft(format!("removing learners {extra:?}"), e))?;
                }
                Ok::<(), Error>(())
            }
            .await;
            if let Err(e) = outcome {
                tracing::warn!(group, "moving replicas: {e}");
            }
            busy.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&group);
        });
    }
}

/// Waits (at most [`CATCH_UP`]) until the learner `id` of `raft`'s group has every entry the
/// leader had when the wait began; fails at once if this node stops leading.
async fn wait_caught_up(
    raft: &openraft::Raft<crate::TypeConfig, crate::StateMachine>,
    id: u64,
) -> Result<(), Error> {
    let target = raft.metrics().borrow_watched().last_log_index.unwrap_or(0);
    let metrics = raft
        .wait(Some(CATCH_UP))
        .metrics(
            |m| {
                m.state != ServerState::Leader
                    || m.replication
                        .as_ref()
                        .and_then(|r| r.get(&id).cloned().flatten())
                        .is_some_and(|matched| matched.index >= target)
            },
            "learner caught up",
        )
        .await
        .map_err(|e| Error::raft(format!("waiting for node {id} to catch up"), e))?;
    if metrics.state != ServerState::Leader {
        return Err(Error::NotLeader(
            "this node stopped leading the group".into(),
        ));
    }
    Ok(())
}
