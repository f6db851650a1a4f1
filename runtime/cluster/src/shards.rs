//! Shards that moved between partitions (docs/placement.md, "moving a shard").
//!
//! Two views, kept apart on purpose:
//!
//! - [`Routes`] — where requests for a shard go: replicated by the metadata group, the same on
//!   every node once applied. It only routes; it never decides whose writes land.
//! - [`Owners`] — which partition's writes to a shard take effect *on this node*: a shard never
//!   moved belongs to its default partition (generation 0); a `MoveIn` applied here makes its
//!   partition the owner, unless a move of a later generation already did. A partition's applied
//!   writes and installed snapshots skip entities of shards it does not own here, so a replica
//!   behind on the old partition can never write older state over the new owner's. The owners
//!   are written in the same deferred batch as the data a `MoveIn` carries.

use std::{collections::BTreeMap, sync::RwLock};

use cella_core::{EntityId, JournalEntry, RowTable, Snapshot};

use crate::{GroupId, placement::Placement};

/// One shard's data, as a `MoveIn` carries it and a partition snapshot holds it: each entity's
/// snapshot and journal, and its rows (outbox, timers, processed request ids) by table.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardData {
    pub entities: Vec<(EntityId, Option<Snapshot>, Vec<JournalEntry>)>,
    pub rows: Vec<(RowTable, Vec<Row>)>,
}

/// One entity row: its entity, name and value.
pub type Row = (EntityId, String, Vec<u8>);

/// A change to a partition's shards, in that partition's log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ShardOp {
    /// The partition starts no more commands of `shard` (a move is under way).
    Freeze { shard: u32 },
    /// The partition serves `shard` again (a move given up before its `MoveIn`).
    Unfreeze { shard: u32 },
    /// The partition takes `shard` over with its data, as the move of `generation`.
    MoveIn {
        shard: u32,
        generation: u64,
        data: ShardData,
    },
}

impl std::fmt::Display for ShardOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardOp::Freeze { shard } => write!(f, "freeze {shard}"),
            ShardOp::Unfreeze { shard } => write!(f, "unfreeze {shard}"),
            ShardOp::MoveIn {
                shard, generation, ..
            } => write!(f, "move-in {shard} (generation {generation})"),
        }
    }
}

/// A step of a shard's move, in the metadata group's log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RouteOp {
    /// A move of `shard` from partition `from` to `to` begins; the entry's log index is its
    /// generation.
    Begin {
        shard: u32,
        from: GroupId,
        to: GroupId,
    },
    /// The move of `shard` is done: requests go to its new partition.
    Finish { shard: u32 },
    /// The move of `shard` was given up before its `MoveIn`.
    Abort { shard: u32 },
}

impl std::fmt::Display for RouteOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteOp::Begin { shard, from, to } => write!(f, "begin {shard}: {from} -> {to}"),
            RouteOp::Finish { shard } => write!(f, "finish {shard}"),
            RouteOp::Abort { shard } => write!(f, "abort {shard}"),
        }
    }
}

/// Where requests for moved shards go (the metadata group's view), the moves under way and
/// the moves made.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Routes {
    /// Shard → the partition it moved to (shards not listed go to their default partition).
    pub moved: BTreeMap<u32, GroupId>,
    /// Shard → the move under way.
    pub moving: BTreeMap<u32, ShardMove>,
    /// The moves made, newest last (at most [`Routes::KEPT_MOVES`]).
    pub moves: Vec<ShardMove>,
}

impl Routes {
    /// How many moves are kept for `cella cluster status`.
    pub const KEPT_MOVES: usize = 32;

    /// Applies `op`, the entry at `index`, recorded at `at_ms` for `reason`.
    pub fn apply(&mut self, op: &RouteOp, index: u64, at_ms: u64, reason: &str) {
        match op {
            RouteOp::Begin { shard, from, to } => {
                self.moving.insert(
                    *shard,
                    ShardMove {
                        at_ms,
                        shard: *shard,
                        from: *from,
                        to: *to,
                        generation: index,
                        reason: reason.to_string(),
                    },
                );
            }
            RouteOp::Finish { shard } => {
                if let Some(done) = self.moving.remove(shard) {
                    self.moved.insert(*shard, done.to);
                    self.moves.push(done);
                    let over = self.moves.len().saturating_sub(Self::KEPT_MOVES);
                    self.moves.drain(..over);
                }
            }
            RouteOp::Abort { shard } => {
                self.moving.remove(shard);
            }
        }
    }

