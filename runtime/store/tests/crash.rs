//! Crash consistency: a child process appends and reports every acknowledged append on stdout;
//! it is killed with SIGKILL, and every acknowledged append must be in the reopened store.
//!
//! The child is this test binary itself, re-executed to run only [`crash_child`] with
//! `CELLA_STORE_CRASH_DIR` set; without that variable `crash_child` does nothing.

mod common;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write as _},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use cella_core::{Journal, Write};
use common::{append, id, open, snapshot};

const DIR_VAR: &str = "CELLA_STORE_CRASH_DIR";
const WRITERS: usize = 8;
/// Acknowledgements to see before the kill.
const ACKS_BEFORE_KILL: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_child() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let store = open(std::path::Path::new(&dir));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = format!("w{w}");
                for seq in 1..=1_000_000u64 {
                    let mut writes = vec![append(&key, seq)];
                    // Now and then snapshot and trim, as the entity layer does.
                    if seq.is_multiple_of(25) {
                        writes.push(Write::Snapshot(id(&key), snapshot(seq)));
                        writes.push(Write::Trim(id(&key), seq));
                    }
                    store.append(writes).await.unwrap();
                    let mut out = std::io::stdout().lock();
                    if writeln!(out, "ACK {key} {seq}")
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        return; // the parent is gone
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let acked = run_and_kill(dir.path());
        assert!(
            acked.values().sum::<u64>() >= ACKS_BEFORE_KILL as u64,
            "round {round}"
        );

        let store = open(dir.path());
        for (key, &max_acked) in &acked {
            let load = store.load(&id(key)).unwrap();
            assert!(
                load.last_seq() >= max_acked,
                "round {round}: {key} acknowledged up to {max_acked}, store has {}",
                load.last_seq()
            );
            // What is there is consistent: the snapshot, then consecutive entries after it.
            let base = load.snapshot.as_ref().map_or(0, |s| s.seq);
            let seqs: Vec<u64> = load.entries.iter().map(|e| e.seq).collect();
            let expected: Vec<u64> = (base + 1..=load.last_seq()).collect();
            assert_eq!(seqs, expected, "round {round}: {key}");
            assert!(
                base.is_multiple_of(25),
                "round {round}: {key} snapshot at {base}"
            );
        }
        // The store is fully usable after the crash.
        store
            .append(vec![append("after-crash", 1)])
            .await_blocking();
        assert_eq!(store.load(&id("after-crash")).unwrap().last_seq(), 1);
    }
}

/// Starts the child on `dir`, kills it after `ACKS_BEFORE_KILL` acknowledgements, and returns
/// the highest acknowledged seq per key (every line the child printed, the last ones included).
fn run_and_kill(dir: &std::path::Path) -> BTreeMap<String, u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(DIR_VAR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut acked = BTreeMap::new();
    let mut count = 0;
    // The harness may print its own text in front of the first acknowledgement.
    let record = |line: String, acked: &mut BTreeMap<String, u64>| {
        let Some(at) = line.find("ACK ") else {
            return false;
        };
        let mut parts = line[at..].split_whitespace().skip(1);
        {
            let key = parts.next().unwrap().to_string();
            let seq: u64 = parts.next().unwrap().parse().unwrap();
            let max = acked.entry(key).or_insert(0);
            assert_eq!(seq, *max + 1, "acknowledgements of one key come in order");
            *max = seq;
        }
        true
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while count < ACKS_BEFORE_KILL {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("child too slow");
        let line = rx.recv_timeout(left).expect("child stopped acknowledging");
        if record(line, &mut acked) {
            count += 1;
        }
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the child ended by itself before the kill: {status}"
    );
    // Lines still in the pipe were printed before the kill: they count as acknowledged.
    for line in rx {
        record(line, &mut acked);
    }
    reader.join().unwrap();
    acked
}

/// Blocks on an append future from synchronous test code.
trait AwaitBlocking {
    fn await_blocking(self);
}

impl AwaitBlocking for cella_core::AppendFuture {
    fn await_blocking(self) {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(self)
            .unwrap();
    }
}
