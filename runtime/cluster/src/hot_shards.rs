//! Placement that follows load, second part: hot shards move between partitions.
//!
//! Leadership moves ([`crate::rebalance`]) place whole partitions; when one partition takes
//! most of the writes, handing it to another node only moves the heat. So the loop also
//! evens the partitions' write rates by moving shards: from each leader's load report (a
//! partition's appends per second and its hottest shards), [`plan_shards`] takes the
//! partition with the most writes and, while it takes at least
//! [`RebalanceOptions::shard_imbalance`] times the mean (and at least
//! [`RebalanceOptions::min_shard_writes`]), and while its leader is the bottleneck (it uses
//! [`RebalanceOptions::shard_min_cpu`] of its CPUs itself), moves its hottest shard that fits
//! into the partition with the fewest writes among those whose leaders' CPUs are clearly less
//! busy ([`RebalanceOptions::min_gain`]; of equal writes, the least busy). Splitting a
//! partition adds work on every replica (more raft entries, each with fewer appends), so it
//! is done only where it relieves a leader that cannot keep up.
//! A shard *fits* when the target, with it, still takes no more than the source without it:
//! the gap between the two only narrows, so moving the shard back could never pay and nothing
//! flaps. A partition whose writes are one shard's (one hot key) is therefore left alone: no
//! move would help. At most [`RebalanceOptions::max_shard_moves`] shards move in one round,
//! a shard moved within [`RebalanceOptions::settle`] stays put, and a plan is made only after
//! the same partition has been the one to relieve [`RebalanceOptions::confirm`] rounds in a
//! row, at most once per
//! [`RebalanceOptions::cooldown`] (the rates then settle on the new layout before the next).
//! Each move is [`crate::Cluster::move_shard`]'s: a live handoff that loses and duplicates no
//! command.

use std::collections::BTreeMap;

use crate::{
    GroupId,
    load::{NodeLoad, ShardLoad},
    rebalance::RebalanceOptions,
};

/// A shard worth moving takes at least this fraction of its partition's writes.
const MIN_SHARE: f64 = 0.01;
/// Leaders' pressures closer than this are alike when choosing a target.
const TIE: f64 = 0.05;

/// One shard move a plan proposes.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedShardMove {
    pub shard: u32,
    pub from: GroupId,
    pub to: GroupId,
    /// The shard's appends per second.
    pub writes: f64,
    pub reason: String,
}

/// What [`plan_shards`] found.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardPlan {
    /// The moves to make, in order.
    pub moves: Vec<PlannedShardMove>,
    /// Why there are no (more) moves.
    pub note: String,
}

impl ShardPlan {
    /// What the plan is about, for the hysteresis: the partition its first move relieves
    /// (its targets may differ between rounds that see the same imbalance, by noise in the
    /// leaders' pressures).
    pub fn key(&self) -> Option<(u64, u64)> {
        self.moves.first().map(|m| (m.from, 0))
    }
}

/// A partition as the reports show it.
struct Partition {
    writes: f64,
    shards: Vec<ShardLoad>,
    /// Its leader: the node, its pressure and the part of its CPUs it uses itself.
    leader: u64,
    pressure: f64,
    own_use: f64,
    term: u64,
}

