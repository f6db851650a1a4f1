//! The placement loop's part of [`Cluster`]: this node's load report, gathering every
//! member's, a round of the loop (on the metadata leader) and a rebalance asked for by an
//! operator (`POST /v1/cluster/rebalance`). The decisions themselves are
//! [`crate::rebalance`] (leadership) and [`crate::hot_shards`] (shards between partitions).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use bytes::Bytes;
use openraft::{ServerState, type_config::async_runtime::WatchReceiver};

use crate::{
    Cluster, Error, GroupId, META_GROUP,
    hot_shards::{self, ShardPlan},
    load::NodeLoad,
    moving::{ShardMoveOutcome, ShardMoveRequest},
    rebalance::{self, Hysteresis, LOAD_PATH, Plan, PlannedMove},
    shards::ShardMove,
    types::{AuditRecord, Command, Leaders, now_ms},
};

/// How long a peer may take to report its load.
const LOAD_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an asked-for move waits to see the new leader.
const MOVE_WAIT: Duration = Duration::from_secs(10);

/// A shard move under way for this long was left unfinished (the metadata leader that began it
/// failed, or one of its steps did): the loop finishes it, a try at most this often.
const ABANDONED_AFTER: Duration = Duration::from_secs(10);

/// The placement loop's memory between rounds.
#[derive(Debug, Default)]
pub(crate) struct PlacementState {
    leaders: Hysteresis,
    shards: Hysteresis,
    /// The shards this node's loop moved, and when (the routes keep only the last 32 moves).
    moved: BTreeMap<u32, Instant>,
}

impl PlacementState {
    /// Forgets both candidates (nothing is decided this round).
    fn reset(&mut self) {
        self.leaders.reset();
        self.shards.reset();
    }
}

/// What an operator asks of `POST /v1/cluster/rebalance`.
#[derive(Clone, Debug, Default)]
pub struct RebalanceRequest {
    /// Only show what would be done.
    pub dry_run: bool,
    /// Move this partition's leadership to this node, instead of what the loads suggest.
    pub explicit: Option<(GroupId, u64)>,
    /// Who asks (for the audit record).
    pub actor: String,
}

/// What a rebalance found and did.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceOutcome {
    /// Only shown, nothing made.
    pub dry_run: bool,
    pub plan: Plan,
    /// Whether the move was made (committed to the metadata group).
    pub applied: bool,
    /// Whether the partition's new leader was seen leading within the wait.
    pub moved: bool,
    /// The shard moves the loads suggest (none with an explicit leadership move).
    pub shard_plan: ShardPlan,
    /// The shard moves made, and those that failed (why).
    pub shard_moves: Vec<ShardMoveOutcome>,
    pub shard_errors: Vec<String>,
    /// The loads the plan was made from.
    pub loads: Vec<NodeLoad>,
    /// Members that did not report their load.
    pub unreachable: Vec<u64>,
}

impl Cluster {
    /// The node `group` prefers as leader among `replicas` (its voters by the layout, the
    /// layout's preferred first): the placement's choice if it is one of them, else the first.
    pub(crate) fn preferred_leader(&self, group: GroupId, replicas: &[u64]) -> Option<u64> {
        let placed = self
            .leaders
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .preferred
            .get(&group)
            .copied();
        placed
            .filter(|n| replicas.contains(n))
            .or_else(|| replicas.first().copied())
    }

