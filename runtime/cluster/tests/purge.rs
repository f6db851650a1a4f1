//! Purging a long log: the purged id is durable when `purge` returns, the rows go in the
//! background a chunk per commit, reads never return a purged entry while rows remain, and a
//! log opened over rows an interrupted purge left skips them until the next purge removes them.

use std::time::{Duration, Instant};

use cella_cluster::{
    TypeConfig,
    log_store::{LogStore, PURGE_CHUNK},
};
use cella_store::{GroupWrite, Store, StoreOptions};
use openraft::{
    RaftLogReader,
    entry::RaftEntry,
    storage::{IOFlushed, RaftLogStorage},
    testing::{blank_ent, log_id},
    type_config::TypeConfigExt,
};

const GROUP: u64 = 3;

async fn append(log: &mut LogStore, indexes: std::ops::RangeInclusive<u64>) {
    let (tx, rx) = TypeConfig::oneshot();
    let entries = indexes.map(|i| blank_ent::<TypeConfig>(1, 1, i));
    log.append(entries, IOFlushed::signal(tx)).await.unwrap();
    rx.await.unwrap().unwrap();
}

/// The indexes a reader gets for `0..=to`.
async fn readable(log: &mut LogStore, to: u64) -> Vec<u64> {
    let mut reader = log.get_log_reader().await;
    let entries = reader.try_get_log_entries(0..=to).await.unwrap();
    entries.iter().map(|e| e.index()).collect()
}

/// Waits until `store` holds no row of the group at or below `upto`, for at most 10 s.
async fn rows_gone(store: &Store, upto: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.group_log(GROUP, 0, upto).unwrap().is_empty() {
        assert!(Instant::now() < deadline, "purged rows still on disk");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_purge_returns_at_once_and_deletes_its_rows_a_chunk_per_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let mut log = LogStore::open(store.clone(), GROUP).unwrap();
    append(&mut log, 1..=2_000).await;
    let commits = store.stats().commits;

    log.purge(log_id::<TypeConfig>(1, 1, 1_900)).await.unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|l| l.index()), Some(1_900));
    assert_eq!(state.last_log_id.map(|l| l.index()), Some(2_000));
    assert_eq!(
        readable(&mut log, 2_000).await,
        (1_901..=2_000).collect::<Vec<_>>()
    );

    rows_gone(&store, 1_900).await;
    let took = store.stats().commits - commits;
    assert!(
        took >= 1_900 / PURGE_CHUNK,
        "1,900 rows deleted in {took} commits, at most {PURGE_CHUNK} each"
    );
    assert_eq!(store.group_log(GROUP, 0, 2_000).unwrap().len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_an_interrupted_purge_left_are_skipped_then_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let mut log = LogStore::open(store.clone(), GROUP).unwrap();
    append(&mut log, 1..=600).await;
    log.purge(log_id::<TypeConfig>(1, 1, 500)).await.unwrap();
    rows_gone(&store, 500).await;
    // A row below the purged index, as a purge stopped by a restart leaves.
    let (_, bytes) = store.group_log(GROUP, 501, 501).unwrap().remove(0);
    store
        .write_group(vec![GroupWrite::LogPut {
            group: GROUP,
            index: 10,
            entry: bytes,
        }])
        .await
        .unwrap();

    let mut log = LogStore::open(store.clone(), GROUP).unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|l| l.index()), Some(500));
    assert_eq!(state.last_log_id.map(|l| l.index()), Some(600));
    assert_eq!(
        readable(&mut log, 600).await,
        (501..=600).collect::<Vec<_>>()
    );

    log.purge(log_id::<TypeConfig>(1, 1, 550)).await.unwrap();
    rows_gone(&store, 550).await;
    assert_eq!(
        readable(&mut log, 600).await,
        (551..=600).collect::<Vec<_>>()
    );
}
