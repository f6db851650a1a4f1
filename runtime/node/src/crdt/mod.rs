//! Crdt entities on this node: their replicas (`cella_crdt::Replicas`), stored in the node's
//! store when their type is durable, watched by `/watch` streams, and replicated to the other
//! nodes without consensus (`gossip`).
//!
//! *Architecture invariants.* A crdt command runs on the node that received it; its operations
//! are applied to this node's replica atomically (all or none), and — for a durable type — the
//! new state is handed to the store's group commit under the replicas' lock, so stored states
//! land in the order they were made, and the reply waits until it is durable. A delta from a
//! peer is merged and, for a durable type, stored before the peer is told it arrived (a
//! `majority` write counts only nodes that confirmed); a delta gossiped without a quorum
//! waiting on it is stored by the next flush (about once a second), since its own node holds it
//! durably and anti-entropy brings back whatever a crash here lost before the flush. The replica id is the node id plus its
//! start time, new on every start: a node that comes back without a replica it had (ephemeral
//! types, or a crash before its last write was durable while its delta already left) never
//! reuses the id under which the others hold its earlier operations.

mod gossip;
mod metrics;
mod ops;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use cella_crdt::{Crdt, Kind, Op, Replicas};
use cella_store::Store;
use serde_json::Value;
use tokio::sync::{Notify, watch};

pub use self::gossip::{PeerMessage, Repair, read, replicate, serve_peer, start};
pub use self::metrics::with_crdts;
pub use self::ops::{kind_of, to_op};
use crate::error::{Error, Result};

/// Tunables of crdt replication.
#[derive(Clone, Debug)]
pub struct CrdtOptions {
    /// How often queued deltas are sent to the peers (sooner when a change wakes the sender).
    pub gossip_interval: Duration,
    /// How often this node compares digests with a peer it may have missed changes of or
    /// from: after its own start, and after an exchange with that peer failed.
    pub anti_entropy_interval: Duration,
    /// How often it compares digests with a peer whose exchanges all succeed (a safety net:
    /// gossip keeps such peers in step).
    pub anti_entropy_idle: Duration,
    /// How long a `majority` or `all` write or read waits for the other nodes.
    pub quorum_timeout: Duration,
    /// How often the states merged from peers are stored (durable types).
    pub flush_interval: Duration,
}

impl Default for CrdtOptions {
    fn default() -> Self {
        Self {
            gossip_interval: Duration::from_millis(20),
            anti_entropy_interval: Duration::from_millis(500),
            anti_entropy_idle: Duration::from_secs(10),
            quorum_timeout: Duration::from_secs(5),
            flush_interval: Duration::from_secs(1),
        }
    }
}

/// Counts of crdt replication, for `/metrics`.
#[derive(Debug, Default)]
pub struct CrdtCounters {
    /// Local changes (commands whose operations changed the replica).
    pub changes: AtomicU64,
    /// Deltas sent to peers (each entity's delta to each peer counts once).
    pub deltas_sent: AtomicU64,
    /// Deltas and states from peers that changed a replica here.
    pub merged: AtomicU64,
    /// Entities repaired by anti-entropy (states merged here that changed a replica).
    pub repaired: AtomicU64,
    /// Sends to peers that failed (the deltas stay queued).
    pub send_failures: AtomicU64,
}

/// This node's crdt entities.
pub struct Crdts {
    replicas: Mutex<Replicas>,
    store: Store,
    /// The cluster whose other nodes hold replicas (`None`: this node alone, embedded).
    cluster: Option<Arc<cella_cluster::Cluster>>,
    /// Which types are durable, by their active module.
    registry: Arc<crate::registry::Registry>,
    node_id: u64,
    options: CrdtOptions,
    /// `/watch` streams, by entity: the value they last saw.
    watchers: Mutex<HashMap<(String, String), watch::Sender<Value>>>,
    /// How many entities are watched (skips the lock on every change when none is).
    watched: AtomicUsize,
    /// Wakes the gossip sender when a change is queued.
    wake: Notify,
    /// Entities of durable types merged from peers and not stored since (see [`Crdts::flush`]).
    dirty: Mutex<std::collections::HashSet<(String, String)>>,
    /// Peers an exchange with failed since the last anti-entropy round with them succeeded.
    suspect: Mutex<std::collections::HashSet<u64>>,
    pub counters: CrdtCounters,
}

