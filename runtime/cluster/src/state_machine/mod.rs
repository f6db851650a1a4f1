//! The replicated state machine of one partition: committed journal writes applied into the
//! node's store, where the entity layer reads them.
//!
//! `apply` hands the entries' changes and the new applied log id to the store as *deferred*
//! writes (`Store::write_group_deferred`): readable at once, so a reader that saw an entry
//! applied sees it in the store, and written to disk in bulk every 100 ms, so an
//! entity written often costs one page write per flush on each replica rather than one per
//! entry. The raft log is their durable record: a crash loses at most the deferred tail, and
//! the restart applies those entries again from the applied log id deferred with them
//! (applying is idempotent: journal rows are keyed by sequence). Before the log may be purged
//! up to a snapshot, building that snapshot makes the deferred writes durable.
//!
//! A snapshot is the partition's entities (snapshot and journal of each) as of the applied log
//! id, read in one go under the state machine's lock so the two agree; installing one replaces
//! the partition's entities with the snapshot's, deferred behind the applies and flushed. The
//! last snapshot built is kept in a file beside the database (`raft-snapshots/<group>.snapshot`,
//! out of the group commit), the last one installed in the store, so that it can be sent again
//! without rebuilding.
//!
//! `shards.rs`: the partition's frozen shards and the node's shard owners it obeys (writes to a
//! shard another partition owns here are left out), and a `MoveIn` replacing a shard's rows.

use std::{
    io::{self, Cursor, Write as _},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use std::collections::BTreeSet;

use cella_core::RowTable;
use cella_store::{GroupWrite, Store};
use futures_util::TryStreamExt;
use openraft::{
    EntryPayload, OptionalSend, RaftSnapshotBuilder,
    alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf},
    entry::RaftEntry,
    storage::{EntryResponder, RaftStateMachine},
};
use tokio::sync::Mutex;

mod shards;

use self::shards::{Body, FROZEN};
pub use self::shards::{Frozen, OWNERS, ROUTES, load_owners, read_data};

use crate::{
    Applied, Command, Error, GroupId, TypeConfig,
    placement::Placement,
    shards::{Owners, Routes},
    types::{Leaders, ModuleOp},
    types::{decode, encode},
};

type C = TypeConfig;

/// A snapshot's meta and data.
type Current = (SnapshotMetaOf<C>, Vec<u8>);

const APPLIED: &str = "applied";
const MEMBERSHIP: &str = "membership";
const SNAPSHOT: &str = "snapshot";
/// The metadata group's leader placement ([`Leaders`]).
pub const LEADERS: &str = "leaders";

const ROW_TABLES: [RowTable; 2] = [RowTable::Effects, RowTable::Processed];

struct SmState {
    applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    /// The last snapshot built or installed: its meta and data.
    current: Option<Current>,
}

/// The state machine of one partition. Clones share state (the snapshot builder is a clone).
#[derive(Clone)]
pub struct StateMachine {
    group: GroupId,
    store: Store,
    placement: Placement,
    /// This node's shard owners, shared by every group's state machine.
    owners: Arc<Owners>,
    /// The partition's frozen shards (persisted in its group state).
    frozen: Frozen,
    state: Arc<Mutex<SmState>>,
    /// Where applied module changes are announced (the metadata group), by entity type.
    module_events: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// Snapshots installed from a leader since the node started.
    installed: Arc<AtomicU64>,
    /// Where the applied leader placement is kept in memory (the metadata group), and who is
    /// told when it changes (the leader balancer).
    leaders: Option<(Arc<std::sync::RwLock<Leaders>>, Arc<tokio::sync::Notify>)>,
    /// Where the applied routes are kept in memory (the metadata group).
    routes: Option<Arc<std::sync::RwLock<Routes>>>,
    /// Who is told of a shard moved in here (the entity layer: caches, effects, timers).
    moved_in: Option<tokio::sync::mpsc::UnboundedSender<(GroupId, u32)>>,
}

impl StateMachine {
    /// Opens group `group`'s state machine on `store`; `owners` tells whose writes to an
    /// entity take effect on this node.
    pub fn open(
        store: Store,
        group: GroupId,
        placement: Placement,
        owners: Arc<Owners>,
    ) -> Result<StateMachine, Error> {
        let applied = match store.group_state(group, APPLIED)? {
            Some(bytes) => decode("the applied log id", &bytes)?,
            None => None,
        };
        let membership = match store.group_state(group, MEMBERSHIP)? {
            Some(bytes) => decode("the applied membership", &bytes)?,
            None => StoredMembershipOf::<C>::default(),
        };
        // The snapshot built last is in its file, the one installed last in the store (and a
        // store of an older version may hold a built one): the newer of the two is current.
        let stored: Option<Current> = match store.group_state(group, SNAPSHOT)? {
            Some(bytes) => Some(decode("the current snapshot", &bytes)?),
            None => None,
        };
        let built = read_snapshot_file(&snapshot_file(&store, group))?;
        let current = match (stored, built) {
            (Some(s), Some(b)) => Some(if b.0.last_log_id > s.0.last_log_id {
                b
            } else {
                s
            }),
            (s, b) => s.or(b),
        };
        let frozen: BTreeSet<u32> = match store.group_state(group, FROZEN)? {
            Some(bytes) => decode("the frozen shards", &bytes)?,
            None => BTreeSet::new(),
        };
        Ok(StateMachine {
            group,
            store,
            placement,
            owners,
            frozen: Arc::new(std::sync::RwLock::new(frozen)),
            state: Arc::new(Mutex::new(SmState {
                applied,
                membership,
                current,
            })),
            module_events: None,
            installed: Arc::default(),
            leaders: None,
            routes: None,
            moved_in: None,
        })
    }

