//! The log store and state machine against openraft's storage test suite, on a real redb store
//! in a temporary directory (one fresh store per suite case).

use std::sync::Arc;

use cella_cluster::{LogStore, Placement, StateMachine, TypeConfig};
use cella_store::{Store, StoreOptions};
use openraft::{
    ErrorSubject, ErrorVerb, StorageError,
    testing::log::{StoreBuilder, Suite},
};
use tempfile::TempDir;

struct Builder;

fn storage_error(e: cella_cluster::Error) -> StorageError<TypeConfig> {
    StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Read, e.into())
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), StoreOptions::default())
            .map_err(|e| storage_error(e.into()))?;
        let log = LogStore::open(store.clone(), 3).map_err(storage_error)?;
        let placement = Placement::default();
        let owners = Arc::new(cella_cluster::shards::Owners::new(
            placement,
            Default::default(),
        ));
        let sm = StateMachine::open(store, 3, placement, owners).map_err(storage_error)?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_openraft_storage_suite() {
    Suite::test_all(Builder).await.expect("storage suite");
}

mod state_machine {
    use cella_cluster::Command;
    use cella_core::{EntityId, Journal, JournalEntry, JournalPayload, Snapshot, Write};
    use openraft::{
        Entry, EntryPayload, RaftSnapshotBuilder,
        storage::RaftStateMachine,
        testing::{blank_ent, log_id},
    };

    use super::*;

    fn entry(seq: u64) -> JournalEntry {
        JournalEntry {
            seq,
            command_id: format!("c{seq}"),
            command: "add".into(),
            timestamp_ms: 1,
            module_version: 1,
            payload: JournalPayload::State(vec![seq as u8]),
        }
    }

    fn journal(index: u64, writes: Vec<Write>) -> openraft::alias::EntryOf<TypeConfig> {
        Entry {
            log_id: log_id::<TypeConfig>(1, 1, index),
            payload: EntryPayload::Normal(Command::Journal(writes)),
        }
    }

    async fn apply(sm: &mut StateMachine, entries: Vec<openraft::alias::EntryOf<TypeConfig>>) {
        let stream = futures_util::stream::iter(entries.into_iter().map(|e| Ok((e, None))));
        sm.apply(stream).await.expect("apply");
    }

    /// Applies journal writes of two partitions, snapshots one partition on node A and
    /// installs the snapshot on node B, which had other data for that partition.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn applies_journal_writes_and_moves_a_partition_by_snapshot() {
        let placement = Placement {
            shards: 64,
            partitions: 2,
        };
        let ids: Vec<EntityId> = (0..20)
            .map(|k| EntityId::new("counter", format!("k{k}")))
            .collect();
        let mine: Vec<&EntityId> = ids
            .iter()
            .filter(|id| placement.partition(id) == 1)
            .collect();
        assert!(!mine.is_empty() && mine.len() < ids.len());
        let owners = || {
            Arc::new(cella_cluster::shards::Owners::new(
                placement,
                Default::default(),
            ))
        };

        let dir_a = tempfile::tempdir().unwrap();
        let store_a = Store::open(dir_a.path(), StoreOptions::default()).unwrap();
        let mut sm_a = StateMachine::open(store_a.clone(), 1, placement, owners()).unwrap();
        let mut entries = vec![blank_ent::<TypeConfig>(1, 1, 1)];
        for (i, id) in ids.iter().enumerate() {
            entries.push(journal(
                i as u64 + 2,
                vec![
                    Write::Append(id.clone(), entry(1)),
                    Write::Append(id.clone(), entry(2)),
                ],
            ));
        }
        apply(&mut sm_a, entries).await;
        assert_eq!(sm_a.applied_index().await, ids.len() as u64 + 1);
        assert_eq!(store_a.load(&ids[0]).unwrap().last_seq(), 2);

        let snapshot = sm_a.build_snapshot().await.expect("build");
        assert_eq!(
            snapshot.meta.last_log_id.map(|l| l.index),
            Some(ids.len() as u64 + 1)
        );

