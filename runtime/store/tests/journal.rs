//! Journal behaviour of the store: round trips, group commit, durability on resolve, ordering,
//! close and reopen, and the format check.

mod common;

use std::sync::Arc;

use cella_core::{EntityId, EntityLoad, Journal, JournalEntry, JournalPayload, Write};
use cella_store::{Error, Store, StoreOptions};
use common::{append, entry, id, journal_seqs, open, snapshot};

/// Copies the database file of a store that is still open and opens the copy: what the copy
/// holds is what had reached the file when it was taken.
fn open_copy(store: &Store) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(store.path(), dir.path().join(cella_store::DB_FILE)).unwrap();
    let copy = open(dir.path());
    (dir, copy)
}

#[tokio::test]
async fn append_load_snapshot_trim_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.load(&id("a")).unwrap(), EntityLoad::default());

    store
        .append(vec![append("a", 1), append("a", 2)])
        .await
        .unwrap();
    store.append(vec![append("a", 3)]).await.unwrap();
    let load = store.load(&id("a")).unwrap();
    assert_eq!(load.snapshot, None);
    assert_eq!(load.entries, vec![entry(1), entry(2), entry(3)]);
    assert_eq!(load.last_seq(), 3);

    // A snapshot at 2 hides entries 1..=2 from `load` even before they are trimmed.
    store
        .append(vec![Write::Snapshot(id("a"), snapshot(2))])
        .await
        .unwrap();
    let load = store.load(&id("a")).unwrap();
    assert_eq!(load.snapshot, Some(snapshot(2)));
    assert_eq!(load.entries, vec![entry(3)]);
    assert_eq!(store.read_journal(&id("a"), 1, 10).unwrap().len(), 3);

    // Snapshot, trim and append in one atomic request.
    store
        .append(vec![
            append("a", 4),
            Write::Snapshot(id("a"), snapshot(4)),
            Write::Trim(id("a"), 4),
        ])
        .await
        .unwrap();
    let load = store.load(&id("a")).unwrap();
    assert_eq!(load.snapshot, Some(snapshot(4)));
    assert!(load.entries.is_empty());
    assert_eq!(load.last_seq(), 4);
    assert!(store.read_journal(&id("a"), 0, 10).unwrap().is_empty());

    store.append(vec![append("a", 5)]).await.unwrap();
    assert_eq!(store.load(&id("a")).unwrap().entries, vec![entry(5)]);
}

#[tokio::test]
async fn read_journal_from_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append((1..=10).map(|s| append("a", s)).collect())
        .await
        .unwrap();
    let seqs = |from, limit| journal_seqs(&store, "a", from, limit);
    assert_eq!(seqs(0, 100), (1..=10).collect::<Vec<_>>());
    assert_eq!(seqs(4, 3), vec![4, 5, 6]);
    assert_eq!(seqs(10, 3), vec![10]);
    assert_eq!(seqs(11, 3), Vec::<u64>::new());
    assert_eq!(seqs(1, 0), Vec::<u64>::new());
    store.append(vec![Write::Trim(id("a"), 5)]).await.unwrap();
    assert_eq!(seqs(0, 100), vec![6, 7, 8, 9, 10]);
}

#[tokio::test]
async fn entities_do_not_bleed_into_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Keys that are prefixes of each other, and a type that is a prefix of another.
    let ids = [
        EntityId::new("t", "a"),
        EntityId::new("t", "ab"),
        EntityId::new("ta", "b"),
        EntityId::new("t", ""),
    ];
    for (n, id) in ids.iter().enumerate() {
        let writes = (1..=n as u64 + 1)
            .map(|s| Write::Append(id.clone(), entry(s)))
            .collect();
        store.append(writes).await.unwrap();
    }
    store
        .append(vec![Write::Snapshot(ids[0].clone(), snapshot(1))])
        .await
        .unwrap();
    store
        .append(vec![Write::Trim(ids[1].clone(), u64::MAX)])
        .await
        .unwrap();

    assert_eq!(store.load(&ids[0]).unwrap().snapshot, Some(snapshot(1)));
    assert!(store.load(&ids[0]).unwrap().entries.is_empty());
    assert!(store.load(&ids[1]).unwrap().entries.is_empty());
    assert_eq!(store.load(&ids[1]).unwrap().snapshot, None);
    assert_eq!(store.load(&ids[2]).unwrap().entries.len(), 3);
    assert_eq!(store.load(&ids[3]).unwrap().entries.len(), 4);
    assert_eq!(store.read_journal(&ids[2], 0, 100).unwrap().len(), 3);
}

