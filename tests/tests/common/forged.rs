//! What the peer authentication tests (secret and mutual TLS) share: the raft messages an
//! attacker would forge — a vote that would depose every leader and a group-0 append that would
//! install a module, both from a node 9 that does not exist, at a term far above anything a test
//! cluster reaches by itself — and how a peer request is sent and its refusal checked.

use std::time::Duration;

use bytes::Bytes;
use cella_cluster::{
    Command, ModuleOp, TypeConfig,
    network::{PeerClient, PeerReply},
    types::encode,
};
use cella_core::{EntityKind, ModuleVersion};
use hyper::{Method, StatusCode};
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

/// POSTs `body` to `path` on `addr` as `client` (signed or not, as the client is made).
pub async fn post(client: &PeerClient, addr: &str, path: &str, body: Vec<u8>) -> PeerReply {
    client
        .send(
            addr,
            Method::POST,
            path,
            &[],
            Bytes::from(body),
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|e| panic!("POST {path} to {addr}: {e}"))
}

/// `reply` is a 401 whose JSON error says `unauthorized` and contains `says`.
pub fn assert_refused(reply: &PeerReply, says: &str, what: &str) {
    let body = String::from_utf8_lossy(&reply.body);
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    assert_eq!(json["error"]["code"], "unauthorized", "{what}: {body}");
    let message = json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{what}: {message}");
}