    /// The applied leader placement: preferred leaders and the moves made.
    pub fn leader_placement(&self) -> Leaders {
        self.leaders
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// This node's load as of the last sample.
    pub fn load_report(&self) -> NodeLoad {
        let routes = self.routes_now();
        self.meter.report(
            self.options.node_id,
            |group| {
                let g = self.groups.get(&group)?;
                let watch = g.raft.metrics();
                let m = watch.borrow_watched();
                (m.state == ServerState::Leader).then(|| {
                    (
                        m.current_term,
                        m.membership_config.membership().voter_ids().collect(),
                    )
                })
            },
            |shard| routes.partition(&self.placement, shard),
        )
    }

    /// Every member's load report (this node's included), and the members that gave none.
    pub async fn gather_loads(&self) -> (Vec<NodeLoad>, Vec<u64>) {
        let members = self.members();
        let addrs = self.nodes();
        let asks = members.iter().map(|id| {
            let addr = addrs.get(id).cloned();
            async move {
                if *id == self.options.node_id {
                    return (*id, Some(self.load_report()));
                }
                let Some(addr) = addr else {
                    return (*id, None);
                };
                let reply = self
                    .client
                    .send(
                        &addr,
                        hyper::Method::GET,
                        LOAD_PATH,
                        &[],
                        Bytes::new(),
                        LOAD_TIMEOUT,
                    )
                    .await;
                let load = reply
                    .ok()
                    .filter(|r| r.status.is_success())
                    .and_then(|r| crate::load::wire::decode(&r.body).ok())
                    .filter(|l| l.node == *id);
                (*id, load)
            }
        });
        let mut loads = Vec::new();
        let mut unreachable = Vec::new();
        for (id, load) in futures_util::future::join_all(asks).await {
            match load {
                Some(l) => loads.push(l),
                None => unreachable.push(id),
            }
        }
        (loads, unreachable)
    }

    /// One round of the placement loop: samples this node's load, and on the metadata leader
    /// finishes the shard moves left unfinished and (with the loop enabled) plans and, past
    /// the hysteresis, makes a move: a leadership move first; shards move only in a round
    /// that plans none. Each kind has its own hysteresis, and a move of either kind starts
    /// both cooldowns over.
    pub(crate) async fn placement_round(&self, state: &mut PlacementState) {
        self.meter.sample();
        if self.meta_leadership().is_err() {
            state.reset();
            return;
        }
        self.finish_abandoned_moves().await;
        let options = &self.options.rebalance;
        if !options.enabled {
            state.reset();
            return;
        }
        let (loads, unreachable) = self.gather_loads().await;
        if !unreachable.is_empty() {
            // A node that does not answer may be the busiest: decide on full information only.
            state.reset();
            return;
        }
        state.moved.retain(|_, at| at.elapsed() < options.settle);
        let plan = self.plan(&loads);
        if plan.planned.is_some() {
            state.shards.reset();
        } else {
            let shard_plan = self.plan_shards(&loads, state.moved.keys().copied());
            if state
                .shards
                .decide_key(shard_plan.key(), options, Instant::now())
            {
                let (made, failed) = self
                    .make_shard_moves(&shard_plan, &self.placement_actor())
                    .await;
                for m in &made {
                    state.moved.insert(m.made.shard, Instant::now());
                    tracing::info!(
                        "placement: shard {} partition {} → {} in {} ms: {}",
                        m.made.shard,
                        m.made.from,
                        m.made.to,
                        m.took_ms,
                        m.made.reason
                    );
                }
                for e in failed {
                    tracing::warn!("placement: {e}");
                }
                state.leaders.note_move(Instant::now());
            }
        }
        if !state
            .leaders
            .decide(plan.planned.as_ref(), options, Instant::now())
        {
            return;
        }
        if let Some(planned) = &plan.planned {
            let actor = format!("node {}", self.options.node_id);
            match self.commit_move(planned, &actor).await {
                Ok(()) => tracing::info!(
                    "placement: partition {} leadership {} → {}: {}",
                    planned.group,
                    planned.from,
                    planned.to,
                    planned.reason
                ),
                Err(e) => tracing::warn!("placement: the move could not be recorded: {e}"),
            }
            state.shards.note_move(Instant::now());
        }
    }

    /// Finishes the shard moves under way for [`ABANDONED_AFTER`] and not running here: their
    /// shards' commands wait until they finish, and a move whose data may have reached its
    /// target can only be finished. Each try begins the move anew (its time too), so tries
    /// are that far apart.
    async fn finish_abandoned_moves(&self) {
        let after = u64::try_from(ABANDONED_AFTER.as_millis()).unwrap_or(u64::MAX);
        let now = now_ms();
        let abandoned: Vec<ShardMove> = self
            .routes_now()
            .moving
            .into_values()
            .filter(|m| now.saturating_sub(m.at_ms) >= after)
            .collect();
        for m in abandoned {
            if self.moving_here(m.shard) {
                continue;
            }
            let request = ShardMoveRequest {
                shard: m.shard,
                to: m.to,
                actor: self.placement_actor(),
                reason: Some(format!(
                    "finishing the move begun at generation {}, left unfinished",
                    m.generation
                )),
            };
            match self.move_shard(request).await {
                Ok(done) => tracing::info!(
                    "placement: finished the move of shard {} partition {} → {} ({} ms)",
                    m.shard,
                    done.made.from,
                    done.made.to,
                    done.took_ms
                ),
                Err(e) => tracing::warn!("placement: {e}"),
            }
        }
    }

    /// Who the placement loop's shard moves are by, in their audit records.
    fn placement_actor(&self) -> String {
        format!("node {} (placement)", self.options.node_id)
    }

    /// The move `loads` suggest now, leaving out the partitions that moved recently.
    fn plan(&self, loads: &[NodeLoad]) -> Plan {
        let options = &self.options.rebalance;
        let settling = rebalance::settling(&self.leader_placement(), now_ms(), options.settle);
        rebalance::plan(loads, options, &settling)
    }

    /// The shard moves `loads` suggest now, leaving out the shards moving, those the routes
    /// show moved recently and `recent` (moved recently by this node's loop).
    fn plan_shards(&self, loads: &[NodeLoad], recent: impl Iterator<Item = u32>) -> ShardPlan {
        let options = &self.options.rebalance;
        let settle = u64::try_from(options.settle.as_millis()).unwrap_or(u64::MAX);
        let now = now_ms();
        let routes = self.routes_now();
        let mut settling: Vec<u32> = routes
            .moves
            .iter()
            .filter(|m| now.saturating_sub(m.at_ms) < settle)
            .map(|m| m.shard)
            .chain(routes.moving.keys().copied())
            .chain(recent)
            .collect();
        settling.sort_unstable();
        settling.dedup();
        hot_shards::plan_shards(loads, options, &settling)
    }

    /// Makes `plan`'s shard moves one after the other (this node must lead the metadata
    /// group): those made, and why the others were not.
    async fn make_shard_moves(
        &self,
        plan: &ShardPlan,
        actor: &str,
    ) -> (Vec<ShardMoveOutcome>, Vec<String>) {
        let (mut made, mut failed) = (Vec::new(), Vec::new());
        for m in &plan.moves {
            let request = ShardMoveRequest {
                shard: m.shard,
                to: m.to,
                actor: actor.to_string(),
                reason: Some(m.reason.clone()),
            };
            match self.move_shard(request).await {
                Ok(outcome) => made.push(outcome),
                Err(e) => {
                    // The rest of the plan assumed this move: plan again from the new loads.
                    failed.push(format!(
                        "shard {} could not move from partition {} to {}: {e} (the plan's \
                         later moves were not made)",
                        m.shard, m.from, m.to
                    ));
                    break;
                }
            }
        }
        (made, failed)
    }

    /// Records `planned` in the metadata group (this node must lead it).
    async fn commit_move(&self, planned: &PlannedMove, actor: &str) -> Result<(), Error> {
        let mut record = AuditRecord::new(actor, "move-leader");
        record.node = Some(planned.to);
        record.detail = Some(format!(
            "partition {}: node {} → node {} ({})",
            planned.group, planned.from, planned.to, planned.reason
        ));
        let leaders = rebalance::apply(&self.leader_placement(), planned, record.at_ms);
        self.groups[&META_GROUP]
            .raft
            .client_write(Command::Leaders { record, leaders })
            .await
            .map(drop)
            .map_err(|e| Error::raft("recording a leader move", e))
    }

    /// A rebalance an operator asked for: the plan from the current loads (or the explicit
    /// move), made unless `dry_run` (this node must then lead the metadata group), waiting
    /// until the partition's new leader leads.
    pub async fn rebalance(&self, request: RebalanceRequest) -> Result<RebalanceOutcome, Error> {
        if !request.dry_run && self.meta_leadership().is_err() {
            return Err(Error::NotLeader(
                "only the metadata leader moves leadership".into(),
            ));
        }
        let (loads, unreachable) = self.gather_loads().await;
        let (plan, shard_plan) = match request.explicit {
            Some((group, to)) => (
                self.explicit_move(group, to, &loads)?,
                ShardPlan {
                    moves: Vec::new(),
                    note: "a leadership move was asked for: no shard moves".into(),
                },
            ),
            None => {
                let plan = self.plan(&loads);
                // As in the loop, shards move only when no leadership move is planned: both
                // are planned from the same loads, and together could pile the load elsewhere.
                let shard_plan = match plan.planned {
                    Some(_) => ShardPlan {
                        moves: Vec::new(),
                        note: "a leadership move is planned: shards move only when none is".into(),
                    },
                    None => self.plan_shards(&loads, std::iter::empty()),
                };
                (plan, shard_plan)
            }
        };
        let mut outcome = RebalanceOutcome {
            dry_run: request.dry_run,
            plan,
            applied: false,
            moved: false,
            shard_plan,
            shard_moves: Vec::new(),
            shard_errors: Vec::new(),
            loads,
            unreachable,
        };
        if request.dry_run {
            return Ok(outcome);
        }
        let Some(planned) = outcome.plan.planned.clone() else {
            // Shards move only when no leadership move is planned, as in the loop: both were
            // planned from the same loads, and together they could pile the load elsewhere.
            (outcome.shard_moves, outcome.shard_errors) = self
                .make_shard_moves(&outcome.shard_plan, &request.actor)
                .await;
            return Ok(outcome);
        };
        self.commit_move(&planned, &request.actor).await?;
        outcome.applied = true;
        let raft = &self.groups[&planned.group].raft;
        outcome.moved = raft
            .wait(Some(MOVE_WAIT))
            .metrics(
                |m| m.current_leader == Some(planned.to),
                "the partition's new leader leads",
            )
            .await
            .is_ok();
        Ok(outcome)
    }

    /// The plan of moving `group`'s leadership to `to`, checked against the group's voters.
    fn explicit_move(&self, group: GroupId, to: u64, loads: &[NodeLoad]) -> Result<Plan, Error> {
        let Some(g) = self.groups.get(&group).filter(|_| group != META_GROUP) else {
            return Err(Error::Membership(format!(
                "there is no partition {group}: the partitions are 1 to {}",
                self.placement.partitions
            )));
        };
        let metrics = g.raft.metrics().borrow_watched().clone();
        let voters: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
        if !voters.contains(&to) {
            return Err(Error::Membership(format!(
                "node {to} is not a voter of partition {group} (its voters are {voters:?})"
            )));
        }
        let from = metrics.current_leader.unwrap_or(0);
        let pressure = |node: u64| {
            loads
                .iter()
                .find(|l| l.node == node)
                .map_or(0.0, NodeLoad::pressure)
        };
        if from == to {
            return Ok(Plan {
                planned: None,
                note: format!("node {to} already leads partition {group}"),
            });
        }
        Ok(Plan {
            planned: Some(PlannedMove {
                group,
                from,
                to,
                pressure_before: pressure(from),
                pressure_after: pressure(to),
                reason: "asked for by an operator".into(),
            }),
            note: format!("partition {group}'s leadership goes to node {to} as asked"),
        })
    }
}
