//! Deferred state-machine writes: readable at once through every read, written in bulk when
//! due (a slice per commit), when asked, and on close, in order (a deferred clear replaces
//! what came before it); log writes are refused.

mod common;

use std::time::{Duration, Instant};

use cella_core::{EntityLoad, Journal, Write};
use cella_store::{Error, GroupWrite, Store, StoreOptions};
use common::{append, entry, id, journal_seqs, snapshot};

fn open_with(dir: &std::path::Path, defer_for: Duration, defer_max_writes: usize) -> Store {
    open_sliced(dir, defer_for, defer_max_writes, 1_000)
}

fn open_sliced(
    dir: &std::path::Path,
    defer_for: Duration,
    defer_max_writes: usize,
    defer_slice_writes: usize,
) -> Store {
    let options = StoreOptions {
        defer_for,
        defer_max_writes,
        defer_slice_writes,
        ..StoreOptions::default()
    };
    Store::open(dir, options).unwrap()
}

/// Never due on its own within a test.
const LONG: Duration = Duration::from_secs(3600);

/// A copy of the database file as it is now, opened: what reached the file.
fn on_disk(store: &Store) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(store.path(), dir.path().join(cella_store::DB_FILE)).unwrap();
    let copy = open_with(dir.path(), LONG, 1_000);
    (dir, copy)
}

fn entity(write: Write) -> GroupWrite {
    GroupWrite::Entity(write)
}

fn applied(value: &[u8]) -> GroupWrite {
    GroupWrite::State {
        group: 7,
        name: "applied".into(),
        value: Some(value.to_vec()),
    }
}

/// What every read says about the sample entities `a` and `b` and group 7's value.
fn assert_reads(store: &Store) {
    let a = store.load(&id("a")).unwrap();
    assert_eq!(a.snapshot, Some(snapshot(3)), "a's pending snapshot");
    assert_eq!(
        a.entries,
        vec![entry(4)],
        "only entries past the snapshot load"
    );
    let seqs = |from, limit| journal_seqs(store, "a", from, limit);
    assert_eq!(
        seqs(0, 10),
        [2, 3, 4],
        "entry 1 is trimmed by a pending trim"
    );
    assert_eq!(seqs(3, 10), [3, 4]);
    assert_eq!(seqs(0, 2), [2, 3], "the limit counts what the trim left");
    assert_eq!(store.load(&id("b")).unwrap().entries, vec![entry(1)]);
    assert_eq!(
        store.entity_keys("counter", None, 10).unwrap(),
        ["a", "b"],
        "b has only pending entries"
    );
    assert_eq!(store.entity_keys("counter", Some("a"), 10).unwrap(), ["b"]);
    assert_eq!(store.entity_keys("counter", None, 1).unwrap(), ["a"]);
    assert_eq!(
        store.group_state(7, "applied").unwrap(),
        Some(b"4".to_vec())
    );
    let dump = store.dump_entities(|_| true).unwrap();
    let dumped: Vec<(&str, Vec<u64>)> = dump
        .iter()
        .map(|(id, load)| {
            (
                id.key.as_str(),
                load.entries.iter().map(|e| e.seq).collect(),
            )
        })
        .collect();
    assert_eq!(dumped, [("a", vec![2, 3, 4]), ("b", vec![1])]);
}

/// Entries 1 and 2 of `a` on disk; the rest deferred.
async fn sample(store: &Store) {
    store
        .append(vec![append("a", 1), append("a", 2)])
        .await
        .unwrap();
    store
        .write_group_deferred(vec![
            entity(append("a", 3)),
            applied(b"3"),
            entity(Write::Snapshot(id("a"), snapshot(3))),
            entity(Write::Trim(id("a"), 1)),
            entity(append("a", 4)),
            entity(append("b", 1)),
            applied(b"4"),
        ])
        .unwrap();
}

