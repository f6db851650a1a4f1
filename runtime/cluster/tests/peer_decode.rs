//! Malformed peer messages never panic a node: arbitrary bytes, and valid messages with bytes
//! flipped or cut off, are fed to the decoding of every raft RPC and answer
//! (`types::decode`), to `Cluster::serve_peer` of a running node for every RPC kind and group,
//! and to the forwarding exchange (`mux::serve`). Each either decodes or fails with an error.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use cella_cluster::{
    Cluster, ClusterOptions, Command, ModuleOp, TypeConfig,
    types::{decode, encode},
};
use cella_core::{EntityKind, ModuleVersion};
use hyper::StatusCode;
use openraft::{
    alias::{LeaderIdOf, LogIdOf, SnapshotMetaOf, VoteOf},
    entry::RaftEntry,
    error::RaftError,
    raft::{
        AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
        TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
    },
    vote::RaftLeaderId,
};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type C = TypeConfig;

/// Decodes `bytes` as every message a peer sends or answers; the results are dropped.
fn decode_all(bytes: &[u8]) {
    let _ = decode::<AppendEntriesRequest<C>>("", bytes);
    let _ = decode::<VoteRequest<C>>("", bytes);
    let _ = decode::<(VoteOf<C>, SnapshotMetaOf<C>, Vec<u8>)>("", bytes);
    let _ = decode::<TransferLeaderRequest<C>>("", bytes);
    let _ = decode::<Result<AppendEntriesResponse<C>, RaftError<C>>>("", bytes);
    let _ = decode::<Result<VoteResponse<C>, RaftError<C>>>("", bytes);
    let _ = decode::<Result<SnapshotResponse<C>, RaftError<C>>>("", bytes);
    let _ = decode::<Result<TransferLeaderResponse<C>, RaftError<C>>>("", bytes);
    let _ = decode::<Result<StreamAppendResult<C>, RaftError<C>>>("", bytes);
    let _ = decode::<Command>("", bytes);
}

fn log_id(term: u64, index: u64) -> LogIdOf<C> {
    LogIdOf::<C>::new(LeaderIdOf::<C>::new(term, 1).to_committed(), index)
}

/// A well-formed append carrying a module change and a journal write.
fn valid_append() -> Vec<u8> {
    let module = ModuleOp::Put {
        entity_type: "counter".into(),
        version: ModuleVersion {
            version: 1,
            digest: "sha256:00".into(),
            size: 4,
            created_ms: 1,
            kind: EntityKind::Value,
            commands: vec!["add".into()],
        },
        component: b"\0asm".to_vec(),
    };
    let request = AppendEntriesRequest::<C> {
        vote: VoteOf::<C>::new_committed(3, 1),
        prev_log_id: Some(log_id(3, 4)),
        entries: vec![
            <C as openraft::RaftTypeConfig>::Entry::new_normal(
                log_id(3, 5),
                Command::Module(module),
            ),
            <C as openraft::RaftTypeConfig>::Entry::new_normal(
                log_id(3, 6),
                Command::Journal(Vec::new()),
            ),
            <C as openraft::RaftTypeConfig>::Entry::new_blank(log_id(3, 7)),
        ],
        leader_commit: Some(log_id(3, 5)),
    };
    encode("an append", &request).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoding(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        decode_all(&bytes);
    }

    #[test]
    fn flipped_or_cut_messages_never_panic_the_decoding(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = valid_append();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        decode_all(&bytes);
        let len = cut.index(bytes.len() + 1);
        decode_all(&bytes[..len]);
    }
}

#[test]
fn a_running_node_answers_malformed_rpcs_with_errors() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let cluster = rt.block_on(async {
        let store = cella_store::Store::open(dir.path(), Default::default()).unwrap();
        let mut options = ClusterOptions::single(1, "127.0.0.1:1".into());
        options.placement.partitions = 2;
        Cluster::start(store, options).await.unwrap()
    });
    let valid = valid_append();
    const KINDS: [&str; 6] = ["append", "vote", "snapshot", "transfer", "stream", "other"];
    const GROUPS: [&str; 6] = ["0", "1", "2", "99", "x", ""];
    proptest!(ProptestConfig::with_cases(300), |(
        kind in prop::sample::select(&KINDS[..]),
        group in prop::sample::select(&GROUPS[..]),
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        mutate_valid in any::<bool>(),
    )| {
        let body = if mutate_valid {
            let mut body = valid.clone();
            for (at, value) in flips {
                let i = at.index(body.len());
                body[i] = value;
            }
            body
        } else {
            bytes
        };
        let path = format!("{group}/{kind}");
        let answered = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), cluster.serve_peer(&path, &body)).await
        });
        prop_assert!(answered.is_ok(), "{path}: no answer within 10 s");
    });
    rt.block_on(cluster.shutdown());
}

#[test]
fn the_forwarding_exchange_survives_arbitrary_bytes() {
    let rt = runtime();
    let handler: cella_cluster::mux::Handler =
        Arc::new(|_, body: Bytes, _| Box::pin(async move { (StatusCode::OK, body) }));
    proptest!(ProptestConfig::with_cases(200), |(bytes in proptest::collection::vec(any::<u8>(), 0..2048))| {
        let handler = handler.clone();
        let finished = rt.block_on(async move {
            let (mut near, far) = tokio::io::duplex(64 << 10);
            let (_stop_tx, stop) = tokio::sync::watch::channel(false);
            let served = tokio::spawn(cella_cluster::mux::serve(far, handler, stop));
            let _ = near.write_all(&bytes).await;
            let _ = near.shutdown().await;
            let mut answers = Vec::new();
            let _ = near.read_to_end(&mut answers).await;
            tokio::time::timeout(Duration::from_secs(10), served).await
        });
        match finished {
            Ok(joined) => prop_assert!(joined.is_ok(), "the exchange panicked"),
            Err(_) => prop_assert!(false, "the exchange did not end within 10 s"),
        }
    });
}
