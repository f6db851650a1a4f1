//! The [`Crdt`] enum over every kind, the [`Op`] enum of operations, and the three calls the
//! host needs: [`Crdt::apply`] (an operation as a replica → the delta to replicate),
//! [`Crdt::merge`] (a delta or a whole state in) and [`Crdt::value`] (a JSON view to read).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

use crate::{Error, Flag, GCounter, GSet, LWWRegister, ORMap, ORSet, PNCounter, Vote};

/// The kinds of CRDT. The order matters in one place: two replicas that concurrently create
/// one `ORMap` key with different kinds converge on the later kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// [`GCounter`].
    GCounter,
    /// [`PNCounter`].
    PNCounter,
    /// [`GSet`].
    GSet,
    /// [`ORSet`].
    ORSet,
    /// [`LWWRegister`].
    LWWRegister,
    /// [`Flag`].
    Flag,
    /// [`ORMap`].
    ORMap,
    /// [`Vote`].
    Vote,
}

impl Kind {
    /// Every kind, in order.
    pub const ALL: [Kind; 8] = [
        Kind::GCounter,
        Kind::PNCounter,
        Kind::GSet,
        Kind::ORSet,
        Kind::LWWRegister,
        Kind::Flag,
        Kind::ORMap,
        Kind::Vote,
    ];

    /// The kind an `ORMap` value gets when `op` is the first operation on its key (`None` for
    /// `Clear`, which creates nothing).
    pub fn for_op(op: &Op) -> Option<Kind> {
        match op {
            Op::Increment(_) | Op::Decrement(_) => Some(Kind::PNCounter),
            Op::Add(_) | Op::Remove(_) => Some(Kind::ORSet),
            Op::Set { .. } => Some(Kind::LWWRegister),
            Op::Enable | Op::Disable => Some(Kind::Flag),
            Op::Update(..) | Op::Create(..) | Op::Delete(_) => Some(Kind::ORMap),
            Op::Vote(_) => Some(Kind::Vote),
            Op::Clear => None,
        }
    }

    /// The operations this kind accepts, for error hints.
    fn operations(self) -> &'static str {
        match self {
            Kind::GCounter => "a GCounter takes Increment",
            Kind::PNCounter => "a PNCounter takes Increment and Decrement",
            Kind::GSet => "a GSet takes Add",
            Kind::ORSet => "an ORSet takes Add, Remove and Clear",
            Kind::LWWRegister => "an LWWRegister takes Set",
            Kind::Flag => "a Flag takes Enable, Disable and Clear",
            Kind::ORMap => "an ORMap takes Update, Create, Delete and Clear",
            Kind::Vote => "a Vote takes Vote",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// An operation on a CRDT, applied as one replica.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Add to a counter.
    Increment(u64),
    /// Subtract from a `PNCounter`.
    Decrement(u64),
    /// Add a value to a set.
    Add(Value),
    /// Remove a value from an `ORSet`.
    Remove(Value),
    /// Write a register, at the caller's clock time.
    Set {
        /// The value written.
        value: Value,
        /// The caller's clock (e.g. milliseconds since the epoch).
        timestamp: u64,
    },
    /// Turn a flag on.
    Enable,
    /// Turn a flag off.
    Disable,
    /// Apply an operation to a map key's value (creating the key).
    Update(String, Box<Op>),
    /// [`Op::Update`], creating a new key's value of this kind rather than the one the
    /// operation implies (a `GCounter` or a `GSet` in a map).
    Create(String, Kind, Box<Op>),
    /// Delete a map key.
    Delete(String),
    /// Record this replica's vote.
    Vote(bool),
    /// Empty an `ORSet` or an `ORMap`, or turn a `Flag` off.
    Clear,
}

impl Op {
    /// The operation's name, for errors.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Increment(_) => "Increment",
            Op::Decrement(_) => "Decrement",
            Op::Add(_) => "Add",
            Op::Remove(_) => "Remove",
            Op::Set { .. } => "Set",
            Op::Enable => "Enable",
            Op::Disable => "Disable",
            Op::Update(..) => "Update",
            Op::Create(..) => "Create",
            Op::Delete(_) => "Delete",
            Op::Vote(_) => "Vote",
            Op::Clear => "Clear",
        }
    }
}

/// A CRDT of any kind; a state and a delta have the same type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Crdt {
    /// A grow-only counter.
    GCounter(GCounter),
    /// A counter that goes up and down.
    PNCounter(PNCounter),
    /// A grow-only set.
    GSet(GSet),
    /// An add-wins set.
    ORSet(ORSet),
    /// A last-writer-wins register.
    LWWRegister(LWWRegister),
    /// An enable-wins flag.
    Flag(Flag),
    /// An add-wins map of CRDTs.
    ORMap(ORMap),
    /// Each replica's vote.
    Vote(Vote),
}

