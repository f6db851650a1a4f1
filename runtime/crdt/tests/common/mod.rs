//! Shared by the property tests: strategies for random operations of each kind and random
//! histories (operations by three replicas, interleaved with full-state syncs between them),
//! and a runner that plays a history and keeps every delta it produced.

use cella_crdt::{Crdt, Kind, Op};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The replica ids of a history.
pub const REPLICAS: [&str; 3] = ["r0", "r1", "r2"];

/// One step of a history.
#[derive(Clone, Debug)]
pub enum Event {
    /// Replica `.0` applies the operation.
    Apply(usize, Op),
    /// Replica `.1` merges replica `.0`'s full state.
    Sync(usize, usize),
}

/// A small JSON value, so that operations meet on the same elements.
pub fn element() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0i64..4).prop_map(Value::from),
        prop::sample::select(vec!["x", "y"]).prop_map(Value::from),
        Just(json!({"b": 1, "a": [true, null]})),
    ]
}

/// A random operation that fits `kind` (for `ORMap`, keys of fixed kinds plus one key whose
/// kind replicas choose concurrently).
pub fn op(kind: Kind) -> BoxedStrategy<Op> {
    let update = |key: &'static str, op: BoxedStrategy<Op>| {
        op.prop_map(move |op| Op::Update(key.to_string(), Box::new(op)))
    };
    match kind {
        Kind::GCounter => (0u64..100).prop_map(Op::Increment).boxed(),
        Kind::PNCounter => prop_oneof![
            (0u64..100).prop_map(Op::Increment),
            (0u64..100).prop_map(Op::Decrement),
        ]
        .boxed(),
        Kind::GSet => element().prop_map(Op::Add).boxed(),
        Kind::ORSet => prop_oneof![
            4 => element().prop_map(Op::Add),
            3 => element().prop_map(Op::Remove),
            1 => Just(Op::Clear),
        ]
        .boxed(),
        Kind::LWWRegister => (element(), 0u64..20)
            .prop_map(|(value, timestamp)| Op::Set { value, timestamp })
            .boxed(),
        Kind::Flag => prop_oneof![
            3 => Just(Op::Enable),
            2 => Just(Op::Disable),
            1 => Just(Op::Clear),
        ]
        .boxed(),
        Kind::Vote => any::<bool>().prop_map(Op::Vote).boxed(),
        Kind::ORMap => {
            let nested = prop_oneof![
                3 => update("x", op(Kind::PNCounter)),
                1 => Just(Op::Delete("x".into())),
            ]
            .boxed();
            let either = prop_oneof![Just(Op::Increment(1)), Just(Op::Enable)].boxed();
            prop_oneof![
                3 => update("counter", op(Kind::PNCounter)),
                3 => update("set", op(Kind::ORSet)),
                2 => update("flag", op(Kind::Flag)),
                2 => update("register", op(Kind::LWWRegister)),
                1 => update("vote", op(Kind::Vote)),
                2 => update("map", nested),
                1 => update("either", either),
                2 => prop::sample::select(vec!["counter", "set", "flag", "map", "either"])
                    .prop_map(|key| Op::Delete(key.into())),
                1 => Just(Op::Clear),
            ]
            .boxed()
        }
    }
}

/// A random history of up to `len` events for `kind`, mostly operations.
pub fn history(kind: Kind, len: usize) -> impl Strategy<Value = Vec<Event>> {
    let event = prop_oneof![
        4 => (0..REPLICAS.len(), op(kind)).prop_map(|(replica, op)| Event::Apply(replica, op)),
        1 => (0..REPLICAS.len(), 0..REPLICAS.len()).prop_map(|(from, to)| Event::Sync(from, to)),
    ];
    prop::collection::vec(event, 0..len)
}

/// The outcome of a history: each replica's state and every delta, in the order made.
pub struct Played {
    pub states: Vec<Crdt>,
    #[allow(dead_code, reason = "laws.rs reads the deltas, semantics.rs does not")]
    pub deltas: Vec<Crdt>,
}

/// Plays `events` on replicas that start from `start`. An operation that does not fit (an
/// `ORMap` key created with another kind elsewhere) is skipped, as the host would refuse it.
pub fn play_from(start: &Crdt, events: &[Event]) -> Played {
    let mut states = vec![start.clone(); REPLICAS.len()];
    let mut deltas = Vec::new();
    for event in events {
        match event {
            Event::Apply(replica, op) => {
                if let Ok(delta) = states[*replica].apply(REPLICAS[*replica], op) {
                    deltas.push(delta);
                }
            }
            Event::Sync(from, to) => {
                let state = states[*from].clone();
                states[*to].merge(&state).unwrap();
            }
        }
    }
    Played { states, deltas }
}

/// Plays `events` on empty replicas of `kind`.
pub fn play(kind: Kind, events: &[Event]) -> Played {
    play_from(&Crdt::new(kind), events)
}

/// The join of `a` and `b`.
pub fn join(a: &Crdt, b: &Crdt) -> Crdt {
    let mut joined = a.clone();
    joined.merge(b).unwrap();
    joined
}

/// The join of every state.
pub fn join_all(kind: Kind, states: &[Crdt]) -> Crdt {
    states.iter().fold(Crdt::new(kind), |all, s| join(&all, s))
}