    /// The partition requests for `shard` go to.
    pub fn partition(&self, placement: &Placement, shard: u32) -> GroupId {
        self.moved
            .get(&shard)
            .copied()
            .unwrap_or_else(|| placement.default_partition(shard))
    }
}

/// One move of a shard.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardMove {
    pub at_ms: u64,
    pub shard: u32,
    pub from: GroupId,
    pub to: GroupId,
    /// The move's generation (the metadata log index that began it).
    pub generation: u64,
    pub reason: String,
}

/// This node's owners of moved shards: shard → (partition, generation).
#[derive(Debug, Default)]
pub struct Owners {
    placement: Placement,
    moved: RwLock<BTreeMap<u32, (GroupId, u64)>>,
}

impl Owners {
    pub fn new(placement: Placement, moved: BTreeMap<u32, (GroupId, u64)>) -> Owners {
        Owners {
            placement,
            moved: RwLock::new(moved),
        }
    }

    /// The partition whose writes to `shard` take effect here, and the generation that made it
    /// the owner.
    pub fn owner(&self, shard: u32) -> (GroupId, u64) {
        self.read()
            .get(&shard)
            .copied()
            .unwrap_or_else(|| (self.placement.default_partition(shard), 0))
    }

    /// Whether any shard moved here (else every shard has its default owner).
    pub fn any_moved(&self) -> bool {
        !self.read().is_empty()
    }

    /// Whether `group`'s writes to `id` take effect here.
    pub fn owns(&self, group: GroupId, id: &EntityId) -> bool {
        self.owner(self.placement.shard(id)).0 == group
    }

    /// Makes `group` the owner of `shard` as the move of `generation`, unless a move of a later
    /// (or the same) generation already owns it. Returns whether it did, and the encoded owners
    /// to persist with the move's data.
    pub fn claim(&self, shard: u32, group: GroupId, generation: u64) -> Option<Vec<u8>> {
        let mut moved = self
            .moved
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = moved.get(&shard).map_or(0, |(_, g)| *g);
        if generation <= current {
            return None;
        }
        moved.insert(shard, (group, generation));
        crate::types::encode("the shard owners", &*moved).ok()
    }

    /// The shards `group` owns here that are not its by default, with their generations.
    pub fn taken_by(&self, group: GroupId) -> Vec<(u32, u64)> {
        self.read()
            .iter()
            .filter(|(shard, (owner, _))| {
                *owner == group && self.placement.default_partition(**shard) != group
            })
            .map(|(shard, (_, generation))| (*shard, *generation))
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u32, (GroupId, u64)>> {
        self.moved
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_move_wins_and_an_earlier_one_is_ignored() {
        let placement = Placement {
            shards: 16,
            partitions: 4,
        };
        let owners = Owners::new(placement, BTreeMap::new());
        let id = EntityId::new("counter", "a");
        let shard = placement.shard(&id);
        let home = placement.default_partition(shard);
        let other = home % 4 + 1;
        assert_eq!(owners.owner(shard), (home, 0));
        assert!(owners.owns(home, &id));
        // The move of generation 7 to `other`, then a late MoveIn of generation 5 back home.
        assert!(owners.claim(shard, other, 7).is_some());
        assert!(owners.owns(other, &id) && !owners.owns(home, &id));
        assert!(owners.claim(shard, home, 5).is_none());
        assert_eq!(owners.owner(shard), (other, 7));
        assert_eq!(owners.taken_by(other), vec![(shard, 7)]);
        assert!(owners.claim(shard, home, 9).is_some());
        assert!(
            owners.taken_by(home).is_empty(),
            "a shard back home is not taken"
        );
        let routes = Routes {
            moved: BTreeMap::from([(shard, other)]),
            ..Routes::default()
        };
        assert_eq!(routes.partition(&placement, shard), other);
        assert_eq!(
            routes.partition(&placement, (shard + 1) % 16),
            placement.default_partition((shard + 1) % 16)
        );
    }
}