#[tokio::test]
async fn resolved_append_is_already_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append(vec![append("a", 1), Write::Snapshot(id("b"), snapshot(9))])
        .await
        .unwrap();
    // The store is still open: the copy shows only what the committed transaction wrote.
    let (_copy_dir, copy) = open_copy(&store);
    assert_eq!(copy.load(&id("a")).unwrap().entries, vec![entry(1)]);
    assert_eq!(copy.load(&id("b")).unwrap().snapshot, Some(snapshot(9)));
}

#[tokio::test]
async fn later_append_durable_implies_earlier_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Submitted in order, only the last one awaited.
    let mut futures: Vec<_> = (1..=200)
        .map(|s| store.append(vec![append("a", s)]))
        .collect();
    let last = futures.pop().unwrap();
    last.await.unwrap();
    let (_copy_dir, copy) = open_copy(&store);
    let seqs: Vec<u64> = copy
        .load(&id("a"))
        .unwrap()
        .entries
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    for f in futures {
        f.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_appends_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let start = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let key = format!("k{i}");
                store
                    .append(vec![append(&key, 1), append(&key, 2)])
                    .await
                    .unwrap();
                store.append(vec![append(&key, 3)]).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.append_requests, 128);
    assert_eq!(stats.appended_writes, 192);
    assert!(stats.commits < 128, "no batching: {stats:?}");
    assert_eq!(stats.batch_sizes.iter().sum::<u64>(), stats.commits);
    assert_eq!(stats.batch_size_sum, stats.append_requests);
    assert_eq!(stats.cumulative().last(), Some(&stats.commits));
    assert_eq!(stats.failed_commits + stats.failed_requests, 0);
    assert!(stats.commit_micros > 0);
    for i in 0..64 {
        assert_eq!(store.load(&id(&format!("k{i}"))).unwrap().last_seq(), 3);
    }
}

#[tokio::test]
async fn max_batch_and_linger_are_respected() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        max_batch: 4,
        linger: std::time::Duration::from_millis(2),
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), options).unwrap();
    let futures: Vec<_> = (1..=20)
        .map(|s| store.append(vec![append("a", s)]))
        .collect();
    for f in futures {
        f.await.unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.append_requests, 20);
    // No batch above 4 requests: buckets past `le=4` are empty.
    assert_eq!(stats.batch_sizes[3..].iter().sum::<u64>(), 0, "{stats:?}");
    assert!(stats.commits >= 5);
    assert_eq!(store.load(&id("a")).unwrap().last_seq(), 20);
}

#[tokio::test]
async fn empty_append_is_a_barrier() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = store.append(vec![append("a", 1)]);
    store.append(Vec::new()).await.unwrap();
    let (_copy_dir, copy) = open_copy(&store);
    assert_eq!(copy.load(&id("a")).unwrap().last_seq(), 1);
    first.await.unwrap();
    store.append(Vec::new()).await.unwrap();
}