#[tokio::test]
async fn deferred_writes_are_read_at_once_and_written_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), LONG, 1_000);
    sample(&store).await;
    assert_reads(&store);
    assert_eq!(store.stats().deferred_writes, 0, "nothing written yet");
    {
        let (_dir, disk) = on_disk(&store);
        assert_eq!(
            disk.load(&id("a")).unwrap().entries,
            vec![entry(1), entry(2)]
        );
        assert_eq!(disk.load(&id("b")).unwrap(), EntityLoad::default());
        assert_eq!(disk.group_state(7, "applied").unwrap(), None);
    }

    store.flush_deferred().await.unwrap();
    let stats = store.stats();
    // Six, not seven: the second `applied` replaced the first while both were pending.
    assert_eq!((stats.deferred_flushes, stats.deferred_writes), (1, 6));
    assert_reads(&store);
    let (_dir, disk) = on_disk(&store);
    assert_reads(&disk);

    // Nothing left to write: a second flush commits nothing.
    store.flush_deferred().await.unwrap();
    assert_eq!(store.stats().deferred_flushes, 1);
}

#[tokio::test]
async fn deferred_writes_are_written_when_the_store_closes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), LONG, 1_000);
    sample(&store).await;
    store.close().unwrap();
    let store = open_with(dir.path(), LONG, 1_000);
    assert_reads(&store);
}

/// Polls `store`'s stats until `done` holds, for at most 10 s.
async fn wait_for(store: &Store, done: impl Fn(&cella_store::StoreStats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(&store.stats()) {
        assert!(Instant::now() < deadline, "stats: {:?}", store.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn deferred_writes_fall_due_after_their_time_without_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), Duration::from_millis(20), 1_000);
    sample(&store).await;
    wait_for(&store, |s| s.deferred_writes == 6).await;
    let (_dir, disk) = on_disk(&store);
    assert_reads(&disk);
}

#[tokio::test]
async fn deferred_writes_fall_due_once_enough_wait() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), LONG, 3);
    store
        .write_group_deferred(vec![entity(append("a", 1)), entity(append("a", 2))])
        .unwrap();
    // Two of three: not due; a request passes without them.
    store.append(vec![append("c", 1)]).await.unwrap();
    assert_eq!(store.stats().deferred_writes, 0);
    store
        .write_group_deferred(vec![entity(append("a", 3))])
        .unwrap();
    wait_for(&store, |s| s.deferred_writes == 3).await;
    let (_dir, disk) = on_disk(&store);
    assert_eq!(disk.load(&id("a")).unwrap().entries.len(), 3);
}

#[tokio::test]
async fn a_deferred_clear_replaces_what_came_before_it_on_disk_and_pending() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), LONG, 1_000);
    store
        .append(vec![append("a", 1), append("a", 2)])
        .await
        .unwrap();
    // A state machine replacing its entities (a snapshot installed): older applies pending,
    // then the clear and the snapshot's state, deferred behind them.
    store
        .write_group_deferred(vec![entity(append("a", 3)), entity(append("a", 4))])
        .unwrap();
    store
        .write_group_deferred(vec![
            GroupWrite::ClearEntity(id("a")),
            entity(Write::Snapshot(id("a"), snapshot(9))),
            entity(append("a", 10)),
        ])
        .unwrap();
    let replaced = EntityLoad {
        snapshot: Some(snapshot(9)),
        entries: vec![entry(10)],
    };
    assert_eq!(store.load(&id("a")).unwrap(), replaced, "pending");
    assert_eq!(journal_seqs(&store, "a", 0, 10), [10]);
    store.flush_deferred().await.unwrap();
    assert_eq!(store.load(&id("a")).unwrap(), replaced, "written");
    let (_dir, disk) = on_disk(&store);
    assert_eq!(disk.load(&id("a")).unwrap(), replaced, "on disk");
}

#[tokio::test]
async fn log_writes_cannot_be_deferred() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), LONG, 1_000);
    let refused = store.write_group_deferred(vec![
        entity(append("a", 1)),
        GroupWrite::LogPut {
            group: 1,
            index: 1,
            entry: vec![1],
        },
    ]);
    assert!(
        matches!(refused, Err(Error::NotDeferrable("a log append"))),
        "{refused:?}"
    );
    // Refused whole: the entity write in the same call was not taken either.
    assert_eq!(store.load(&id("a")).unwrap(), EntityLoad::default());
}

