//! Placement that follows load: partition leadership moves toward spare CPU.
//!
//! Every node measures its load ([`crate::load`]); the node leading the metadata group gathers
//! every member's report once per [`RebalanceOptions::interval`] and [`plan`]s: a node whose
//! *pressure* (how busy the CPUs it may run on are, by anyone, and at least by itself) is the
//! highest hands one of the partitions it leads to another voter of that partition when its
//! work would land on CPUs clearly less busy (by [`RebalanceOptions::min_gain`] of the
//! source's pressure), counting the work itself; of those moves, the one leaving the two
//! nodes least busy wins. A partition's
//! part of its leader's work is its part of the leader's appends: that part of the CPU the
//! leader used leaves its CPUs and lands on the target's. Moving it back would then land it on
//! CPUs busier than where it is, so a move is never undone by the next plan. The move is made only after the same plan has come up
//! [`RebalanceOptions::confirm`] rounds in a row, at most one per
//! [`RebalanceOptions::cooldown`], and never for a partition moved within
//! [`RebalanceOptions::settle`] (hysteresis: a move is judged on the load it leaves, and
//! nothing flaps). A move is a [`crate::Command::Leaders`] entry in the metadata group (the
//! partitions' preferred leaders and the moves made, with an audit record); each partition's
//! leader then hands its leadership over as the balancer does for the layout's preferred node
//! (`membership.rs`): raft's leader transfer, which commits nothing twice and loses nothing
//! acknowledged.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use crate::{
    GroupId,
    load::NodeLoad,
    types::{LeaderMove, Leaders},
};

/// Moves whose pressures after differ by less than this are alike (see [`plan`]).
const TIE: f64 = 0.05;

/// Where a node answers for its load (`GET`, signed like every peer request, postcard body).
pub const LOAD_PATH: &str = "/v1/peer/load";

/// How the placement loop decides.
#[derive(Clone, Debug)]
pub struct RebalanceOptions {
    /// Moves are made by the loop (else only when asked: `cella cluster rebalance`).
    pub enabled: bool,
    /// How often loads are gathered and a plan made.
    pub interval: Duration,
    /// A node whose pressure is under this is never relieved (an idle cluster stays put).
    pub min_pressure: f64,
    /// A move's work must land on CPUs less busy than its source's by this fraction of them.
    pub min_gain: f64,
    /// Rounds in a row the same move must be planned before it is made.
    pub confirm: u32,
    /// At most one move per this long.
    pub cooldown: Duration,
    /// A partition moved this recently is not moved again (nor a shard, between partitions).
    pub settle: Duration,
    /// Shards move out of a partition only when it takes this many times the partitions' mean
    /// writes per second ([`crate::hot_shards`])…
    pub shard_imbalance: f64,
    /// …and at least this many.
    pub min_shard_writes: f64,
    /// At most this many shards move in one round.
    pub max_shard_moves: usize,
    /// Shards move out of a partition only when its leader uses at least this part of its
    /// CPUs itself (0 to 1).
    pub shard_min_cpu: f64,
}

impl Default for RebalanceOptions {
    fn default() -> Self {
        RebalanceOptions {
            enabled: true,
            interval: Duration::from_secs(1),
            min_pressure: 0.5,
            min_gain: 0.15,
            confirm: 3,
            cooldown: Duration::from_secs(10),
            settle: Duration::from_secs(60),
            shard_imbalance: 1.5,
            min_shard_writes: 200.0,
            max_shard_moves: 32,
            shard_min_cpu: 0.7,
        }
    }
}

/// One move a plan proposes.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedMove {
    pub group: GroupId,
    pub from: u64,
    pub to: u64,
    /// The source's pressure before, and the higher of the two nodes' (estimated) after.
    pub pressure_before: f64,
    pub pressure_after: f64,
    pub reason: String,
}

/// What [`plan`] found.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The move to make, if any.
    #[serde(rename = "move")]
    pub planned: Option<PlannedMove>,
    /// Why there is none (balanced, idle, nothing movable…).
    pub note: String,
}