/// The shard moves that even out the partitions' writes in `loads` (the reports of every
/// node), leaving out the shards in `settling`.
pub fn plan_shards(loads: &[NodeLoad], options: &RebalanceOptions, settling: &[u32]) -> ShardPlan {
    let mut parts: BTreeMap<GroupId, Partition> = BTreeMap::new();
    for load in loads {
        for led in &load.led {
            // Two nodes may both report leading a partition while its leadership moves: the
            // later term's report is the one that counts.
            if parts
                .get(&led.load.group)
                .is_some_and(|p| p.term > led.term)
            {
                continue;
            }
            parts.insert(
                led.load.group,
                Partition {
                    writes: led.load.commands,
                    shards: led.load.shards.clone(),
                    leader: load.node,
                    pressure: load.pressure(),
                    own_use: load.cpu / f64::from(load.cpus.max(1)),
                    term: led.term,
                },
            );
        }
    }
    let mut plan = ShardPlan::default();
    if parts.len() < 2 {
        plan.note = "fewer than two partitions report a leader: nothing to even out".into();
        return plan;
    }
    let mut note = String::new();
    while plan.moves.len() < options.max_shard_moves {
        let mean = parts.values().map(|p| p.writes).sum::<f64>() / parts.len() as f64;
        let Some((&from, hottest)) = parts
            .iter()
            .max_by(|a, b| a.1.writes.total_cmp(&b.1.writes).then(b.0.cmp(a.0)))
        else {
            break;
        };
        let source = hottest.writes;
        let ratio = source / mean.max(f64::MIN_POSITIVE);
        if source < options.min_shard_writes {
            note = format!(
                "idle: the busiest partition, {from}, takes {source:.0} writes/s (shards move \
                 from {:.0})",
                options.min_shard_writes
            );
            break;
        }
        if source < mean * options.shard_imbalance {
            note = format!(
                "even: the busiest partition, {from}, takes {source:.0} writes/s, {ratio:.2}× \
                 the mean of {mean:.0} (shards move from {:.2}×)",
                options.shard_imbalance
            );
            break;
        }
        // Pressures within [`TIE`] of each other are alike: the lower partition is taken.
        let by_pressure = |a: f64, b: f64| {
            if (a - b).abs() <= TIE {
                std::cmp::Ordering::Equal
            } else {
                a.total_cmp(&b)
            }
        };
        // Splitting a partition adds per-entry and replication work on every replica: it pays
        // only when the leader is the bottleneck (busy with its own work, not a neighbour's)
        // and the shard's work lands on CPUs clearly less busy.
        if hottest.own_use < options.shard_min_cpu {
            note = format!(
                "partition {from} takes {source:.0} writes/s, {ratio:.2}× the mean, but its \
                 leader, node {}, uses only {:.0}% of its CPUs itself (shards move from \
                 {:.0}%): splitting the partition would add work without relieving a bottleneck",
                hottest.leader,
                hottest.own_use * 100.0,
                options.shard_min_cpu * 100.0
            );
            break;
        }
        let roomy = |p: &Partition| p.pressure <= hottest.pressure * (1.0 - options.min_gain);
        let Some((&to, coolest)) = parts
            .iter()
            .filter(|(g, p)| **g != from && roomy(p))
            .min_by(|a, b| {
                a.1.writes
                    .total_cmp(&b.1.writes)
                    .then(by_pressure(a.1.pressure, b.1.pressure))
                    .then(a.0.cmp(b.0))
            })
        else {
            note = format!(
                "partition {from} takes {source:.0} writes/s, {ratio:.2}× the mean, but no \
                 other partition's leader has CPUs {:.0}% less busy than node {}'s ({:.2})",
                options.min_gain * 100.0,
                hottest.leader,
                hottest.pressure
            );
            break;
        };
        let gap = source - coolest.writes;
        let fits = |s: &&ShardLoad| {
            !settling.contains(&s.shard)
                && !plan.moves.iter().any(|m| m.shard == s.shard)
                && s.commands >= source * MIN_SHARE
                && 2.0 * s.commands <= gap
        };
        let Some(shard) = hottest
            .shards
            .iter()
            .filter(fits)
            .max_by(|a, b| a.commands.total_cmp(&b.commands))
            .cloned()
        else {
            let top = hottest.shards.first().map_or(String::new(), |s| {
                format!(" (its hottest shard, {}, takes {:.0})", s.shard, s.commands)
            });
            note = format!(
                "partition {from} takes {source:.0} writes/s, {ratio:.2}× the mean, but none of \
                 its shards fits in partition {to} ({:.0} writes/s) without making it the \
                 hotter one{top}",
                coolest.writes
            );
            break;
        };
        let reason = format!(
            "partition {from} takes {source:.0} writes/s, {ratio:.2}× the partitions' mean of \
             {mean:.0}; shard {} ({:.0} writes/s) goes to partition {to} ({:.0} writes/s)",
            shard.shard, shard.commands, coolest.writes
        );
        plan.moves.push(PlannedShardMove {
            shard: shard.shard,
            from,
            to,
            writes: shard.commands,
            reason,
        });
        // The rates the next pick sees: the shard's writes counted at its target.
        if let Some(p) = parts.get_mut(&from) {
            p.writes -= shard.commands;
            p.shards.retain(|s| s.shard != shard.shard);
        }
        if let Some(p) = parts.get_mut(&to) {
            p.writes += shard.commands;
            p.shards.push(shard);
        }
    }
    plan.note = if note.is_empty() {
        format!(
            "{} shard(s) of the busiest partitions move to the least busy",
            plan.moves.len()
        )
    } else if plan.moves.is_empty() {
        note
    } else {
        format!("{} shard(s) move; then {note}", plan.moves.len())
    };
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{GroupLoad, LedGroup};

    /// A node leading `led`: (partition, [(shard, writes/s)]).
    fn node(id: u64, busy: f64, led: &[(GroupId, &[(u32, f64)])]) -> NodeLoad {
        NodeLoad {
            node: id,
            cpus: 1,
            cpu: busy,
            busy,
            led: led
                .iter()
                .map(|(g, shards)| LedGroup {
                    load: GroupLoad {
                        group: *g,
                        commands: shards.iter().map(|s| s.1).sum(),
                        bytes: 0.0,
                        shards: shards
                            .iter()
                            .map(|(shard, commands)| ShardLoad {
                                shard: *shard,
                                commands: *commands,
                            })
                            .collect(),
                    },
                    term: 1,
                    voters: vec![1, 2, 3],
                })
                .collect(),
            ..NodeLoad::default()
        }
    }

    #[test]
    fn a_hot_partition_hands_shards_to_the_coolest_until_the_gap_closes() {
        // Partition 1 takes 2,000 writes/s over four shards; 2 and 3 take little.
        let shards: &[(u32, f64)] = &[(8, 800.0), (16, 600.0), (24, 400.0), (32, 200.0)];
        let loads = [
            node(1, 0.9, &[(1, shards)]),
            node(2, 0.2, &[(2, &[(9, 50.0)])]),
            node(3, 0.1, &[(3, &[(10, 50.0)])]),
        ];
        let plan = plan_shards(&loads, &RebalanceOptions::default(), &[]);
        let moved: Vec<(u32, GroupId, GroupId)> =
            plan.moves.iter().map(|m| (m.shard, m.from, m.to)).collect();
        // 800 goes to 3 (of the two coolest, the one whose leader is less busy): 1,200
        // against 850. Then 1 against 2 (50): 600 does not fit (650 > 600), 400 does. The
        // partitions then take 800, 450 and 850: even (under 1.5× the mean of 700).
        assert_eq!(moved, [(8, 1, 3), (24, 1, 2)], "{plan:?}");
        assert!(plan.note.contains("even"), "{}", plan.note);
        assert!(plan.moves[0].reason.contains("shard 8"), "{plan:?}");
        assert_eq!(plan.key(), Some((1, 0)));
        // A shard that moved recently stays put.
        let settled = plan_shards(&loads, &RebalanceOptions::default(), &[8]);
        assert_eq!(settled.moves[0].shard, 16, "{settled:?}");
    }

    #[test]
    fn one_hot_shard_an_even_load_or_an_idle_cluster_moves_nothing() {
        let options = RebalanceOptions::default();
        // One shard takes the partition's writes: moving it only moves the heat.
        let hot_key = [
            node(1, 0.9, &[(1, &[(8, 3000.0)])]),
            node(2, 0.1, &[(2, &[])]),
        ];
        let plan = plan_shards(&hot_key, &options, &[]);
        assert!(plan.moves.is_empty(), "{plan:?}");
        assert!(plan.note.contains("hottest shard, 8"), "{}", plan.note);
        // Even.
        let even = [
            node(1, 0.9, &[(1, &[(8, 500.0), (16, 500.0)])]),
            node(2, 0.9, &[(2, &[(9, 600.0), (17, 400.0)])]),
        ];
        let plan = plan_shards(&even, &options, &[]);
        assert!(
            plan.moves.is_empty() && plan.note.contains("even"),
            "{plan:?}"
        );
        // Idle.
        let idle = [
            node(1, 0.1, &[(1, &[(8, 50.0), (16, 50.0)])]),
            node(2, 0.1, &[(2, &[])]),
        ];
        let plan = plan_shards(&idle, &options, &[]);
        assert!(
            plan.moves.is_empty() && plan.note.contains("idle"),
            "{plan:?}"
        );
        // One partition.
        let single = [node(1, 0.9, &[(1, &[(8, 5000.0), (16, 5000.0)])])];
        assert!(plan_shards(&single, &options, &[]).moves.is_empty());
    }

    #[test]
    fn moves_stop_at_the_round_limit_and_a_plan_never_moves_its_shards_back() {
        let many: Vec<(u32, f64)> = (0..16).map(|s| (s * 8, 100.0)).collect();
        let loads = [node(1, 0.9, &[(1, &many)]), node(2, 0.1, &[(2, &[])])];
        let options = RebalanceOptions {
            max_shard_moves: 3,
            ..RebalanceOptions::default()
        };
        let plan = plan_shards(&loads, &options, &[]);
        assert_eq!(plan.moves.len(), 3, "{plan:?}");
        // Without the limit: shards move until partition 1 takes under 1.5× the mean of 800.
        let all = plan_shards(&loads, &RebalanceOptions::default(), &[]);
        assert_eq!(all.moves.len(), 5, "{all:?}");
        assert!(
            all.moves.iter().all(|m| (m.from, m.to) == (1, 2)),
            "{all:?}"
        );
        // The layout after those moves plans nothing: no shard goes back.
        let moved: Vec<u32> = all.moves.iter().map(|m| m.shard).collect();
        let (stay, went): (Vec<_>, Vec<_>) = many.iter().partition(|(s, _)| !moved.contains(s));
        let after = [node(1, 0.9, &[(1, &stay)]), node(2, 0.5, &[(2, &went)])];
        assert!(
            plan_shards(&after, &RebalanceOptions::default(), &[])
                .moves
                .is_empty()
        );
    }

    #[test]
    fn a_leader_busy_with_a_neighbours_work_or_no_roomier_target_moves_nothing() {
        let shards: &[(u32, f64)] = &[(8, 800.0), (16, 600.0), (24, 400.0)];
        // Node 1's CPU is busy, but mostly with another process's work.
        let mut crowded = node(1, 1.0, &[(1, shards)]);
        crowded.cpu = 0.4;
        let loads = [crowded, node(2, 0.2, &[(2, &[])])];
        let plan = plan_shards(&loads, &RebalanceOptions::default(), &[]);
        assert!(plan.moves.is_empty(), "{plan:?}");
        assert!(plan.note.contains("uses only 40%"), "{}", plan.note);
        // Node 1 is busy with its own work, but the other leaders are as busy.
        let loads = [node(1, 0.9, &[(1, shards)]), node(2, 0.85, &[(2, &[])])];
        let plan = plan_shards(&loads, &RebalanceOptions::default(), &[]);
        assert!(plan.moves.is_empty(), "{plan:?}");
        assert!(
            plan.note.contains("less busy than node 1's"),
            "{}",
            plan.note
        );
    }

    #[test]
    fn the_later_terms_report_counts_for_a_partition() {
        let mut old = node(1, 0.9, &[(1, &[(8, 900.0), (16, 900.0)])]);
        old.led[0].term = 1;
        let mut new = node(2, 0.1, &[(1, &[(8, 10.0)])]);
        new.led[0].term = 2;
        new.led.push(node(2, 0.1, &[(2, &[])]).led.remove(0));
        let plan = plan_shards(&[old, new], &RebalanceOptions::default(), &[]);
        assert!(plan.moves.is_empty(), "{plan:?}");
    }
}