/// A long journal on disk with pending appends and trims on top: a bounded read from anywhere
/// answers exactly what a full merge would, limit and all (it reads only what it may return).
#[tokio::test]
async fn bounded_reads_of_a_long_journal_with_pending_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), LONG, 100_000);
    let on_disk: Vec<Write> = (1..=500).map(|s| append("t", s)).collect();
    store.append(on_disk).await.unwrap();
    store
        .write_group_deferred(vec![
            entity(append("t", 501)),
            entity(Write::Trim(id("t"), 100)),
            entity(append("t", 502)),
            entity(Write::Trim(id("t"), 120)),
            entity(append("t", 503)),
        ])
        .unwrap();
    let seqs = |from, limit| journal_seqs(&store, "t", from, limit);
    assert_eq!(seqs(0, 3), [121, 122, 123], "both pending trims apply");
    assert_eq!(seqs(110, 2), [121, 122]);
    assert_eq!(seqs(300, 3), [300, 301, 302]);
    assert_eq!(
        seqs(499, 10),
        [499, 500, 501, 502, 503],
        "disk then pending"
    );
    assert_eq!(seqs(502, 10), [502, 503], "pending only");
    assert_eq!(seqs(0, 10_000).len(), 383);
    // A pending clear drops what is on disk; appends after it count.
    store
        .write_group_deferred(vec![
            GroupWrite::ClearEntity(id("t")),
            entity(append("t", 1)),
            entity(append("t", 2)),
        ])
        .unwrap();
    assert_eq!(seqs(0, 10), [1, 2]);
    assert_eq!(seqs(2, 1), [2]);
}

#[tokio::test]
async fn a_due_flush_is_written_a_slice_per_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sliced(dir.path(), Duration::from_millis(10), 1_000, 2);
    let mut writes = Vec::new();
    for key in ["d", "b", "a", "c"] {
        writes.push(entity(append(key, 1)));
        writes.push(entity(append(key, 2)));
    }
    writes.push(applied(b"8"));
    store.write_group_deferred(writes).unwrap();
    wait_for(&store, |s| s.deferred_writes == 9).await;
    let stats = store.stats();
    // Two entities' writes per slice would be four: one entity's each, the group value with
    // the last one.
    assert_eq!((stats.commits, stats.deferred_flushes), (4, 4), "{stats:?}");
    let (_dir, disk) = on_disk(&store);
    for key in ["a", "b", "c", "d"] {
        assert_eq!(disk.load(&id(key)).unwrap().entries, [entry(1), entry(2)]);
    }
    assert_eq!(disk.group_state(7, "applied").unwrap(), Some(b"8".to_vec()));
}

/// A flush of one write per commit, read from while it is under way: every read sees every
/// deferred write, an append made meanwhile commits without waiting for the rest of the flush,
/// and asking for the deferred writes writes the rest at once.
#[tokio::test]
async fn a_flush_under_way_is_read_through_and_holds_up_no_append() {
    const KEYS: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let store = open_sliced(dir.path(), Duration::from_millis(1), 100_000, 1);
    let key = |i: usize| format!("k{i:04}");
    let mut writes: Vec<GroupWrite> = (0..KEYS).map(|i| entity(append(&key(i), 1))).collect();
    writes.push(applied(b"1"));
    store.write_group_deferred(writes).unwrap();
    wait_for(&store, |s| s.deferred_flushes >= 1).await;

    let appended = store.append(vec![append("other", 1)]).await;
    appended.unwrap();
    let stats = store.stats();
    assert!(
        stats.deferred_writes < KEYS as u64,
        "the append waited for the whole flush: {stats:?}"
    );
    let mut read_mid_flush = 0;
    for i in 0..KEYS {
        let before = store.stats().deferred_writes;
        assert_eq!(store.load(&id(&key(i))).unwrap().entries, [entry(1)], "{i}");
        assert_eq!(
            store.group_state(7, "applied").unwrap(),
            Some(b"1".to_vec())
        );
        if store.stats().deferred_writes < KEYS as u64 && before > 0 {
            read_mid_flush += 1;
        }
    }
    assert!(read_mid_flush > 0, "no read happened during the flush");

    store.flush_deferred().await.unwrap();
    let (_dir, disk) = on_disk(&store);
    for i in 0..KEYS {
        assert_eq!(disk.load(&id(&key(i))).unwrap().entries, [entry(1)], "{i}");
    }
    assert_eq!(disk.load(&id("other")).unwrap().entries, [entry(1)]);
    assert_eq!(disk.group_state(7, "applied").unwrap(), Some(b"1".to_vec()));
}
