//! A deterministic simulation of what the node does with [`Replicas`]: 3 to 5 nodes run random
//! operations of every kind, send their queued deltas each round (requeueing what is not
//! confirmed) and exchange digests and the states of differing buckets, over a network that
//! drops, duplicates, delays and reorders every message, while nodes crash and restart either
//! with their stored replicas (durable) or empty under a new replica id (ephemeral). Everything
//! random comes from a seed that proptest picks, so a failing case replays exactly.
//!
//! After a lossless quiescence, every node must hold the same states, and those states must keep
//! exactly the operations whose information reached a surviving replica. A model tracks, beside
//! every message and every replica, which operations it carries; from it the checks derive every
//! counter total, add-wins for sets and flags, a register's last write and each replica's last
//! vote, and that every acknowledged write (made on a node that kept its replicas, or confirmed
//! by one) is kept. A run that also delivers late copies of messages, and quiesces in another
//! order, must end in the same states; and anti-entropy alone, every delta lost, converges too.

#[allow(
    dead_code,
    reason = "this simulation uses only the operation strategies"
)]
mod common;
#[path = "common/sim.rs"]
mod sim;

use std::collections::{BTreeMap, BTreeSet};

use cella_crdt::{Address, Crdt, Element, Kind, Op};
use common::op;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::json;
use sim::{Done, ENTITIES, Ghost, Net, Sim, Stats, all_buckets, entity};

/// Rounds of lossless gossip and anti-entropy within which the nodes must converge.
const MAX_ROUNDS: usize = 6;

/// A quarter of the messages lost, some delivered twice.
const LOSSY: Net = Net {
    drop: 25,
    dup: 15,
    deltas_lost: false,
};

/// Every delta and confirmation lost: anti-entropy alone.
const DELTAS_LOST: Net = Net {
    drop: 10,
    dup: 10,
    deltas_lost: true,
};

/// Quiescence, and what the checks compare.
impl Sim {
    /// Delivers everything in flight, replies included (FIFO, or in the late copies' random
    /// order), then every late copy.
    fn drain(&mut self) {
        while !self.flight.is_empty() {
            let index = match &mut self.late {
                Some(late) => late.rng.below(self.flight.len()),
                None => 0,
            };
            let msg = self.flight.remove(index);
            self.handle(msg);
        }
        if let Some(late) = &mut self.late {
            for (to, epoch, items) in std::mem::take(&mut late.copies) {
                self.redeliver(to, epoch, &items);
            }
        }
    }

    /// Every node up, then lossless rounds of gossip and pairwise anti-entropy until every
    /// digest matches.
    fn quiesce(&mut self) {
        self.calm = true;
        for i in 0..self.nodes.len() {
            if !self.nodes[i].up {
                self.restart(i);
            }
        }
        for _ in 0..MAX_ROUNDS {
            self.drain();
            for i in 0..self.nodes.len() {
                self.time_out(i);
                self.gossip(i);
                self.drain();
            }
            for from in 0..self.nodes.len() {
                for to in self.peers(from) {
                    self.anti_entropy(from, to);
                    self.drain();
                }
            }
            let digest = self.nodes[0].replicas.digest();
            if self.nodes.iter().all(|n| n.replicas.digest() == digest) {
                return;
            }
        }
        panic!("the digests still differ after {MAX_ROUNDS} lossless rounds");
    }

    /// Every node's states, for comparing runs.
    fn outcome(&self) -> Vec<(String, Vec<(Address, Crdt)>)> {
        (0..self.nodes.len())
            .map(|i| {
                let states = self.states(i, &all_buckets());
                let states = states.into_iter().map(|it| (it.address, it.state));
                let id = self.nodes[i].replicas.replica_id().to_string();
                (id, states.collect())
            })
            .collect()
    }
}

/// Plays `ops` on `nodes` nodes with the schedule of `seed`, then quiesces.
fn run(nodes: usize, seed: u64, ops: &[(usize, Op)], net: Net, late: bool) -> Sim {
    let mut sim = Sim::new(nodes, seed, net, late);
    let mut next = 0;
    let mut steps = 0;
    while (next < ops.len() || steps < 4 * ops.len()) && steps < 50 * ops.len() + 100 {
        sim.step(ops, &mut next);
        steps += 1;
    }
    assert_eq!(next, ops.len(), "the schedule applied every operation");
    sim.quiesce();
    sim
}