impl Crdt {
    /// An empty CRDT of `kind` (also the empty delta).
    pub fn new(kind: Kind) -> Crdt {
        match kind {
            Kind::GCounter => Crdt::GCounter(GCounter::default()),
            Kind::PNCounter => Crdt::PNCounter(PNCounter::default()),
            Kind::GSet => Crdt::GSet(GSet::default()),
            Kind::ORSet => Crdt::ORSet(ORSet::default()),
            Kind::LWWRegister => Crdt::LWWRegister(LWWRegister::default()),
            Kind::Flag => Crdt::Flag(Flag::default()),
            Kind::ORMap => Crdt::ORMap(ORMap::default()),
            Kind::Vote => Crdt::Vote(Vote::default()),
        }
    }

    /// This CRDT's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Crdt::GCounter(_) => Kind::GCounter,
            Crdt::PNCounter(_) => Kind::PNCounter,
            Crdt::GSet(_) => Kind::GSet,
            Crdt::ORSet(_) => Kind::ORSet,
            Crdt::LWWRegister(_) => Kind::LWWRegister,
            Crdt::Flag(_) => Kind::Flag,
            Crdt::ORMap(_) => Kind::ORMap,
            Crdt::Vote(_) => Kind::Vote,
        }
    }

    /// The delta of `op` applied as `replica`, without changing this state.
    pub fn delta(&self, replica: &str, op: &Op) -> Result<Crdt, Error> {
        let delta = match (self, op) {
            (Crdt::GCounter(c), Op::Increment(n)) => Crdt::GCounter(c.increment(replica, *n)?),
            (Crdt::PNCounter(c), Op::Increment(n)) => Crdt::PNCounter(c.increment(replica, *n)?),
            (Crdt::PNCounter(c), Op::Decrement(n)) => Crdt::PNCounter(c.decrement(replica, *n)?),
            (Crdt::GSet(s), Op::Add(v)) => Crdt::GSet(s.add(v.into())),
            (Crdt::ORSet(s), Op::Add(v)) => Crdt::ORSet(s.add(replica, v.into())),
            (Crdt::ORSet(s), Op::Remove(v)) => Crdt::ORSet(s.remove(&v.into())),
            (Crdt::ORSet(s), Op::Clear) => Crdt::ORSet(s.clear()),
            (Crdt::LWWRegister(r), Op::Set { value, timestamp }) => {
                Crdt::LWWRegister(r.set(replica, value.into(), *timestamp))
            }
            (Crdt::Flag(f), Op::Enable) => Crdt::Flag(f.enable(replica)),
            (Crdt::Flag(f), Op::Disable | Op::Clear) => Crdt::Flag(f.disable()),
            (Crdt::ORMap(m), Op::Update(key, op)) => Crdt::ORMap(m.update(replica, key, op)?),
            (Crdt::ORMap(m), Op::Create(key, kind, op)) => {
                Crdt::ORMap(m.update_as(replica, key, Some(*kind), op)?)
            }
            (Crdt::ORMap(m), Op::Delete(key)) => Crdt::ORMap(m.delete(key)),
            (Crdt::ORMap(m), Op::Clear) => Crdt::ORMap(m.clear()),
            (Crdt::Vote(v), Op::Vote(vote)) => Crdt::Vote(v.vote(replica, *vote)),
            (crdt, op) => {
                let kind = crdt.kind();
                return Err(Error::OperationMismatch {
                    op: op.name(),
                    kind,
                    hint: kind.operations(),
                });
            }
        };
        Ok(delta)
    }

    /// Applies `op` as `replica` and returns the delta to replicate.
    pub fn apply(&mut self, replica: &str, op: &Op) -> Result<Crdt, Error> {
        let delta = self.delta(replica, op)?;
        self.merge(&delta)?;
        Ok(delta)
    }

    /// Joins `other` (a delta or a whole state) of the same kind into this one.
    pub fn merge(&mut self, other: &Crdt) -> Result<(), Error> {
        match (self, other) {
            (Crdt::GCounter(a), Crdt::GCounter(b)) => a.merge(b),
            (Crdt::PNCounter(a), Crdt::PNCounter(b)) => a.merge(b),
            (Crdt::GSet(a), Crdt::GSet(b)) => a.merge(b),
            (Crdt::ORSet(a), Crdt::ORSet(b)) => a.merge(b),
            (Crdt::LWWRegister(a), Crdt::LWWRegister(b)) => a.merge(b),
            (Crdt::Flag(a), Crdt::Flag(b)) => a.merge(b),
            (Crdt::ORMap(a), Crdt::ORMap(b)) => a.merge(b),
            (Crdt::Vote(a), Crdt::Vote(b)) => a.merge(b),
            (mine, theirs) => {
                return Err(Error::KindMismatch {
                    kind: mine.kind(),
                    delta: theirs.kind(),
                });
            }
        }
        Ok(())
    }

    /// Joins `other` whatever its kind: the same kind merges; of two kinds, the later one
    /// wins whole (how `ORMap` values of concurrently chosen kinds converge).
    pub(crate) fn join_any(&mut self, other: &Crdt) {
        if other.kind() > self.kind() {
            *self = other.clone();
        } else if other.kind() == self.kind() {
            // Same kind: merge cannot fail.
            let _ = self.merge(other);
        }
    }

    /// A JSON view for reading: a counter is a number, a set a sorted array, a register its
    /// value (`null` before the first write), a flag a boolean, a map an object of its keys'
    /// views, a vote `{"votes_for", "voters", "majority"}`.
    pub fn value(&self) -> Value {
        match self {
            Crdt::GCounter(c) => number(c.value().try_into().unwrap_or(i128::MAX)),
            Crdt::PNCounter(c) => number(c.value()),
            Crdt::GSet(s) => Value::Array(s.elements().map(|e| e.value()).collect()),
            Crdt::ORSet(s) => Value::Array(s.elements().map(|e| e.value()).collect()),
            Crdt::LWWRegister(r) => r.current().map_or(Value::Null, |w| w.value.value()),
            Crdt::Flag(f) => Value::Bool(f.is_enabled()),
            Crdt::ORMap(m) => Value::Object(
                m.entries()
                    .map(|(key, value)| (key.clone(), value.value()))
                    .collect(),
            ),
            Crdt::Vote(v) => serde_json::json!({
                "votes_for": v.votes_for(),
                "voters": v.voters(),
                "majority": v.majority(),
            }),
        }
    }
}

