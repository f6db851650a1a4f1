//! Replication of crdt entities between nodes, over the peer endpoint
//! `POST /v1/peer/crdt/{deltas|quorum|digest|read}` (postcard bodies, authenticated like every peer
//! request):
//!
//! - **Gossip.** A sender task takes each peer's queued deltas (woken by every local change,
//!   at most every [`CrdtOptions::gossip_interval`]) and sends them as one `deltas` message; the
//!   peer merges (and stores) them before it answers, and a delta it did not confirm goes back
//!   in the queue. A peer that failed is left alone for a back-off before the next try.
//! - **Anti-entropy.** Every [`CrdtOptions::anti_entropy_interval`] after its start, or after
//!   an exchange with a peer failed, else every [`CrdtOptions::anti_entropy_idle`], the node
//!   sends the peer its bucket digests (`digest`); the peer answers with the buckets that differ and its own
//!   states in them, which this node merges, then sends its states in those buckets back as
//!   `deltas`. A node that was down, cut off or restarted empty is repaired in one round.
//! - **Quorums.** A `majority`/`all` write sends its delta to every peer at once and answers
//!   when enough of them confirmed; a quorum read asks the peers for their state of the entity
//!   (`read`) and merges what enough of them answered before the command runs.
//!
//! [`CrdtOptions::gossip_interval`]: super::CrdtOptions::gossip_interval
//! [`CrdtOptions::anti_entropy_interval`]: super::CrdtOptions::anti_entropy_interval
//! [`CrdtOptions::anti_entropy_idle`]: super::CrdtOptions::anti_entropy_idle

use std::{
    collections::HashMap,
    sync::{Arc, Weak, atomic::Ordering},
    time::{Duration, Instant},
};

use bytes::Bytes;
use cella_crdt::Crdt;
use cella_host::Consistency;
use futures_util::{StreamExt, stream::FuturesUnordered};
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::Crdts;
use crate::error::{Error, Result};

/// Most entities in one `deltas` message.
const BATCH: usize = 4096;
/// How long a peer that failed is left alone.
const BACK_OFF: Duration = Duration::from_millis(250);
/// How long one peer request may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// The messages of the crdt peer endpoint.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerMessage {
    /// States or deltas to merge: `(type, key, encoded crdt)`. Answered with an empty body once
    /// merged (stored by the next flush).
    Deltas(Vec<(String, String, Vec<u8>)>),
    /// A quorum write's delta: answered once merged and stored.
    Quorum(Vec<(String, String, Vec<u8>)>),
    /// The sender's bucket digests. Answered with a [`Repair`].
    Digest(Vec<u64>),
    /// The receiver's state of one entity. Answered with `Option<encoded crdt>`.
    Read { entity_type: String, key: String },
}

/// The answer to a [`PeerMessage::Digest`]: the buckets whose digests differ, and the
/// answering node's states in them.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Repair {
    pub buckets: Vec<u32>,
    pub states: Vec<(String, String, Vec<u8>)>,
}

fn encode<T: Serialize>(value: &T) -> Result<Bytes> {
    postcard::to_allocvec(value)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("encoding a crdt peer message: {e}")))
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    postcard::from_bytes(bytes)
        .map_err(|e| Error::BadRequest(format!("a crdt peer message does not decode: {e}")))
}

fn flatten(states: Vec<((String, String), Vec<u8>)>) -> Vec<(String, String, Vec<u8>)> {
    states.into_iter().map(|((t, k), b)| (t, k, b)).collect()
}

fn decode_states(states: Vec<(String, String, Vec<u8>)>) -> Vec<(String, String, Crdt)> {
    states
        .into_iter()
        .filter_map(|(t, k, b)| match Crdt::decode(&b) {
            Ok(c) => Some((t, k, c)),
            Err(e) => {
                tracing::warn!("a crdt state for `{t}/{k}` from a peer does not decode: {e}");
                None
            }
        })
        .collect()
}

/// Whether `entity_type`'s entities are stored on this node.
fn durable(crdts: &Crdts, entity_type: &str) -> bool {
    crdts.registry.get(entity_type).map_or(true, |active| {
        active.module.descriptor().durability == cella_host::Durability::Durable
    })
}

/// [`durable`] for every type of `entries`, looked up once each.
fn durable_types(crdts: &Crdts, entries: &[(String, String, Crdt)]) -> HashMap<String, bool> {
    let mut types = HashMap::new();
    for (t, _, _) in entries {
        if !types.contains_key(t) {
            types.insert(t.clone(), durable(crdts, t));
        }
    }
    types
}