/// Check 1: every node holds the same digest and the same state of every entity.
fn check_converged(sim: &Sim) {
    let first = &sim.nodes[0].replicas;
    for (i, node) in sim.nodes.iter().enumerate() {
        assert_eq!(node.replicas.digest(), first.digest(), "node {i}'s digest");
        for e in 0..ENTITIES {
            let (_, (t, k)) = entity(e);
            let (mine, theirs) = (node.replicas.get(&t, &k), first.get(&t, &k));
            assert_eq!(mine, theirs, "{t}/{k} on node {i} and node 0");
        }
    }
}

/// After lossless rounds, every queued delta was sent and confirmed: nothing waits.
fn check_settled(sim: &Sim) {
    for (i, node) in sim.nodes.iter().enumerate() {
        assert!(node.sent.is_empty(), "node {i} waits for confirmations");
        for peer in sim.peers(i) {
            let waiting = node.replicas.has_pending(peer as u64);
            assert!(!waiting, "node {i} still has deltas queued for {peer}");
        }
    }
}

/// The elements of an add-wins (or grow-only) state: a set's elements, a map's keys, `true`
/// for an enabled flag.
fn elements(state: Option<&Crdt>) -> BTreeSet<Element> {
    match state {
        Some(Crdt::GSet(s)) => s.elements().cloned().collect(),
        Some(Crdt::ORSet(s)) => s.elements().cloned().collect(),
        Some(Crdt::Flag(f)) if f.is_enabled() => BTreeSet::from([Element::new(&json!(true))]),
        Some(Crdt::ORMap(m)) => m.keys().map(|key| Element::new(&json!(key))).collect(),
        _ => BTreeSet::new(),
    }
}

/// What an operation adds (`(true, Some(element))`) or removes (`(false, None)` for every
/// element), in the terms of [`elements`].
fn add_or_remove(done: &Done) -> Option<(bool, Option<Element>)> {
    let key = |key: &String| Some(Element::new(&json!(key)));
    match &done.op {
        Op::Add(v) => Some((true, Some(Element::new(v)))),
        Op::Enable => Some((true, Some(Element::new(&json!(true))))),
        Op::Update(k, _) | Op::Create(k, ..) if !done.empty => Some((true, key(k))),
        Op::Remove(v) => Some((false, Some(Element::new(v)))),
        Op::Delete(k) => Some((false, key(k))),
        Op::Disable | Op::Clear => Some((false, None)),
        _ => None,
    }
}

/// Check 2: the converged states keep exactly the operations some surviving replica carries,
/// and those include every acknowledged write. Returns how many operations were forgotten
/// (made on an ephemeral node that lost them before they reached a surviving replica).
fn check_kept(sim: &Sim) -> usize {
    let kept: Vec<Ghost> = (0..ENTITIES)
        .map(|e| {
            let address = entity(e).1;
            let known = sim.nodes.iter().filter_map(|n| n.knows.get(&address));
            known.flatten().copied().collect()
        })
        .collect();
    let survives = |node: usize, epoch: u32| sim.nodes[node].epoch == epoch;
    for (id, done) in sim.log.iter().enumerate() {
        if survives(done.node, done.epoch) {
            assert!(
                kept[done.entity].contains(&id),
                "a write of a durable node is lost"
            );
        }
    }
    for &(id, node, epoch) in &sim.acked {
        if survives(node, epoch) {
            let confirmed = kept[sim.log[id].entity].contains(&id);
            assert!(confirmed, "a write that node {node} confirmed is lost");
        }
    }
    for (e, kept) in kept.iter().enumerate() {
        let (kind, (t, k)) = entity(e);
        let state = sim.nodes[0].replicas.get(&t, &k);
        let ops: Vec<(usize, &Done)> = sim
            .log
            .iter()
            .enumerate()
            .filter(|(_, d)| d.entity == e)
            .collect();
        let kept_ops = || ops.iter().filter(|(id, _)| kept.contains(id));
        // A replica's counter delta carries its running total and a vote its version: keeping
        // one of its operations keeps its earlier ones (of that sign).
        let mut last: BTreeMap<(&str, bool), usize> = BTreeMap::new();
        for &(id, done) in kept_ops() {
            let sign = matches!(done.op, Op::Decrement(_));
            last.insert((done.replica.as_str(), sign), id);
        }
        let covered = |id: usize, done: &Done, sign: bool| {
            last.get(&(done.replica.as_str(), sign))
                .is_some_and(|&l| id <= l)
        };
        match kind {
            Kind::GCounter | Kind::PNCounter => {
                let mut total: i128 = 0;
                for &(id, done) in &ops {
                    match done.op {
                        Op::Increment(n) if covered(id, done, false) => total += i128::from(n),
                        Op::Decrement(n) if covered(id, done, true) => total -= i128::from(n),
                        _ => {}
                    }
                }
                let value = state.as_ref().map_or(json!(0), Crdt::value);
                assert_eq!(value, json!(total), "{t}/{k}: the kept increments");
            }
            Kind::GSet | Kind::ORSet | Kind::Flag | Kind::ORMap => {
                let actual = elements(state.as_ref());
                let mut added = BTreeSet::new();
                for &(id, done) in kept_ops() {
                    let Some((true, Some(x))) = add_or_remove(done) else {
                        continue;
                    };
                    // Add wins: an element (or map key) added, and not removed by any later
                    // operation, kept or not, is in. (Map values are left to convergence.)
                    let removed_later = ops.iter().any(|&(j, d)| {
                        j > id
                            && match add_or_remove(d) {
                                Some((false, None)) => true,
                                Some((false, Some(y))) => y == x,
                                _ => false,
                            }
                    });
                    assert!(removed_later || actual.contains(&x), "{t}/{k} lost {x:?}");
                    added.insert(x);
                }
                assert!(
                    actual.is_subset(&added),
                    "{t}/{k} holds elements never kept"
                );
                if kind == Kind::GSet {
                    assert_eq!(actual, added, "{t}/{k}: a grow-only set keeps every add");
                }
            }
            Kind::LWWRegister => {
                let last_write = kept_ops().filter_map(|(_, d)| d.write.clone()).max();
                let current = match state {
                    Some(Crdt::LWWRegister(r)) => r.current().cloned(),
                    _ => None,
                };
                assert_eq!(current, last_write, "{t}/{k}: the last of the kept writes");
            }
            Kind::Vote => {
                let mut votes = BTreeMap::new();
                for &(_, done) in kept_ops() {
                    if let Op::Vote(v) = done.op {
                        votes.insert(done.replica.as_str(), v);
                    }
                }
                let Some(Crdt::Vote(vote)) = state else {
                    assert!(votes.is_empty(), "{t}/{k} lost its votes");
                    continue;
                };
                assert_eq!(vote.voters(), votes.len(), "{t}/{k}: the voters");
                for (replica, v) in votes {
                    assert_eq!(vote.vote_of(replica), Some(v), "{t}/{k}: {replica}'s vote");
                }
            }
        }
    }
    sim.log.len() - kept.iter().map(Ghost::len).sum::<usize>()
}

