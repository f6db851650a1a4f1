//! Helpers shared by the store's integration tests: sample records and store setup.
#![allow(dead_code)]

use std::path::Path;

use cella_core::{EntityId, JournalEntry, JournalPayload, Snapshot, Write};
use cella_store::{Store, StoreOptions};

pub fn id(key: &str) -> EntityId {
    EntityId::new("counter", key)
}

pub fn entry(seq: u64) -> JournalEntry {
    JournalEntry {
        seq,
        command_id: format!("c-{seq}"),
        command: "add".into(),
        timestamp_ms: 1_700_000_000_000 + seq,
        module_version: 1,
        payload: JournalPayload::Events(vec![format!("{{\"n\":{seq}}}").into_bytes()]),
    }
}

pub fn append(key: &str, seq: u64) -> Write {
    Write::Append(id(key), entry(seq))
}

pub fn snapshot(seq: u64) -> Snapshot {
    Snapshot {
        seq,
        module_version: 1,
        state: format!("state@{seq}").into_bytes(),
    }
}

/// The sequence numbers `read_journal` gives for `key` from `from`, at most `limit`.
pub fn journal_seqs(store: &Store, key: &str, from: u64, limit: usize) -> Vec<u64> {
    use cella_core::Journal;
    store
        .read_journal(&id(key), from, limit)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect()
}

pub fn open(dir: &Path) -> Store {
    Store::open(dir, StoreOptions::default()).unwrap()
}