/// Whether entities of `entity_type` are stored (a type this node does not know yet, e.g. a
/// deploy still on its way here, is treated as durable).
pub type Durable<'a> = &'a (dyn Fn(&str) -> bool + Sync);

impl Crdts {
    /// Opens the crdt replicas of node `node_id`: the stored states of durable types, under a
    /// new replica id.
    pub fn open(
        store: Store,
        cluster: Option<Arc<cella_cluster::Cluster>>,
        registry: Arc<crate::registry::Registry>,
        boot_ms: u64,
        options: CrdtOptions,
    ) -> Result<Crdts> {
        let node_id = cluster.as_ref().map_or(1, |c| c.node_id());
        let mut replicas = Replicas::new(format!("{node_id}.{boot_ms:x}"));
        for (entity_type, key, bytes) in store.crdt_states()? {
            let state = Crdt::decode(&bytes).map_err(|e| {
                Error::Storage(format!(
                    "the stored crdt state of `{entity_type}/{key}` does not decode: {e}"
                ))
            })?;
            replicas
                .insert(&entity_type, &key, state)
                .map_err(|e| Error::Storage(format!("loading `{entity_type}/{key}`: {e}")))?;
        }
        Ok(Crdts {
            replicas: Mutex::new(replicas),
            store,
            cluster,
            registry,
            node_id,
            options,
            watchers: Mutex::new(HashMap::new()),
            watched: AtomicUsize::new(0),
            wake: Notify::new(),
            suspect: Mutex::default(),
            dirty: Mutex::default(),
            counters: CrdtCounters::default(),
        })
    }

    fn replicas(&self) -> MutexGuard<'_, Replicas> {
        self.replicas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    pub fn options(&self) -> &CrdtOptions {
        &self.options
    }

