//! Cella's CRDTs: state replicated between nodes without consensus and merged by the host.
//!
//! Kinds, as Cloudstate had them: [`GCounter`], [`PNCounter`], [`GSet`], [`ORSet`] (add-wins,
//! with dots and a compacting causal context, so removes leave no tombstones), [`LWWRegister`]
//! (the caller's timestamp, replica id breaking ties; the crate has no clock), [`Flag`]
//! (enable-wins), [`ORMap`] (string keys to any of these, add-wins keys) and [`Vote`].
//! [`Crdt`] is the enum over them, [`Op`] the operations.
//!
//! # What it guarantees
//!
//! Every kind is a **delta-state** CRDT. [`Crdt::apply`] performs an operation as one replica
//! and returns a small delta (a value of the same type); [`Crdt::merge`] joins a delta or a
//! whole state in, and is commutative, associative and idempotent; a state is its own delta.
//! So replicas that have merged the same deltas, in any order, any number of times, or each
//! other's full states, hold equal states (equal as Rust values: every state is kept in a
//! canonical form). The property tests in `tests/` check these laws for every kind, and that
//! every replica's operations are kept (counter totals, add-wins, enable-wins, last writer,
//! each replica's last vote).
//!
//! # How the node uses it
//!
//! The node owns one `Crdt` per entity. An operation from the entity is applied with the
//! node's id as the replica id (which must be unique per node and stable across restarts:
//! two nodes sharing an id would lose each other's updates), the state is stored, and the
//! returned delta is sent to the other nodes by gossip; a node merges each delta it receives.
//! Deltas may be lost, duplicated or reordered: periodic anti-entropy, where nodes exchange
//! and merge full states, repairs whatever gossip missed. States and deltas travel and are
//! stored in the versioned binary form of [`Crdt::encode`]; [`Crdt::decode`] refuses maps
//! nested more than [`MAX_MAP_NESTING`] deep. A replica id is never reused for a fresh, empty
//! state (a node that lost its data must take a new id). An operation that does not fit the
//! entity's kind is refused with [`Error::OperationMismatch`], naming both.
//!
//! [`Replicas`] is that bookkeeping for all of a node's entities, without IO: local changes
//! with per-peer delta queues, merges, and the per-bucket digests of anti-entropy.
//!
//! ```
//! use cella_crdt::{Crdt, Kind, Op};
//! use serde_json::json;
//!
//! let mut a = Crdt::new(Kind::ORSet);
//! let mut b = Crdt::new(Kind::ORSet);
//! let delta = a.apply("node-a", &Op::Add(json!("x")))?;
//! b.merge(&Crdt::decode(&delta.encode()?)?)?; // gossip: the delta travels
//! b.apply("node-b", &Op::Remove(json!("x")))?; // saw the add: removes it
//! a.apply("node-a", &Op::Add(json!("y")))?;
//! a.merge(&b)?; // anti-entropy: a full state is a delta too
//! b.merge(&a)?;
//! assert_eq!(a, b);
//! assert_eq!(a.value(), json!(["y"]));
//! # Ok::<(), cella_crdt::Error>(())
//! ```

mod causal;
mod crdt;
mod element;
mod encoding;
mod error;
mod flag;
mod gcounter;
mod gset;
mod lww;
mod ormap;
mod orset;
mod pncounter;
mod replica;
mod vote;

pub use causal::{CausalContext, Dot};
pub use crdt::{Crdt, Kind, Op};
pub use element::Element;
pub use encoding::FORMAT_VERSION;
pub use error::Error;
pub use flag::Flag;
pub use gcounter::GCounter;
pub use gset::GSet;
pub use lww::{LWWRegister, Write};
pub use ormap::{MAX_MAP_NESTING, ORMap};
pub use orset::ORSet;
pub use pncounter::PNCounter;
pub use replica::{Address, Applied, BUCKETS, Replicas, bucket};
pub use vote::Vote;