/// Answers a crdt peer message (the body of `POST /v1/peer/crdt/{kind}`).
pub async fn serve_peer(crdts: &Crdts, body: &[u8]) -> Result<Bytes> {
    let message = decode::<PeerMessage>(body)?;
    let wait = matches!(message, PeerMessage::Quorum(_));
    match message {
        PeerMessage::Deltas(entries) | PeerMessage::Quorum(entries) => {
            let entries = decode_states(entries);
            let types = durable_types(crdts, &entries);
            let durable = |t: &str| types.get(t).copied().unwrap_or(true);
            crdts.merge(entries, &durable, wait).await?;
            Ok(Bytes::new())
        }
        PeerMessage::Digest(theirs) => {
            let (buckets, states) = {
                let replicas = crdts.replicas();
                let buckets = replicas.differing(&theirs);
                let states = replicas.encoded_in(&buckets);
                (buckets, states)
            };
            encode(&Repair {
                buckets: buckets.into_iter().map(|b| b as u32).collect(),
                states: flatten(states),
            })
        }
        PeerMessage::Read { entity_type, key } => encode(&crdts.encoded(&entity_type, &key)?),
    }
}

/// The other nodes of the cluster, id → address.
fn peers(crdts: &Crdts) -> Vec<(u64, String)> {
    let Some(cluster) = &crdts.cluster else {
        return Vec::new();
    };
    let me = cluster.node_id();
    cluster
        .nodes()
        .into_iter()
        .filter(|(id, _)| *id != me)
        .collect()
}