        let dir_b = tempfile::tempdir().unwrap();
        let store_b = Store::open(dir_b.path(), StoreOptions::default()).unwrap();
        let stale = mine[0].clone();
        store_b
            .write_group(vec![
                cella_store::GroupWrite::Entity(Write::Append(stale.clone(), entry(1))),
                cella_store::GroupWrite::Entity(Write::Append(stale.clone(), entry(2))),
                cella_store::GroupWrite::Entity(Write::Append(stale.clone(), entry(3))),
                cella_store::GroupWrite::Entity(Write::Snapshot(
                    EntityId::new("counter", "gone"),
                    Snapshot {
                        seq: 9,
                        module_version: 1,
                        state: vec![],
                    },
                )),
            ])
            .await
            .unwrap();
        let mut sm_b = StateMachine::open(store_b.clone(), 1, placement, owners()).unwrap();
        sm_b.install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .expect("install");
        for id in &ids {
            let expected = if placement.partition(id) == 1 { 2 } else { 0 };
            assert_eq!(store_b.load(id).unwrap().last_seq(), expected, "{id:?}");
        }
        if placement.partition(&EntityId::new("counter", "gone")) == 1 {
            assert_eq!(
                store_b
                    .load(&EntityId::new("counter", "gone"))
                    .unwrap()
                    .last_seq(),
                0
            );
        }

        // Both survive a restart with their applied log id and current snapshot.
        drop(sm_b);
        store_b.close().unwrap();
        let store_b = Store::open(dir_b.path(), StoreOptions::default()).unwrap();
        let mut sm_b = StateMachine::open(store_b, 1, placement, owners()).unwrap();
        assert_eq!(sm_b.applied_index().await, ids.len() as u64 + 1);
        let current = sm_b.get_current_snapshot().await.unwrap().expect("current");
        assert_eq!(current.meta, snapshot.meta);
    }
}

/// A shard moved from partition 1 to 2 on one node's store: the move's data replaces the
/// shard's rows, partition 1's later (older) writes of it are ignored, a late move of an
/// earlier generation changes nothing, and partition 2's snapshot carries the shard to a
/// node that never replicated partition 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_shard_takes_only_its_new_partitions_writes() {
    use cella_cluster::{
        Command,
        shards::{Owners, ShardData, ShardOp},
    };
    use cella_core::{EntityId, Journal, JournalEntry, JournalPayload, Write};
    use openraft::{
        Entry, EntryPayload, RaftSnapshotBuilder, storage::RaftStateMachine, testing::log_id,
    };

    let placement = Placement {
        shards: 64,
        partitions: 2,
    };
    let id = (0..)
        .map(|k| EntityId::new("counter", format!("k{k}")))
        .find(|id| placement.partition(id) == 1)
        .unwrap();
    let shard = placement.shard(&id);
    let entry = |seq: u64, byte: u8| JournalEntry {
        seq,
        command_id: format!("c{seq}"),
        command: "add".into(),
        timestamp_ms: 1,
        module_version: 1,
        payload: JournalPayload::State(vec![byte]),
    };
    let normal = |index: u64, command: Command| Entry {
        log_id: log_id::<TypeConfig>(1, 1, index),
        payload: EntryPayload::Normal(command),
    };
    async fn apply(sm: &mut StateMachine, entries: Vec<openraft::alias::EntryOf<TypeConfig>>) {
        let stream = futures_util::stream::iter(entries.into_iter().map(|e| Ok((e, None))));
        sm.apply(stream).await.expect("apply");
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let owners = Arc::new(Owners::new(placement, Default::default()));
    let mut one = StateMachine::open(store.clone(), 1, placement, owners.clone()).unwrap();
    let mut two = StateMachine::open(store.clone(), 2, placement, owners.clone()).unwrap();
    apply(
        &mut one,
        vec![normal(
            1,
            Command::Journal(vec![Write::Append(id.clone(), entry(1, 1))]),
        )],
    )
    .await;
    // The move: the shard's data as of the freeze (two entries), generation 7.
    let data = ShardData {
        entities: vec![(id.clone(), None, vec![entry(1, 1), entry(2, 2)])],
        rows: Vec::new(),
    };
    let move_in = |generation| {
        Command::Shard(ShardOp::MoveIn {
            shard,
            generation,
            data: data.clone(),
        })
    };
    apply(&mut two, vec![normal(1, move_in(7))]).await;
    assert_eq!(owners.owner(shard), (2, 7));
    assert_eq!(store.load(&id).unwrap().last_seq(), 2);
    // Partition 1, behind, applies its own older write of the shard: ignored.
    apply(
        &mut one,
        vec![normal(
            2,
            Command::Journal(vec![Write::Append(id.clone(), entry(3, 9))]),
        )],
    )
    .await;
    assert_eq!(store.load(&id).unwrap().last_seq(), 2);
    // Partition 2's writes land; a move of an earlier generation changes nothing.
    apply(
        &mut two,
        vec![
            normal(
                2,
                Command::Journal(vec![Write::Append(id.clone(), entry(3, 3))]),
            ),
            normal(
                3,
                Command::Shard(ShardOp::MoveIn {
                    shard,
                    generation: 5,
                    data: ShardData::default(),
                }),
            ),
        ],
    )
    .await;
    assert_eq!(owners.owner(shard), (2, 7));
    let load = store.load(&id).unwrap();
    assert_eq!(load.last_seq(), 3);
    assert_eq!(load.entries[2].payload, JournalPayload::State(vec![3]));
    // Partition 2's snapshot brings the shard to a node that never replicated partition 1.
    let snapshot = two.build_snapshot().await.expect("build");
    let dir_b = tempfile::tempdir().unwrap();
    let store_b = Store::open(dir_b.path(), StoreOptions::default()).unwrap();
    let owners_b = Arc::new(Owners::new(placement, Default::default()));
    let mut two_b = StateMachine::open(store_b.clone(), 2, placement, owners_b.clone()).unwrap();
    two_b
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .expect("install");
    assert_eq!(owners_b.owner(shard), (2, 7));
    assert_eq!(store_b.load(&id).unwrap().last_seq(), 3);
}