/// The best leadership move for `loads` (the reports of the nodes that answered), leaving
/// out partitions in `settling`.
pub fn plan(loads: &[NodeLoad], options: &RebalanceOptions, settling: &[GroupId]) -> Plan {
    let none = |note: String| Plan {
        planned: None,
        note,
    };
    if loads.len() < 2 {
        return none("a single node: nothing to balance".into());
    }
    let by_node: BTreeMap<u64, &NodeLoad> = loads.iter().map(|l| (l.node, l)).collect();
    let Some(busiest) = loads
        .iter()
        .max_by(|a, b| a.pressure().total_cmp(&b.pressure()))
    else {
        return none("no loads".into());
    };
    let before = busiest.pressure();
    if before < options.min_pressure {
        return none(format!(
            "idle: the busiest node, {}, has its CPUs {:.0}% busy (moves start at {:.0}%)",
            busiest.node,
            before * 100.0,
            options.min_pressure * 100.0
        ));
    }
    let appends: f64 = busiest.led.iter().map(|g| g.load.commands).sum();
    if appends <= 0.0 {
        return none(format!(
            "node {} is the busiest ({:.2} cores) but its partitions take no writes",
            busiest.node, busiest.cpu
        ));
    }
    let mut best: Option<PlannedMove> = None;
    for led in &busiest.led {
        if led.load.commands <= 0.0 || settling.contains(&led.load.group) {
            continue;
        }
        // The partition's part of its leader's work is its part of the writes: that part of
        // the CPU the leader used leaves its CPUs and lands on the target's.
        let moved = busiest.cpu * led.load.commands / appends;
        for to in led.voters.iter().filter(|v| **v != busiest.node) {
            let Some(target) = by_node.get(to) else {
                continue;
            };
            // The work must land on CPUs clearly less busy than the ones it leaves, even
            // with it: then moving it back never pays, and nothing flaps.
            let from_after = before - moved / f64::from(busiest.cpus.max(1));
            let to_after = target.pressure() + moved / f64::from(target.cpus.max(1));
            if to_after > before * (1.0 - options.min_gain) {
                continue;
            }
            // Of those, the one that leaves the two nodes least busy; one within
            // [`TIE`] of it keeps the lower partition, so that two alike partitions do not
            // take turns in the plan (each turn would restart the confirmation).
            let after = from_after.max(to_after);
            if best
                .as_ref()
                .is_some_and(|b| b.pressure_after <= after + TIE)
            {
                continue;
            }
            best = Some(PlannedMove {
                group: led.load.group,
                from: busiest.node,
                to: *to,
                pressure_before: before,
                pressure_after: after,
                reason: format!(
                    "node {} uses {:.2} cores, its {} CPU {:.0}% busy (partition {}: {:.0} \
                     writes/s of its {:.0}); node {}'s {} CPU {:.0}% busy; the two nodes' \
                     highest pressure {:.2} → {:.2}",
                    busiest.node,
                    busiest.cpu,
                    busiest.cpus,
                    busiest.pressure() * 100.0,
                    led.load.group,
                    led.load.commands,
                    appends,
                    to,
                    target.cpus,
                    target.pressure() * 100.0,
                    before,
                    after
                ),
            });
        }
    }
    match best {
        Some(m) => Plan {
            planned: Some(m),
            note: "one partition's work lands on clearly less busy CPUs".into(),
        },
        None => none(format!(
            "balanced: no voter of node {}'s partitions would run its work on CPUs {:.0}% \
             less busy than its own ({before:.2})",
            busiest.node,
            options.min_gain * 100.0
        )),
    }
}

/// The placement after `planned` is made at `at_ms`.
pub fn apply(leaders: &Leaders, planned: &PlannedMove, at_ms: u64) -> Leaders {
    let mut next = leaders.clone();
    next.preferred.insert(planned.group, planned.to);
    next.moves.push(LeaderMove {
        at_ms,
        group: planned.group,
        from: planned.from,
        to: planned.to,
        reason: planned.reason.clone(),
    });
    let excess = next.moves.len().saturating_sub(Leaders::KEPT_MOVES);
    next.moves.drain(..excess);
    next
}