/// A JSON number: exact when it fits 64 bits, else the nearest float.
fn number(n: i128) -> Value {
    if let Ok(n) = i64::try_from(n) {
        Value::from(n)
    } else if let Ok(n) = u64::try_from(n) {
        Value::from(n)
    } else {
        Number::from_f64(n as f64).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations_that_do_not_fit_name_both() {
        let mut set = Crdt::new(Kind::GSet);
        let error = set.apply("a", &Op::Remove(json!(1))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the operation Remove does not apply to a GSet (hint: a GSet takes Add)"
        );
        let error = set.merge(&Crdt::new(Kind::Flag)).unwrap_err();
        assert_eq!(error.to_string(), "cannot merge a Flag into a GSet");
    }

    #[test]
    fn values_read_as_json() {
        let mut counter = Crdt::new(Kind::PNCounter);
        counter.apply("a", &Op::Increment(3)).unwrap();
        counter.apply("b", &Op::Decrement(5)).unwrap();
        assert_eq!(counter.value(), json!(-2));
        let mut set = Crdt::new(Kind::ORSet);
        for v in [json!("b"), json!(2), json!("a"), json!(2)] {
            set.apply("a", &Op::Add(v)).unwrap();
        }
        assert_eq!(set.value(), json!(["a", "b", 2]));
        let mut register = Crdt::new(Kind::LWWRegister);
        assert_eq!(register.value(), Value::Null);
        let write = Op::Set {
            value: json!({"x": 1}),
            timestamp: 5,
        };
        register.apply("a", &write).unwrap();
        assert_eq!(register.value(), json!({"x": 1}));
        let mut map = Crdt::new(Kind::ORMap);
        let nested = Op::Update("inner".into(), Box::new(Op::Enable));
        map.apply("a", &Op::Update("m".into(), Box::new(nested)))
            .unwrap();
        map.apply("a", &Op::Update("v".into(), Box::new(Op::Vote(true))))
            .unwrap();
        assert_eq!(
            map.value(),
            json!({"m": {"inner": true}, "v": {"votes_for": 1, "voters": 1, "majority": true}})
        );
        assert_eq!(Crdt::new(Kind::GCounter).value(), json!(0));
        assert_eq!(Crdt::new(Kind::Flag).value(), json!(false));
    }

    #[test]
    fn apply_returns_a_delta_that_reproduces_the_change() {
        let mut a = Crdt::new(Kind::ORSet);
        let mut b = Crdt::new(Kind::ORSet);
        for op in [Op::Add(json!(1)), Op::Add(json!(2)), Op::Remove(json!(1))] {
            let delta = a.apply("a", &op).unwrap();
            b.merge(&delta).unwrap();
        }
        assert_eq!(a, b);
        assert_eq!(b.value(), json!([2]));
    }
}