    pub fn with_module_events(
        mut self,
        events: tokio::sync::mpsc::UnboundedSender<String>,
    ) -> StateMachine {
        self.module_events = Some(events);
        self
    }

    /// Keeps the applied leader placement in `leaders` (loaded from the store now), and
    /// wakes `changed` when it changes.
    pub fn with_leaders(
        mut self,
        leaders: Arc<std::sync::RwLock<Leaders>>,
        changed: Arc<tokio::sync::Notify>,
    ) -> Result<StateMachine, Error> {
        if let Some(bytes) = self.store.group_state(self.group, LEADERS)? {
            *leaders
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                decode("the leader placement", &bytes)?;
        }
        self.leaders = Some((leaders, changed));
        Ok(self)
    }

    /// Applies a module change to this node's store. Idempotent, because the change and the
    /// applied log id are not written in one transaction: a restart may apply it again.
    fn apply_module(&self, op: &ModuleOp) -> Result<(), Error> {
        match op {
            ModuleOp::Put {
                entity_type,
                version,
                component,
            } => {
                let already = self
                    .store
                    .module(entity_type)?
                    .is_some_and(|info| info.versions.iter().any(|v| v.version == version.version));
                if !already {
                    self.store
                        .put_module_version(entity_type, version.clone(), component)?;
                }
            }
            ModuleOp::Activate {
                entity_type,
                version,
            } => {
                if self.store.module(entity_type)?.is_some() {
                    self.store.set_active_version(entity_type, *version)?;
                }
            }
            ModuleOp::Delete { entity_type } => {
                self.store.delete_module(entity_type)?;
            }
            ModuleOp::Limits {
                entity_type,
                limits,
            } => {
                if self.store.module(entity_type)?.is_some() {
                    self.store.put_module_limits(entity_type, limits)?;
                }
            }
        }
        Ok(())
    }

    /// How many snapshots this node installed from a leader since it started.
    pub fn snapshots_installed(&self) -> u64 {
        self.installed.load(Ordering::Relaxed)
    }

    /// The last applied log index (0 before any).
    pub async fn applied_index(&self) -> u64 {
        self.state.lock().await.applied.map_or(0, |id| id.index())
    }

    fn state_write(&self, name: &str, value: Vec<u8>) -> GroupWrite {
        GroupWrite::State {
            group: self.group,
            name: name.to_string(),
            value: Some(value),
        }
    }

    /// Makes the deferred writes durable (see the module docs).
    async fn flush(&self) -> Result<(), io::Error> {
        self.store.flush_deferred().await.map_err(io::Error::other)
    }
}

impl RaftSnapshotBuilder<C> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Cursor<Vec<u8>>>, io::Error> {
        // Holding the lock keeps `apply` out, so the dump and the applied log id agree.
        let mut state = self.state.lock().await;
        // openraft purges the log up to (near) this snapshot once it is built: what the log
        // held must be durable in the store by then.
        self.flush().await?;
        let data = self.dump()?;
        let meta = SnapshotMetaOf::<C> {
            last_log_id: state.applied,
            last_membership: state.membership.clone(),
        };
        let stored = encode("the current snapshot", &(&meta, &data))?;
        let path = snapshot_file(&self.store, self.group);
        tokio::task::spawn_blocking(move || write_snapshot_file(&path, &stored))
            .await
            .map_err(io::Error::other)??;
        state.current = Some((meta.clone(), data.clone()));
        Ok(SnapshotOf::<C, _> {
            meta,
            snapshot: Cursor::new(data),
        })
    }
}

