//! The shard side of a partition's state machine (see `crate::shards`): its frozen shards,
//! the node's shard owners it obeys, a `MoveIn` replacing a shard's rows, and the snapshot
//! body that carries both.

use std::{collections::BTreeSet, sync::Arc};

use cella_core::{EntityId, JournalEntry, RowTable, Snapshot, Write};
use cella_store::{GroupWrite, Store};

use super::{ROW_TABLES, StateMachine};
use crate::{
    Error, GroupId,
    placement::Placement,
    shards::{Owners, Routes, ShardData, ShardOp},
    types::{decode, encode},
};

/// A partition snapshot's data: its entities' snapshots, journals and rows (the shards it
/// owns on the node that built it), the shards it took over by a move (with their
/// generations) and the shards it has frozen.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Body {
    pub(super) data: ShardData,
    pub(super) taken: Vec<(u32, u64)>,
    pub(super) frozen: Vec<u32>,
}

/// A snapshot built before shards could move: its entities and rows only.
#[derive(serde::Deserialize)]
struct BodyV1 {
    entities: Vec<(EntityId, Option<Snapshot>, Vec<JournalEntry>)>,
    rows: Vec<(RowTable, Vec<crate::shards::Row>)>,
}

impl Body {
    pub(super) fn decode(data: &[u8]) -> Result<Body, Error> {
        match decode::<Body>("a partition snapshot", data) {
            Ok(body) => Ok(body),
            Err(e) => match decode::<BodyV1>("a partition snapshot", data) {
                Ok(v1) => Ok(Body {
                    data: ShardData {
                        entities: v1.entities,
                        rows: v1.rows,
                    },
                    taken: Vec::new(),
                    frozen: Vec::new(),
                }),
                Err(_) => Err(e),
            },
        }
    }
}

/// The shards of a partition frozen for a move (read by the entity layer's leases).
pub type Frozen = Arc<std::sync::RwLock<BTreeSet<u32>>>;

/// The name of a partition's frozen shards in its group state.
pub(super) const FROZEN: &str = "frozen";
/// The name of this node's shard owners in the metadata group's state ([`Owners`]).
pub const OWNERS: &str = "shard-owners";
/// The name of the routes in the metadata group's state ([`Routes`]).
pub const ROUTES: &str = "routes";

/// This node's shard owners as stored (empty when no shard ever moved).
pub fn load_owners(store: &Store, placement: Placement) -> Result<Owners, Error> {
    let moved = match store.group_state(crate::META_GROUP, OWNERS)? {
        Some(bytes) => decode("the shard owners", &bytes)?,
        None => Default::default(),
    };
    Ok(Owners::new(placement, moved))
}

impl StateMachine {
    /// The partition's frozen shards, as applied here.
    pub fn frozen(&self) -> Frozen {
        self.frozen.clone()
    }

    /// Keeps the applied routes in `routes` (loaded from the store now).
    pub fn with_routes(
        mut self,
        routes: Arc<std::sync::RwLock<Routes>>,
    ) -> Result<StateMachine, Error> {
        if let Some(bytes) = self.store.group_state(self.group, ROUTES)? {
            *routes
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                decode("the shard routes", &bytes)?;
        }
        self.routes = Some(routes);
        Ok(self)
    }

    /// Tells `moved_in` of every shard this partition serves again here: moved in, or
    /// unfrozen.
    pub fn with_moved_in(
        mut self,
        moved_in: tokio::sync::mpsc::UnboundedSender<(GroupId, u32)>,
    ) -> StateMachine {
        self.moved_in = Some(moved_in);
        self
    }

    /// The data of `shard` here, as applied so far. Read at the source of a move, whose
    /// freeze stopped every write of the shard: whichever partition's writes the rows hold
    /// here (the source's, or a target's whose move did not finish), they are the same.
    pub fn read_shard(&self, shard: u32) -> Result<ShardData, Error> {
        let placement = self.placement;
        read_data(&self.store, |id| placement.shard(id) == shard)
    }

    /// Whether this partition's writes to `id` take effect on this node.
    pub(super) fn owns(&self, id: &EntityId) -> bool {
        self.group != crate::META_GROUP && self.owners.owns(self.group, id)
    }