#[tokio::test]
async fn data_survives_reopen_and_drop_releases_the_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let clone = store.clone();
        clone
            .append(vec![append("a", 1), Write::Snapshot(id("a"), snapshot(1))])
            .await
            .unwrap();
        drop(store);
        clone.append(vec![append("a", 2)]).await.unwrap();
        // Dropping the last handle stops the writer and closes the file.
    }
    let store = open(dir.path());
    let load = store.load(&id("a")).unwrap();
    assert_eq!(load.snapshot, Some(snapshot(1)));
    assert_eq!(load.entries, vec![entry(2)]);
    // A second open of the same file while it is open fails cleanly.
    assert!(matches!(
        Store::open(dir.path(), StoreOptions::default()),
        Err(Error::Storage { .. })
    ));
}

#[tokio::test]
async fn close_finishes_queued_appends_then_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let clone = store.clone();
    let pending: Vec<_> = (1..=50)
        .map(|s| store.append(vec![append("a", s)]))
        .collect();
    store.close().unwrap();
    for f in pending {
        f.await.unwrap();
    }
    let err = clone.append(vec![append("a", 51)]).await.unwrap_err();
    assert!(matches!(err, cella_core::Error::Storage(_)), "{err}");
    assert!(clone.load(&id("a")).is_err());
    assert!(matches!(clone.modules(), Err(Error::Closed)));
    store.close().unwrap();

    // The file was released: it reopens while the closed handles still exist.
    let reopened = open(dir.path());
    assert_eq!(reopened.load(&id("a")).unwrap().last_seq(), 50);
}

#[test]
fn opens_in_a_new_nested_directory() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/c");
    let store = open(&nested);
    assert_eq!(store.path(), nested.join("cella.redb"));
    assert!(store.path().exists());
}

#[test]
fn rejects_a_foreign_format_version() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).close().unwrap();
    {
        let db = redb::Database::create(dir.path().join("cella.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<&str, u32> = redb::TableDefinition::new("meta");
            txn.open_table(meta)
                .unwrap()
                .insert("format_version", 99)
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::FormatMismatch {
                found: Some(99),
                expected: cella_store::STORE_FORMAT_VERSION
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("format version 99"), "{err}");
}

#[test]
fn rejects_a_database_that_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = redb::Database::create(dir.path().join("cella.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let other: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("other");
            txn.open_table(other).unwrap().insert(1, 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(
        matches!(err, Error::FormatMismatch { found: None, .. }),
        "{err}"
    );

    let garbage = tempfile::tempdir().unwrap();
    std::fs::write(garbage.path().join("cella.redb"), vec![0xAB; 8192]).unwrap();
    let err = Store::open(garbage.path(), StoreOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Storage { .. }), "{err}");
}

#[test]
fn errors_convert_to_core_errors() {
    let core: cella_core::Error = Error::Closed.into();
    assert!(matches!(core, cella_core::Error::Storage(_)) && core.to_string().contains("closed"));
    let core: cella_core::Error = Error::Core(cella_core::Error::Corrupt("x".into())).into();
    assert!(matches!(core, cella_core::Error::Corrupt(_)));
}

#[test]
fn store_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Store>();
}

#[tokio::test]
async fn entity_keys_lists_each_entity_once_per_type() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let mut writes = Vec::new();
    for (t, k) in [
        ("a", "x"),
        ("b", "k1"),
        ("b", "k2"),
        ("b", "k10"),
        ("c", "z"),
    ] {
        for seq in 1..=3 {
            writes.push(Write::Append(
                EntityId::new(t, k),
                JournalEntry {
                    seq,
                    command_id: format!("{t}{k}{seq}"),
                    command: "c".into(),
                    timestamp_ms: 0,
                    module_version: 1,
                    payload: JournalPayload::State(vec![seq as u8]),
                },
            ));
        }
    }
    store.append(writes).await.unwrap();
    assert_eq!(
        store.entity_keys("b", None, 10).unwrap(),
        vec!["k1", "k10", "k2"]
    );
    assert_eq!(store.entity_keys("b", None, 2).unwrap(), vec!["k1", "k10"]);
    assert_eq!(store.entity_keys("b", Some("k10"), 10).unwrap(), vec!["k2"]);
    assert!(store.entity_keys("nope", None, 10).unwrap().is_empty());
}