impl RaftStateMachine<C> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let state = self.state.lock().await;
        Ok((state.applied, state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures_util::Stream<Item = Result<EntryResponder<C>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        let mut state = self.state.lock().await;
        let mut writes = Vec::new();
        let mut responders = Vec::new();
        let mut applied = state.applied;
        let mut membership = None;
        let mut changed_modules = Vec::new();
        let mut moved_in = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(Command::Journal(journal)) => {
                    if self.owners.any_moved() {
                        // Writes to a shard another partition owns here are left out: that
                        // partition's data is newer (see `crate::shards`).
                        writes.extend(
                            journal
                                .into_iter()
                                .filter(|w| self.owns(w.entity()))
                                .map(GroupWrite::Entity),
                        );
                    } else {
                        writes.extend(journal.into_iter().map(GroupWrite::Entity));
                    }
                }
                EntryPayload::Normal(Command::Shard(op)) => {
                    moved_in.extend(self.apply_shard(op, &mut writes)?);
                }
                EntryPayload::Normal(Command::Route { record, op }) => {
                    let bytes = encode("an audit record", &record)?;
                    self.store
                        .append_audit(log_id.index(), &bytes)
                        .map_err(Error::from)?;
                    if let Some(shared) = &self.routes {
                        let mut routes = shared
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        let reason = record.detail.as_deref().unwrap_or(&record.actor);
                        routes.apply(&op, log_id.index(), record.at_ms, reason);
                        writes
                            .push(self.state_write(ROUTES, encode("the shard routes", &*routes)?));
                    }
                }
                EntryPayload::Normal(Command::Module(op)) => {
                    self.apply_module(&op)?;
                    changed_modules.push(op.entity_type().to_string());
                }
                EntryPayload::Normal(Command::Admin { record, module }) => {
                    if let Some(op) = module {
                        self.apply_module(&op)?;
                        changed_modules.push(op.entity_type().to_string());
                    }
                    // Keyed by the log index, so applying it again writes the same row.
                    let bytes = encode("an audit record", &record)?;
                    self.store
                        .append_audit(log_id.index(), &bytes)
                        .map_err(Error::from)?;
                }
                EntryPayload::Normal(Command::Leaders { record, leaders }) => {
                    let bytes = encode("an audit record", &record)?;
                    self.store
                        .append_audit(log_id.index(), &bytes)
                        .map_err(Error::from)?;
                    writes
                        .push(self.state_write(LEADERS, encode("the leader placement", &leaders)?));
                    if let Some((shared, changed)) = &self.leaders {
                        *shared
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = leaders;
                        changed.notify_one();
                    }
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembershipOf::<C>::new(Some(log_id), m));
                }
            }
            applied = Some(log_id);
            if let Some(responder) = responder {
                responders.push((responder, log_id.index()));
            }
        }
        writes.push(self.state_write(APPLIED, encode("the applied log id", &applied)?));
        if let Some(m) = &membership {
            writes.push(self.state_write(MEMBERSHIP, encode("the applied membership", m)?));
        }
        // Deferred: the log holds every applied entry, so a crash that loses these writes only
        // makes the restart apply those entries again (applying is idempotent).
        self.store
            .write_group_deferred(writes)
            .map_err(io::Error::other)?;
        state.applied = applied;
        if let Some(m) = membership {
            state.membership = m;
        }
        for (responder, index) in responders {
            responder.send(Applied { index });
        }
        if let Some(events) = &self.module_events {
            for entity_type in changed_modules {
                let _ = events.send(entity_type);
            }
        }
        if let Some(notify) = &self.moved_in {
            for shard in moved_in {
                let _ = notify.send((self.group, shard));
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let body = Body::decode(&data)?;
        let mut state = self.state.lock().await;
        let mut writes = Vec::new();
        // The shards the partition took over, unless a later move owns them here; then its
        // entities, those it owns here (see `crate::shards`).
        for (shard, generation) in body.taken {
            if let Some(owners) = self.owners.claim(shard, self.group, generation) {
                writes.push(GroupWrite::State {
                    group: crate::META_GROUP,
                    name: OWNERS.to_string(),
                    value: Some(owners),
                });
            }
        }
        writes.extend(self.replace(|id| self.owns(id), body.data)?);
        writes.push(self.set_frozen(body.frozen.into_iter().collect())?);
        writes.push(self.state_write(APPLIED, encode("the applied log id", &meta.last_log_id)?));
        writes.push(self.state_write(
            MEMBERSHIP,
            encode("the applied membership", &meta.last_membership)?,
        ));
        writes.push(self.state_write(SNAPSHOT, encode("the current snapshot", &(meta, &data))?));
        // Deferred as well, behind the applies that hold older state of these entities (reads
        // merge the deferred writes in order), then made durable at once.
        self.store
            .write_group_deferred(writes)
            .map_err(io::Error::other)?;
        self.flush().await?;
        state.applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        state.current = Some((meta.clone(), data));
        self.installed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<C, Self::SnapshotData>>, io::Error> {
        let state = self.state.lock().await;
        Ok(state
            .current
            .as_ref()
            .map(|(meta, data)| SnapshotOf::<C, _> {
                meta: meta.clone(),
                snapshot: Cursor::new(data.clone()),
            }))
    }
}

/// Where group `group`'s last built snapshot is kept: a file beside the database. As a value in
/// the database it was written by the group commit, and a partition's whole dump (hundreds of
/// KB) held up every append queued behind it (a hot key's p99 went from 5 to 40 ms).
fn snapshot_file(store: &Store, group: GroupId) -> PathBuf {
    let dir = store.path().parent().unwrap_or(Path::new("."));
    dir.join("raft-snapshots").join(format!("{group}.snapshot"))
}

/// The snapshot in `path`, if there is one.
fn read_snapshot_file(path: &Path) -> Result<Option<Current>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(decode("the current snapshot", &bytes)?)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::File {
            what: format!("cannot read {}", path.display()),
            source,
        }),
    }
}

/// Writes `bytes` to `path` durably: a temporary file, synced, renamed over it, and the
/// directory synced, so the file is always a whole snapshot.
fn write_snapshot_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}