/// Sends one message to a peer; the answer's body.
async fn send(crdts: &Crdts, addr: &str, kind: &str, message: &PeerMessage) -> Result<Bytes> {
    let cluster = crdts
        .cluster
        .as_ref()
        .ok_or_else(|| Error::Internal("crdt gossip without a cluster".into()))?;
    let reply = cluster
        .client()
        .send(
            addr,
            Method::POST,
            &format!("/v1/peer/crdt/{kind}"),
            &[],
            encode(message)?,
            PEER_TIMEOUT,
        )
        .await
        .map_err(|e| Error::Unavailable(format!("node {addr}: {e}")))?;
    if reply.status != StatusCode::OK {
        return Err(Error::Unavailable(format!(
            "node {addr} answered {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        )));
    }
    Ok(reply.body)
}

/// Starts the gossip sender and the anti-entropy rounds (in a cluster; they end with the node).
pub fn start(crdts: &Arc<Crdts>) {
    let Some(cluster) = &crdts.cluster else {
        return;
    };
    let stopping = cluster.stopping();
    tokio::spawn(gossip_loop(Arc::downgrade(crdts), stopping.clone()));
    tokio::spawn(flush_loop(Arc::downgrade(crdts), stopping.clone()));
    tokio::spawn(anti_entropy_loop(Arc::downgrade(crdts), stopping));
}

/// What the loops know of each peer: whether a send to it is under way (a slow or frozen
/// peer holds up only its own traffic), and until when it rests after a failure.
#[derive(Default)]
struct PeerState {
    busy: bool,
    resting_until: Option<Instant>,
}

type PeerStates = Arc<std::sync::Mutex<HashMap<u64, PeerState>>>;

/// Marks `peer` busy if it is free and not resting; whether it was.
fn claim(states: &PeerStates, peer: u64) -> bool {
    let mut states = states
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let state = states.entry(peer).or_default();
    let rested = state.resting_until.is_none_or(|t| t <= Instant::now());
    if state.busy || !rested {
        return false;
    }
    state.busy = true;
    true
}

/// Frees `peer`, resting it for [`BACK_OFF`] when its exchange failed.
fn release(states: &PeerStates, peer: u64, ok: bool) {
    let mut states = states
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let state = states.entry(peer).or_default();
    state.busy = false;
    state.resting_until = (!ok).then(|| Instant::now() + BACK_OFF);
}

async fn gossip_loop(node: Weak<Crdts>, mut stopping: tokio::sync::watch::Receiver<bool>) {
    let states = PeerStates::default();
    loop {
        let Some(n) = node.upgrade() else { break };
        let interval = n.options.gossip_interval;
        let peers = peers(&n);
        n.replicas().set_peers(peers.iter().map(|(id, _)| *id));
        for (id, addr) in peers {
            if !n.replicas().has_pending(id) || !claim(&states, id) {
                continue;
            }
            let (n, states) = (n.clone(), states.clone());
            tokio::spawn(async move {
                let (_, ok) = send_pending(&n, id, &addr).await;
                release(&states, id, ok);
                if ok {
                    // Changes queued while this send was under way go out at once.
                    n.wake.notify_one();
                }
            });
        }
        tokio::select! {
            _ = n.wake.notified() => tokio::time::sleep(interval).await,
            _ = tokio::time::sleep(interval.max(Duration::from_millis(100))) => {}
            _ = stopping.changed() => break,
        }
    }
}

/// Stores what was merged from peers every [`super::CrdtOptions::flush_interval`], and once
/// more when the node stops.
async fn flush_loop(node: Weak<Crdts>, mut stopping: tokio::sync::watch::Receiver<bool>) {
    loop {
        let Some(n) = node.upgrade() else { break };
        let stop = tokio::select! {
            _ = tokio::time::sleep(n.options.flush_interval) => false,
            _ = stopping.changed() => true,
        };
        if let Err(e) = n.flush().await {
            tracing::warn!("storing crdt states merged from peers: {e}");
        }
        if stop {
            break;
        }
    }
}

/// Sends `peer` its queued deltas; whether it confirmed them (else they are queued again).
async fn send_pending(crdts: &Crdts, peer: u64, addr: &str) -> (u64, bool) {
    let mut ok = true;
    loop {
        let batch = crdts.replicas().take_pending(peer, BATCH);
        if batch.is_empty() {
            return (peer, ok);
        }
        let count = batch.len() as u64;
        let entries: Vec<(String, String, Vec<u8>)> = batch
            .iter()
            .filter_map(|((t, k), c)| c.encode().ok().map(|b| (t.clone(), k.clone(), b)))
            .collect();
        match send(crdts, addr, "deltas", &PeerMessage::Deltas(entries)).await {
            Ok(_) => {
                crdts
                    .counters
                    .deltas_sent
                    .fetch_add(count, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::debug!("crdt gossip to node {peer}: {e}");
                crdts.counters.send_failures.fetch_add(1, Ordering::Relaxed);
                suspect(crdts, peer, true);
                crdts.replicas().requeue(peer, batch);
                ok = false;
                return (peer, ok);
            }
        }
    }
}

/// Marks `peer` as one this node may have missed changes of or from (`true`), or not.
fn suspect(crdts: &Crdts, peer: u64, suspect: bool) {
    let mut set = crdts
        .suspect
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if suspect {
        set.insert(peer);
    } else {
        set.remove(&peer);
    }
}

async fn anti_entropy_loop(node: Weak<Crdts>, mut stopping: tokio::sync::watch::Receiver<bool>) {
    let states = PeerStates::default();
    let mut last: HashMap<u64, Instant> = HashMap::new();
    loop {
        let Some(n) = node.upgrade() else { break };
        let (interval, idle) = (n.options.anti_entropy_interval, n.options.anti_entropy_idle);
        for (id, addr) in peers(&n) {
            // A peer not seen before (this node just started, or it joined) is repaired at once.
            let due = match last.get(&id) {
                None => true,
                Some(at) => {
                    let suspect = n
                        .suspect
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .contains(&id);
                    at.elapsed() >= if suspect { interval } else { idle }
                }
            };
            if !due || !claim(&states, id) {
                continue;
            }
            last.insert(id, Instant::now());
            let (n, states) = (n.clone(), states.clone());
            tokio::spawn(async move {
                let done = repair_with(&n, &addr).await;
                if let Err(e) = &done {
                    tracing::debug!("crdt anti-entropy with node {id}: {e}");
                }
                suspect(&n, id, done.is_err());
                release(&states, id, done.is_ok());
            });
        }
        drop(n);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopping.changed() => break,
        }
    }
}

/// One anti-entropy round with the node at `addr`.
async fn repair_with(crdts: &Crdts, addr: &str) -> Result<()> {
    let digest = crdts.replicas().digest();
    let answer = send(crdts, addr, "digest", &PeerMessage::Digest(digest)).await?;
    let repair: Repair = decode(&answer)?;
    if repair.buckets.is_empty() {
        return Ok(());
    }
    let durable = |t: &str| durable(crdts, t);
    let changed = crdts
        .merge(decode_states(repair.states), &durable, false)
        .await?;
    crdts
        .counters
        .repaired
        .fetch_add(changed as u64, Ordering::Relaxed);
    let buckets: Vec<usize> = repair.buckets.iter().map(|&b| b as usize).collect();
    let mine = crdts.replicas().encoded_in(&buckets);
    if mine.is_empty() {
        return Ok(());
    }
    send(crdts, addr, "deltas", &PeerMessage::Deltas(flatten(mine))).await?;
    Ok(())
}

/// How many nodes `consistency` asks for, in a cluster of `size`.
fn needed(consistency: Consistency, size: usize) -> usize {
    match consistency {
        Consistency::Local => 1,
        Consistency::Majority => size / 2 + 1,
        Consistency::All => size,
    }
}

/// Waits until `needed - 1` peers confirmed `delta` (this node holds it already).
pub async fn replicate(
    crdts: &Crdts,
    entity_type: &str,
    key: &str,
    delta: &Crdt,
    consistency: Consistency,
) -> Result<()> {
    let peers = peers(crdts);
    let needed = needed(consistency, peers.len() + 1);
    if needed <= 1 {
        return Ok(());
    }
    let bytes = delta
        .encode()
        .map_err(|e| Error::Internal(format!("encoding a crdt delta: {e}")))?;
    let message = PeerMessage::Quorum(vec![(entity_type.to_string(), key.to_string(), bytes)]);
    let quorum = quorum(crdts, &peers, &message, needed - 1, |_| Ok(()));
    await_quorum(crdts, quorum, consistency, needed, "hold the change").await?;
    Ok(())
}

/// Merges the states of enough peers for `consistency` into this node's replica of the entity
/// (a quorum read), before a command reads it.
pub async fn read(
    crdts: &Crdts,
    entity_type: &str,
    key: &str,
    consistency: Consistency,
) -> Result<()> {
    let peers = peers(crdts);
    let needed = needed(consistency, peers.len() + 1);
    if needed <= 1 {
        return Ok(());
    }
    let message = PeerMessage::Read {
        entity_type: entity_type.to_string(),
        key: key.to_string(),
    };
    let collect = |body: Bytes| -> Result<Option<Vec<u8>>> { decode(&body) };
    let quorum = quorum(crdts, &peers, &message, needed - 1, collect);
    let states = await_quorum(crdts, quorum, consistency, needed, "answer the read").await?;
    let entries: Vec<(String, String, Vec<u8>)> = states
        .into_iter()
        .flatten()
        .map(|b| (entity_type.to_string(), key.to_string(), b))
        .collect();
    let durable = |t: &str| durable(crdts, t);
    crdts.merge(decode_states(entries), &durable, false).await?;
    Ok(())
}

/// Sends `message` to every peer and collects the first `wanted` good answers (`Err` with how
/// many answered when fewer can).
async fn quorum<T>(
    crdts: &Crdts,
    peers: &[(u64, String)],
    message: &PeerMessage,
    wanted: usize,
    parse: impl Fn(Bytes) -> Result<T>,
) -> std::result::Result<Vec<T>, usize> {
    let kind = match message {
        PeerMessage::Deltas(_) => "deltas",
        PeerMessage::Quorum(_) => "quorum",
        PeerMessage::Digest(_) => "digest",
        PeerMessage::Read { .. } => "read",
    };
    let mut pending: FuturesUnordered<_> = peers
        .iter()
        .map(|(_, addr)| send(crdts, addr, kind, message))
        .collect();
    let mut got = Vec::new();
    while let Some(answer) = pending.next().await {
        if let Ok(value) = answer.and_then(&parse) {
            got.push(value);
            if got.len() >= wanted {
                return Ok(got);
            }
        }
    }
    Err(got.len())
}

/// Waits for a quorum within the node's quorum timeout, naming what was missing.
async fn await_quorum<T>(
    crdts: &Crdts,
    quorum: impl std::future::Future<Output = std::result::Result<Vec<T>, usize>>,
    consistency: Consistency,
    needed: usize,
    what: &str,
) -> Result<Vec<T>> {
    let timeout = crdts.options.quorum_timeout;
    let missing = |got: usize| {
        Error::Unavailable(format!(
            "consistency `{}` needs {needed} nodes to {what}, only {} did within {} ms \
             (a write stays applied on the nodes that hold it and reaches the others by gossip)",
            consistency.as_str(),
            got + 1,
            timeout.as_millis()
        ))
    };
    match tokio::time::timeout(timeout, quorum).await {
        Ok(Ok(values)) => Ok(values),
        Ok(Err(got)) => Err(missing(got)),
        Err(_) => Err(missing(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_sizes() {
        assert_eq!(needed(Consistency::Local, 3), 1);
        assert_eq!(needed(Consistency::Majority, 1), 1);
        assert_eq!(needed(Consistency::Majority, 3), 2);
        assert_eq!(needed(Consistency::Majority, 4), 3);
        assert_eq!(needed(Consistency::All, 3), 3);
    }

    #[test]
    fn peer_messages_round_trip() {
        let m = PeerMessage::Read {
            entity_type: "likes".into(),
            key: "k".into(),
        };
        let bytes = encode(&m).unwrap();
        assert!(
            matches!(decode::<PeerMessage>(&bytes).unwrap(), PeerMessage::Read { key, .. } if key == "k")
        );
        assert!(decode::<PeerMessage>(b"\xff\xff").is_err());
    }
}