    /// How many entities this node holds replicas of.
    pub fn len(&self) -> usize {
        self.replicas().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A page of the keys of `entity_type` this node holds replicas of (see
    /// [`Replicas::keys`]).
    pub fn keys(
        &self,
        entity_type: &str,
        after: Option<&str>,
        prefix: &str,
        limit: usize,
    ) -> (Vec<String>, bool) {
        self.replicas().keys(entity_type, after, prefix, limit)
    }

    /// The entity's value as this node sees it.
    pub fn value(&self, entity_type: &str, key: &str, kind: Kind) -> Value {
        self.replicas().value(entity_type, key, kind)
    }

    /// The entity's encoded replica, if this node has one (what a quorum read asks a peer for).
    pub fn encoded(&self, entity_type: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .replicas()
            .encoded(entity_type, key)
            .map(<[u8]>::to_vec))
    }

    /// Applies a command's operations as this node's replica (all or none), stores the new
    /// state when `durable`, and returns the delta once the change is durable. A change that
    /// does not fit the entity's data fails with [`Error::EntityFailed`] and changes nothing.
    pub async fn apply(
        &self,
        entity_type: &str,
        key: &str,
        kind: Kind,
        ops: &[Op],
        durable: bool,
    ) -> Result<Option<Crdt>> {
        let (stored, delta) = {
            let mut replicas = self.replicas();
            let applied = replicas
                .apply(entity_type, key, kind, ops)
                .map_err(|e| Error::EntityFailed(format!("the crdt operations failed: {e}")))?;
            if !applied.changed {
                return Ok(None);
            }
            // Submitted under the lock: stored states land in the order they were made.
            let stored =
                durable.then(|| self.store.put_crdt(entity_type, key, Some(applied.encoded)));
            self.changed(&replicas, entity_type, key);
            (stored, applied.delta)
        };
        self.counters.changes.fetch_add(1, Ordering::Relaxed);
        self.wake.notify_one();
        if let Some(stored) = stored {
            stored.await?;
        }
        Ok(Some(delta))
    }

    /// Merges states or deltas from a peer and stores those of durable types that changed;
    /// resolves once they are durable. Returns how many changed a replica.
    ///
    /// With `wait` (a quorum write's delta, which the sender counts once this node confirms it)
    /// the changed states are stored before this resolves; otherwise they are marked for the
    /// next [`Crdts::flush`] — the node they came from holds them durably, and should this node
    /// stop before the flush, its anti-entropy rounds at its next start bring them back.
    pub async fn merge(
        &self,
        entries: Vec<(String, String, Crdt)>,
        durable: Durable<'_>,
        wait: bool,
    ) -> Result<usize> {
        let mut stored = Vec::new();
        let mut changed = 0;
        {
            let mut replicas = self.replicas();
            let mut dirty = self
                .dirty
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (entity_type, key, delta) in entries {
                let merged = match replicas.merge(&entity_type, &key, &delta) {
                    Ok(merged) => merged,
                    Err(e) => {
                        tracing::warn!(
                            "a crdt delta for `{entity_type}/{key}` does not merge: {e}"
                        );
                        continue;
                    }
                };
                let Some(encoded) = merged else { continue };
                changed += 1;
                self.changed(&replicas, &entity_type, &key);
                if !durable(&entity_type) {
                    continue;
                }
                if wait {
                    // Stored now: a later flush of the same entity writes a newer state.
                    stored.push(self.store.put_crdt(&entity_type, &key, Some(encoded)));
                } else {
                    dirty.insert((entity_type, key));
                }
            }
        }
        self.counters
            .merged
            .fetch_add(changed as u64, Ordering::Relaxed);
        for s in stored {
            s.await?;
        }
        Ok(changed)
    }

    /// Stores the current state of every entity merged without waiting since the last flush
    /// (each write holds the state at the time it is handed to the store, under the replicas'
    /// lock, so the stored states only grow); resolves once they are durable.
    pub async fn flush(&self) -> Result<usize> {
        let stored: Vec<_> = {
            let replicas = self.replicas();
            let taken = std::mem::take(
                &mut *self
                    .dirty
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            taken
                .into_iter()
                .filter_map(|(t, k)| {
                    let encoded = replicas.encoded(&t, &k)?.to_vec();
                    Some(self.store.put_crdt(&t, &k, Some(encoded)))
                })
                .collect()
        };
        let count = stored.len();
        for s in stored {
            s.await?;
        }
        Ok(count)
    }

    /// Tells the entity's watchers its new value (under the replicas' lock, so that watchers
    /// see values in the order they were made).
    fn changed(&self, replicas: &Replicas, entity_type: &str, key: &str) {
        if self.watched.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut watchers = self
            .watchers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let address = (entity_type.to_string(), key.to_string());
        if let Some(tx) = watchers.get(&address) {
            if tx.receiver_count() == 0 {
                watchers.remove(&address);
                self.watched.store(watchers.len(), Ordering::Release);
            } else if let Some(state) = replicas.get(entity_type, key) {
                tx.send_replace(state.value());
            }
        }
    }

    /// A stream of the entity's values on this node: the current one first, then each new
    /// one (a slow reader skips to the latest).
    pub fn watch(&self, entity_type: &str, key: &str, kind: Kind) -> watch::Receiver<Value> {
        let replicas = self.replicas();
        let mut watchers = self
            .watchers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        watchers.retain(|_, tx| tx.receiver_count() > 0);
        let address = (entity_type.to_string(), key.to_string());
        let rx = match watchers.get(&address) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(replicas.value(entity_type, key, kind));
                watchers.insert(address, tx);
                rx
            }
        };
        self.watched.store(watchers.len(), Ordering::Release);
        rx
    }

    /// Drops every replica of a deleted type, here and in the store.
    pub async fn remove_type(&self, entity_type: &str) -> Result<()> {
        let keys: Vec<String> = self
            .store
            .crdt_states()?
            .into_iter()
            .filter(|(t, _, _)| t == entity_type)
            .map(|(_, k, _)| k)
            .collect();
        self.replicas().remove_type(entity_type);
        for key in keys {
            self.store.put_crdt(entity_type, &key, None).await?;
        }
        Ok(())
    }
}
