//! Raft messages an attacker would forge, shared by the peer authentication tests (secret and
//! mutual TLS): a vote that would depose every leader and a group-0 append that would install a
//! module, both from a node 9 that does not exist, at a term far above anything a test cluster
//! reaches by itself.

use cella_cluster::{Command, ModuleOp, TypeConfig, types::encode};
use cella_core::{EntityKind, ModuleVersion};
use openraft::{
    alias::{LeaderIdOf, LogIdOf, VoteOf},
    entry::RaftEntry,
    raft::{AppendEntriesRequest, VoteRequest},
    vote::RaftLeaderId,
};

pub type C = TypeConfig;

/// A term far above anything the test cluster reaches by itself.
pub const ATTACK_TERM: u64 = 1_000_000;

pub fn log_id(term: u64, node: u64, index: u64) -> LogIdOf<C> {
    LogIdOf::<C>::new(LeaderIdOf::<C>::new(term, node).to_committed(), index)
}

/// A vote an attacker posing as node 9 sends to depose the leaders, encoded.
pub fn vote() -> Vec<u8> {
    let request = VoteRequest::<C>::new(
        VoteOf::<C>::new(ATTACK_TERM, 9),
        Some(log_id(ATTACK_TERM, 9, 1_000_000)),
    );
    encode("a vote", &request).expect("a vote encodes")
}

/// A group-0 append from a forged leader that installs module `evil`.
pub fn module_append() -> AppendEntriesRequest<C> {
    let op = ModuleOp::Put {
        entity_type: "evil".into(),
        version: ModuleVersion {
            version: 1,
            digest: "sha256:00".into(),
            size: 4,
            created_ms: 0,
            kind: EntityKind::Value,
            commands: vec!["pwn".into()],
        },
        component: b"\0asm".to_vec(),
    };
    let id = log_id(ATTACK_TERM, 9, 1);
    AppendEntriesRequest {
        vote: VoteOf::<C>::new_committed(ATTACK_TERM, 9),
        prev_log_id: None,
        entries: vec![<C as openraft::RaftTypeConfig>::Entry::new_normal(
            id,
            Command::Module(op),
        )],
        leader_commit: Some(id),
    }
}