/// The partitions moved within `settle` of `now_ms`.
pub fn settling(leaders: &Leaders, now_ms: u64, settle: Duration) -> Vec<GroupId> {
    let settle = u64::try_from(settle.as_millis()).unwrap_or(u64::MAX);
    leaders
        .moves
        .iter()
        .filter(|m| now_ms.saturating_sub(m.at_ms) < settle)
        .map(|m| m.group)
        .collect()
}

/// The loop's memory between rounds: the move planned last and how many rounds in a row.
#[derive(Debug, Default)]
pub struct Hysteresis {
    candidate: Option<(GroupId, u64)>,
    streak: u32,
    last_move: Option<Instant>,
}

impl Hysteresis {
    /// Whether `planned` (this round's plan) is to be made now.
    pub fn decide(
        &mut self,
        planned: Option<&PlannedMove>,
        options: &RebalanceOptions,
        now: Instant,
    ) -> bool {
        self.decide_key(planned.map(|m| (m.group, m.to)), options, now)
    }

    /// Whether the move this round planned, known by `key` (what moves where), is to be made
    /// now.
    pub fn decide_key(
        &mut self,
        key: Option<(u64, u64)>,
        options: &RebalanceOptions,
        now: Instant,
    ) -> bool {
        if key.is_none() || key != self.candidate {
            self.candidate = key;
            self.streak = u32::from(key.is_some());
        } else {
            self.streak += 1;
        }
        let cooled = self
            .last_move
            .is_none_or(|at| now.duration_since(at) >= options.cooldown);
        if key.is_some() && self.streak >= options.confirm.max(1) && cooled {
            self.last_move = Some(now);
            self.candidate = None;
            self.streak = 0;
            return true;
        }
        false
    }

    /// Records a move of another kind made at `now`: the cooldown starts over and the
    /// candidate is forgotten (the loads it was planned from are about to change).
    pub fn note_move(&mut self, now: Instant) {
        self.last_move = Some(now);
        self.reset();
    }