/// Node count, schedule seed, and operations on entities.
fn input() -> impl Strategy<Value = (usize, u64, Vec<(usize, Op)>)> {
    let entity_op = (0..ENTITIES).prop_flat_map(|e| (Just(e), op(entity(e).0)));
    (
        3usize..=5,
        any::<u64>(),
        prop::collection::vec(entity_op, 10..60),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn lossy_gossip_with_restarts_converges_and_keeps_acknowledged_writes(
        (nodes, seed, ops) in input(),
    ) {
        let sim = run(nodes, seed, &ops, LOSSY, false);
        check_converged(&sim);
        check_settled(&sim);
        check_kept(&sim);
    }

    #[test]
    fn late_copies_and_another_delivery_order_change_nothing((nodes, seed, ops) in input()) {
        let plain = run(nodes, seed, &ops, LOSSY, false);
        let copied = run(nodes, seed, &ops, LOSSY, true);
        prop_assert_eq!(plain.log.len(), copied.log.len());
        prop_assert_eq!(plain.outcome(), copied.outcome());
        check_converged(&copied);
        check_kept(&copied);
    }

    #[test]
    fn anti_entropy_alone_converges((nodes, seed, ops) in input()) {
        let sim = run(nodes, seed, &ops, DELTAS_LOST, false);
        prop_assert!(sim.acked.is_empty(), "no delta got through");
        check_converged(&sim);
        check_kept(&sim);
    }
}

#[test]
fn the_schedules_exercise_every_fault() {
    let mut runner = TestRunner::deterministic();
    let mut all = Stats::default();
    for _ in 0..24 {
        let (nodes, seed, ops) = input().new_tree(&mut runner).unwrap().current();
        let mut sim = run(nodes, seed, &ops, LOSSY, true);
        sim.stats.forgotten = check_kept(&sim);
        let s = sim.stats;
        all.applied += s.applied;
        all.lost += s.lost;
        all.duplicated += s.duplicated;
        all.durable_restarts += s.durable_restarts;
        all.ephemeral_restarts += s.ephemeral_restarts;
        all.late_copies += s.late_copies;
        all.forgotten += s.forgotten;
    }
    let every = [
        all.applied,
        all.lost,
        all.duplicated,
        all.durable_restarts,
        all.ephemeral_restarts,
        all.late_copies,
        all.forgotten,
    ];
    assert!(every.iter().all(|&n| n > 0), "{all:?}");
}
