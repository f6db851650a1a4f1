//! What each kind keeps of every replica's operations, property-tested: counters sum every
//! increment and decrement; a grow-only set is the union of the adds; an add concurrent with
//! a remove survives it (sets, map keys), as does an enable concurrent with a disable; removes
//! that saw every add win; one replica at a time behaves like a plain set; the last writer
//! wins a register; each replica's last vote counts.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use cella_crdt::{Crdt, Element, Kind, Op};
use common::{Event, REPLICAS, element, history, join_all, op, play, play_from};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The state every replica holds after a random history and a full exchange.
fn converged(kind: Kind, events: &[Event]) -> Crdt {
    join_all(kind, &play(kind, events).states)
}

/// Operations of `kind` by one replica, without syncs.
fn ops(kind: Kind) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(kind), 0..12)
}

/// Events applying `ops` as `replica`.
fn by(replica: usize, ops: impl IntoIterator<Item = Op>) -> Vec<Event> {
    ops.into_iter()
        .map(|op| Event::Apply(replica, op))
        .collect()
}

/// Whether `op` adds or removes `value` (directly or by clearing).
fn touches(op: &Op, value: &Value) -> bool {
    match op {
        Op::Add(v) | Op::Remove(v) => Element::new(v) == Element::new(value),
        Op::Clear => true,
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn counters_keep_every_increment_and_decrement(
        (kind, events) in prop::sample::select(vec![Kind::GCounter, Kind::PNCounter])
            .prop_flat_map(|kind| (Just(kind), history(kind, 60))),
    ) {
        let mut expected: i128 = 0;
        for event in &events {
            match event {
                Event::Apply(_, Op::Increment(n)) => expected += i128::from(*n),
                Event::Apply(_, Op::Decrement(n)) => expected -= i128::from(*n),
                _ => {}
            }
        }
        prop_assert_eq!(converged(kind, &events).value(), json!(expected));
    }

    #[test]
    fn a_gset_is_the_union_of_the_adds(events in history(Kind::GSet, 40)) {
        let mut expected = BTreeSet::new();
        for event in &events {
            if let Event::Apply(_, Op::Add(v)) = event {
                expected.insert(Element::new(v));
            }
        }
        let expected: Vec<Value> = expected.iter().map(Element::value).collect();
        prop_assert_eq!(converged(Kind::GSet, &events).value(), Value::Array(expected));
    }

    #[test]
    fn an_add_survives_a_concurrent_remove(
        base in history(Kind::ORSet, 30),
        value in element(),
        after_add in ops(Kind::ORSet),
        after_remove in ops(Kind::ORSet),
        elsewhere in ops(Kind::ORSet),
    ) {
        let common = join_all(Kind::ORSet, &play(Kind::ORSet, &base).states);
        let mut events = by(0, [Op::Add(value.clone())]);
        events.extend(by(0, after_add.into_iter().filter(|op| !touches(op, &value))));
        events.extend(by(1, [Op::Remove(value.clone())]));
        events.extend(by(1, after_remove));
        events.extend(by(2, elsewhere));
        let all = join_all(Kind::ORSet, &play_from(&common, &events).states);
        prop_assert!(all.value().as_array().unwrap().contains(&value));
    }

    #[test]
    fn a_remove_that_saw_every_add_wins(
        base in history(Kind::ORSet, 30),
        value in element(),
        elsewhere in ops(Kind::ORSet),
    ) {
        let common = join_all(Kind::ORSet, &play(Kind::ORSet, &base).states);
        let mut events = by(1, [Op::Remove(value.clone())]);
        let adds_other = |op: &Op| !matches!(op, Op::Add(v) if Element::new(v) == Element::new(&value));
        events.extend(by(2, elsewhere.into_iter().filter(adds_other)));
        let all = join_all(Kind::ORSet, &play_from(&common, &events).states);
        prop_assert!(!all.value().as_array().unwrap().contains(&value));
    }

    #[test]
    fn one_replica_at_a_time_is_a_plain_set(
        steps in prop::collection::vec((0..REPLICAS.len(), op(Kind::ORSet)), 0..40),
    ) {
        // Every operation is followed by a full exchange: nothing is concurrent.
        let mut events = Vec::new();
        let mut model = BTreeSet::new();
        for (replica, op) in steps {
            match &op {
                Op::Add(v) => { model.insert(Element::new(v)); }
                Op::Remove(v) => { model.remove(&Element::new(v)); }
                _ => model.clear(),
            }
            events.push(Event::Apply(replica, op));
            for to in 0..REPLICAS.len() {
                events.push(Event::Sync(replica, to));
            }
        }
        let p = play(Kind::ORSet, &events);
        let expected: Vec<Value> = model.iter().map(Element::value).collect();
        for state in &p.states {
            prop_assert_eq!(state.value(), Value::Array(expected.clone()));
        }
    }

    #[test]
    fn an_enable_survives_a_concurrent_disable(
        base in history(Kind::Flag, 30),
        after_disable in ops(Kind::Flag),
    ) {
        let common = join_all(Kind::Flag, &play(Kind::Flag, &base).states);
        let mut events = by(0, [Op::Enable]);
        events.extend(by(1, [Op::Disable]));
        events.extend(by(1, after_disable));
        let all = join_all(Kind::Flag, &play_from(&common, &events).states);
        prop_assert_eq!(all.value(), json!(true));
    }

    #[test]
    fn the_last_writer_wins_a_register(
        writes in prop::collection::vec((0..REPLICAS.len(), element(), 0u64..20), 0..20),
    ) {
        // The model: each replica raises a timestamp not above its own last one; the largest
        // (timestamp, replica, value) wins.
        let mut last: BTreeMap<usize, u64> = BTreeMap::new();
        let mut winner: Option<(u64, &str, Element)> = None;
        let mut events = Vec::new();
        for (replica, value, timestamp) in writes {
            let timestamp = match last.get(&replica) {
                Some(&prev) if prev >= timestamp => prev + 1,
                _ => timestamp,
            };
            last.insert(replica, timestamp);
            let write = (timestamp, REPLICAS[replica], Element::new(&value));
            if winner.as_ref().is_none_or(|w| write > *w) {
                winner = Some(write);
            }
            events.push(Event::Apply(replica, Op::Set { value, timestamp }));
        }
        let expected = winner.map_or(Value::Null, |(_, _, value)| value.value());
        prop_assert_eq!(converged(Kind::LWWRegister, &events).value(), expected);
    }

    #[test]
    fn each_replicas_last_vote_counts(events in history(Kind::Vote, 40)) {
        let mut last = BTreeMap::new();
        for event in &events {
            if let Event::Apply(replica, Op::Vote(vote)) = event {
                last.insert(*replica, *vote);
            }
        }
        let votes_for = last.values().filter(|v| **v).count();
        let expected = json!({
            "votes_for": votes_for,
            "voters": last.len(),
            "majority": votes_for * 2 > last.len(),
        });
        prop_assert_eq!(converged(Kind::Vote, &events).value(), expected);
    }

    #[test]
    fn a_map_key_updated_concurrently_with_its_delete_stays(
        base in history(Kind::ORMap, 30),
        after_delete in ops(Kind::ORMap),
    ) {
        let common = join_all(Kind::ORMap, &play(Kind::ORMap, &base).states);
        let mut events = by(0, [Op::Update("k".into(), Box::new(Op::Increment(1)))]);
        events.extend(by(1, [Op::Delete("k".into()), Op::Clear]));
        events.extend(by(1, after_delete));
        let all = join_all(Kind::ORMap, &play_from(&common, &events).states);
        prop_assert!(all.value().get("k").is_some());
    }

    #[test]
    fn a_map_counter_keeps_every_update(events in history(Kind::ORMap, 40)) {
        // Deleting a key hides its counter; the value stays and is merged on.
        let mut expected: i128 = 0;
        for event in &events {
            if let Event::Apply(_, Op::Update(key, op)) = event {
                match (key.as_str(), op.as_ref()) {
                    ("counter", Op::Increment(n)) => expected += i128::from(*n),
                    ("counter", Op::Decrement(n)) => expected -= i128::from(*n),
                    _ => {}
                }
            }
        }
        let mut all = converged(Kind::ORMap, &events);
        all.apply("r0", &Op::Update("counter".into(), Box::new(Op::Increment(0)))).unwrap();
        prop_assert_eq!(all.value()["counter"].clone(), json!(expected));
    }
}