    /// Forgets the candidate (this node stopped leading the metadata group).
    pub fn reset(&mut self) {
        self.candidate = None;
        self.streak = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{GroupLoad, LedGroup};

    fn node(id: u64, cpus: u32, cpu: f64, led: &[(GroupId, f64)]) -> NodeLoad {
        NodeLoad {
            node: id,
            cpus,
            cpu,
            waiting: 0.0,
            busy: cpu / f64::from(cpus),
            pressure: 0.0,
            led: led
                .iter()
                .map(|(g, c)| LedGroup {
                    load: GroupLoad {
                        group: *g,
                        commands: *c,
                        bytes: c * 100.0,
                        shards: Vec::new(),
                    },
                    term: 1,
                    voters: vec![1, 2, 3],
                })
                .collect(),
        }
    }

    #[test]
    fn the_busiest_node_hands_a_partition_to_the_idlest_voter() {
        let loads = [
            node(1, 1, 1.8, &[(1, 3000.0), (4, 3000.0), (7, 10.0)]),
            node(2, 2, 0.4, &[(2, 0.0)]),
            node(3, 1, 0.3, &[(3, 0.0)]),
        ];
        let p = plan(&loads, &RebalanceOptions::default(), &[]);
        let m = p.planned.expect("a move");
        assert_eq!(m.from, 1);
        assert!([1, 4].contains(&m.group), "{m:?}");
        // Node 2 has two CPUs: it absorbs the share with less pressure than node 3.
        assert_eq!(m.to, 2, "{m:?}");
        assert!(m.pressure_after < m.pressure_before);
        // A settling partition is not moved; the other busy one is.
        let p2 = plan(&loads, &RebalanceOptions::default(), &[m.group]);
        let m2 = p2.planned.expect("the other partition");
        assert_ne!(m2.group, m.group);
        assert!(p.note.contains("less busy"), "{}", p.note);
    }

    #[test]
    fn a_node_on_a_busy_shared_cpu_hands_work_to_one_with_idle_time() {
        // Node 1 shares its CPU with a neighbour; nodes 2 and 3 share one that is 40% idle.
        let mut starved = node(1, 1, 0.7, &[(1, 1000.0), (4, 1000.0), (7, 1000.0)]);
        starved.busy = 1.0;
        for g in &mut starved.led {
            g.voters = vec![1, 2];
        }
        let mut follower = node(2, 1, 0.45, &[]);
        follower.busy = 0.6;
        let mut other = node(3, 1, 0.15, &[]);
        other.busy = 0.6;
        let loads = [starved.clone(), follower.clone(), other.clone()];
        let m = plan(&loads, &RebalanceOptions::default(), &[])
            .planned
            .expect("a move to the only other voter");
        assert_eq!((m.from, m.to), (1, 2));
        // 0.6 + 0.7 / 3 against 1.0.
        assert!((m.pressure_after - 0.833).abs() < 0.01, "{m:?}");
        assert!(m.reason.contains("100% busy"), "{}", m.reason);
        // A target whose CPU is nearly always busy gains nothing.
        follower.busy = 0.95;
        let loads = [starved, follower, other];
        assert_eq!(
            plan(&loads, &RebalanceOptions::default(), &[]).planned,
            None
        );
    }

    #[test]
    fn idle_balanced_and_single_clusters_stay_put() {
        let options = RebalanceOptions::default();
        let idle = [node(1, 1, 0.2, &[(1, 50.0)]), node(2, 1, 0.0, &[])];
        assert!(plan(&idle, &options, &[]).note.starts_with("idle"));
        let balanced = [
            node(1, 1, 0.9, &[(1, 1000.0)]),
            node(2, 1, 0.8, &[(2, 900.0)]),
            node(3, 1, 0.85, &[(3, 950.0)]),
        ];
        let p = plan(&balanced, &options, &[]);
        assert_eq!(p.planned, None, "{p:?}");
        assert!(p.note.starts_with("balanced"), "{p:?}");
        // One hot partition alone: moving it only moves the hot spot.
        let one = [node(1, 1, 1.5, &[(1, 5000.0)]), node(2, 1, 0.3, &[])];
        assert_eq!(plan(&one, &options, &[]).planned, None);
        assert!(plan(&one[..1], &options, &[]).note.contains("single"));
    }

    #[test]
    fn a_move_needs_the_same_plan_several_rounds_and_a_cooldown() {
        let options = RebalanceOptions {
            confirm: 3,
            cooldown: Duration::from_secs(10),
            ..Default::default()
        };
        let m = PlannedMove {
            group: 4,
            from: 1,
            to: 2,
            pressure_before: 1.8,
            pressure_after: 1.0,
            reason: String::new(),
        };
        let other = PlannedMove { to: 3, ..m.clone() };
        let mut h = Hysteresis::default();
        let t = Instant::now();
        assert!(!h.decide(Some(&m), &options, t));
        assert!(!h.decide(Some(&m), &options, t));
        // A different plan restarts the count.
        assert!(!h.decide(Some(&other), &options, t));
        assert!(!h.decide(Some(&m), &options, t));
        assert!(!h.decide(None, &options, t));
        for _ in 0..2 {
            assert!(!h.decide(Some(&m), &options, t));
        }
        assert!(h.decide(Some(&m), &options, t));
        // Within the cooldown nothing moves, however often it is planned.
        for _ in 0..5 {
            assert!(!h.decide(Some(&other), &options, t + Duration::from_secs(5)));
        }
        assert!(h.decide(Some(&other), &options, t + Duration::from_secs(11)));
    }

    #[test]
    fn moves_are_kept_newest_last_and_settle() {
        let mut leaders = Leaders::default();
        for i in 0..40u64 {
            let m = PlannedMove {
                group: i % 8 + 1,
                from: 1,
                to: 2,
                pressure_before: 1.0,
                pressure_after: 0.5,
                reason: format!("move {i}"),
            };
            leaders = apply(&leaders, &m, 1_000 * i);
        }
        assert_eq!(leaders.moves.len(), Leaders::KEPT_MOVES);
        assert_eq!(
            leaders.moves.last().map(|m| m.reason.as_str()),
            Some("move 39")
        );
        assert_eq!(leaders.preferred.len(), 8);
        let recent = settling(&leaders, 39_500, Duration::from_secs(2));
        assert_eq!(recent, vec![7, 8], "{recent:?}");
    }
}