    /// Announces every applied module change on `events`.
    /// The partition's entities as of now, encoded.
    pub(super) fn dump(&self) -> Result<Vec<u8>, Error> {
        let data = read_data(&self.store, |id| self.owns(id))?;
        let frozen = self.frozen_now().into_iter().collect();
        let taken = self.owners.taken_by(self.group);
        encode(
            "a partition snapshot",
            &Body {
                data,
                taken,
                frozen,
            },
        )
    }

    pub(super) fn frozen_now(&self) -> BTreeSet<u32> {
        self.frozen
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sets the frozen shards, returning the write that persists them.
    pub(super) fn set_frozen(&self, frozen: BTreeSet<u32>) -> Result<GroupWrite, Error> {
        let write = self.state_write(FROZEN, encode("the frozen shards", &frozen)?);
        *self
            .frozen
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = frozen;
        Ok(write)
    }

    /// The writes that make the store hold `data` as this partition's, replacing whatever it
    /// held of the entities `select` picks.
    pub(super) fn replace(
        &self,
        select: impl Fn(&EntityId) -> bool,
        data: ShardData,
    ) -> Result<Vec<GroupWrite>, Error> {
        let mut present: BTreeSet<EntityId> = self
            .store
            .dump_entities(&select)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        for table in ROW_TABLES {
            let rows = self.store.scan_rows(table, "", &select)?;
            present.extend(rows.into_iter().map(|(id, _, _)| id));
        }
        let mut writes: Vec<GroupWrite> =
            present.into_iter().map(GroupWrite::ClearEntity).collect();
        for (table, rows) in data.rows {
            for (id, name, value) in rows {
                if select(&id) {
                    writes.push(GroupWrite::Entity(Write::Row {
                        id,
                        table,
                        name,
                        value: Some(value),
                    }));
                }
            }
        }
        for (id, snapshot, entries) in data.entities {
            if !select(&id) {
                continue;
            }
            if let Some(s) = snapshot {
                writes.push(GroupWrite::Entity(Write::Snapshot(id.clone(), s)));
            }
            for entry in entries {
                writes.push(GroupWrite::Entity(Write::Append(id.clone(), entry)));
            }
        }
        Ok(writes)
    }

    /// Applies a change to the partition's shards; returns the shard this partition serves
    /// again here, if one is: moved in, or unfrozen (its move abandoned before any data left),
    /// whose calls and timers, refused while it was frozen, are then carried out again.
    pub(super) fn apply_shard(
        &self,
        op: ShardOp,
        writes: &mut Vec<GroupWrite>,
    ) -> Result<Option<u32>, Error> {
        let mut frozen = self.frozen_now();
        match op {
            ShardOp::Freeze { shard } => {
                frozen.insert(shard);
            }
            ShardOp::Unfreeze { shard } => {
                if frozen.remove(&shard) {
                    writes.push(self.set_frozen(frozen)?);
                    return Ok(Some(shard));
                }
            }
            ShardOp::MoveIn {
                shard,
                generation,
                data,
            } => {
                let Some(owners) = self.owners.claim(shard, self.group, generation) else {
                    // A later move of the shard was applied here already.
                    return Ok(None);
                };
                let placement = self.placement;
                writes.extend(self.replace(|id| placement.shard(id) == shard, data)?);
                writes.push(GroupWrite::State {
                    group: crate::META_GROUP,
                    name: OWNERS.to_string(),
                    value: Some(owners),
                });
                frozen.remove(&shard);
                writes.push(self.set_frozen(frozen)?);
                return Ok(Some(shard));
            }
        }
        writes.push(self.set_frozen(frozen)?);
        Ok(None)
    }
}

/// The data of the entities `select` picks, read from `store` (deferred writes included).
pub fn read_data(store: &Store, select: impl Fn(&EntityId) -> bool) -> Result<ShardData, Error> {
    let entities = store
        .dump_entities(&select)?
        .into_iter()
        .map(|(id, load)| (id, load.snapshot, load.entries))
        .collect();
    let mut rows = Vec::new();
    for table in ROW_TABLES {
        rows.push((table, store.scan_rows(table, "", &select)?));
    }
    Ok(ShardData { entities, rows })
}