/// A partition tells the node of each shard it serves again: one moved in, and one unfrozen
/// after its move was abandoned (its calls and timers, refused while it was frozen, are then
/// carried out again); lifting a freeze that was not there tells nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_tells_of_the_shards_it_serves_again() {
    use cella_cluster::{
        Command,
        shards::{Owners, ShardData, ShardOp},
    };
    use openraft::{Entry, EntryPayload, storage::RaftStateMachine, testing::log_id};

    let placement = Placement {
        shards: 64,
        partitions: 2,
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let owners = Arc::new(Owners::new(placement, Default::default()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut sm = StateMachine::open(store, 1, placement, owners)
        .unwrap()
        .with_moved_in(tx);
    let ops = [
        ShardOp::Freeze { shard: 3 },
        ShardOp::Unfreeze { shard: 3 },
        ShardOp::Unfreeze { shard: 3 },
        ShardOp::MoveIn {
            shard: 9,
            generation: 4,
            data: ShardData::default(),
        },
    ];
    let entries = (1..).zip(ops).map(|(index, op)| {
        Ok((
            Entry {
                log_id: log_id::<TypeConfig>(1, 1, index),
                payload: EntryPayload::Normal(Command::Shard(op)),
            },
            None,
        ))
    });
    sm.apply(futures_util::stream::iter(entries.collect::<Vec<_>>()))
        .await
        .expect("apply");
    let mut told = Vec::new();
    while let Ok(served) = rx.try_recv() {
        told.push(served);
    }
    assert_eq!(told, [(1, 3), (1, 9)]);
}

/// More entries than the log keeps in memory: the older ones are read back from disk, in
/// order, both while the group runs and after it reopens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_beyond_the_memory_cache_are_read_from_disk() {
    use openraft::{
        RaftLogReader,
        storage::{IOFlushed, RaftLogStorage},
        testing::{blank_ent, log_id},
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open the store");
    let mut log = LogStore::open(store.clone(), 5).expect("open the log");
    let n = cella_cluster::log_store::CACHED as u64 * 2 + 17;
    for index in 1..=n {
        let (tx, rx) = <TypeConfig as openraft::type_config::TypeConfigExt>::oneshot();
        log.append(
            [blank_ent::<TypeConfig>(1, 1, index)],
            IOFlushed::signal(tx),
        )
        .await
        .expect("append");
        rx.await.expect("flushed").expect("durable");
    }
    let check = |entries: Vec<openraft::alias::EntryOf<TypeConfig>>, from: u64, to: u64| {
        let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, (from..=to).collect::<Vec<_>>());
    };
    check(log.try_get_log_entries(1..=n).await.expect("read"), 1, n);
    check(log.try_get_log_entries(3..40).await.expect("read"), 3, 39);
    check(
        log.try_get_log_entries(n - 5..).await.expect("read"),
        n - 5,
        n,
    );
    drop(log);
    let mut reopened = LogStore::open(store, 5).expect("reopen the log");
    check(reopened.try_get_log_entries(..).await.expect("read"), 1, n);
    assert_eq!(
        reopened.get_log_state().await.expect("state").last_log_id,
        Some(log_id::<TypeConfig>(1, 1, n))
    );
}
