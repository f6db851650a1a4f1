//! [`Replicas`]: one node's replicas of every crdt entity, and the bookkeeping of their
//! replication, without any IO (the node sends and receives; this decides what).
//!
//! - **Local changes**: [`Replicas::apply`] runs a command's operations as this node's replica,
//!   all or nothing, and queues the resulting delta for every peer (deltas of one entity waiting
//!   for the same peer are merged into one, so a hot entity sends one small delta per round).
//! - **Gossip**: the node takes a peer's queued deltas ([`Replicas::take_pending`]), sends them,
//!   and puts them back ([`Replicas::requeue`]) if the peer did not confirm them; a receiving
//!   node [`merge`](Replicas::merge)s each. Deltas may arrive twice, late or in any order: merges
//!   are idempotent, commutative and associative.
//! - **Anti-entropy**: entities are spread over [`BUCKETS`] buckets by a hash of their address;
//!   a bucket's digest is the XOR of its entities' `hash(address, encoded state)`, kept up to
//!   date on every change. Since converged states are equal (canonical), two nodes whose digests
//!   match hold the same replicas. Nodes exchange [`Replicas::digest`]s, and for the buckets that
//!   differ ([`Replicas::differing`]) they exchange and merge the whole states
//!   ([`Replicas::states_in`]), which repairs whatever gossip lost, in either direction.
//!
//! The replica id must be unique per node *and* per loss of state: a node that restarts without
//! its replicas (ephemeral ones) must use a new id, or its new operations would be hidden behind
//! the ones the other nodes already hold under the old id.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::{Crdt, Error, Kind, Op};

/// How many anti-entropy buckets the entities are spread over.
pub const BUCKETS: usize = 64;

/// The address of a crdt entity: its type and key.
pub type Address = (String, String);

/// One entity's replica, kept encoded: a small state takes a few dozen bytes this way instead
/// of the hundreds its maps and sets take decoded, and the encoding is what is stored, sent and
/// hashed anyway.
#[derive(Debug)]
struct Entry {
    state: Box<[u8]>,
    /// `hash(address, encoded state)`, XORed into its bucket's digest.
    hash: u64,
}

/// What a local change did.
#[derive(Debug)]
pub struct Applied {
    /// The delta of all the operations (what the peers need).
    pub delta: Crdt,
    /// The entity's state after the change, encoded (what the node stores).
    pub encoded: Vec<u8>,
    /// Whether the state changed (an operation may be a no-op, e.g. removing an absent element).
    pub changed: bool,
}

/// One node's replicas of the crdt entities, with their gossip queues and digests.
#[derive(Debug)]
pub struct Replicas {
    replica: String,
    entities: HashMap<String, HashMap<Box<str>, Entry>>,
    digest: [u64; BUCKETS],
    /// Per peer: the merged deltas not yet confirmed by it, by entity.
    pending: BTreeMap<u64, HashMap<Address, Crdt>>,
}

/// FNV-1a, 64 bits.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The anti-entropy bucket of an entity.
pub fn bucket(entity_type: &str, key: &str) -> usize {
    (fnv(&[entity_type.as_bytes(), key.as_bytes()]) % BUCKETS as u64) as usize
}

fn entity_hash(entity_type: &str, key: &str, encoded: &[u8]) -> u64 {
    fnv(&[entity_type.as_bytes(), key.as_bytes(), encoded])
}

impl Replicas {
    /// No replicas yet, as replica `replica` (see the module docs on choosing it).
    pub fn new(replica: impl Into<String>) -> Replicas {
        Replicas {
            replica: replica.into(),
            entities: HashMap::new(),
            digest: [0; BUCKETS],
            pending: BTreeMap::new(),
        }
    }

    /// This node's replica id.
    pub fn replica_id(&self) -> &str {
        &self.replica
    }

    /// How many entities this node holds a replica of.
    pub fn len(&self) -> usize {
        self.entities.values().map(HashMap::len).sum()
    }

    /// Whether this node holds no replica.
    pub fn is_empty(&self) -> bool {
        self.entities.values().all(HashMap::is_empty)
    }

    /// The entity's replica, if this node has one.
    pub fn get(&self, entity_type: &str, key: &str) -> Option<Crdt> {
        self.encoded(entity_type, key)
            .and_then(|bytes| Crdt::decode(bytes).ok())
    }

    /// The entity's replica in its binary form, if this node has one.
    pub fn encoded(&self, entity_type: &str, key: &str) -> Option<&[u8]> {
        self.entities
            .get(entity_type)
            .and_then(|keys| keys.get(key))
            .map(|e| &*e.state)
    }

    /// The entity's value as JSON (the empty value of `kind` when there is no replica yet).
    pub fn value(&self, entity_type: &str, key: &str, kind: Kind) -> Value {
        match self.get(entity_type, key) {
            Some(state) => state.value(),
            None => Crdt::new(kind).value(),
        }
    }

    /// Up to `limit` keys of `entity_type`'s replicas that start with `prefix` and sort after
    /// `after` (bytewise), in order, and whether more follow.
    pub fn keys(
        &self,
        entity_type: &str,
        after: Option<&str>,
        prefix: &str,
        limit: usize,
    ) -> (Vec<String>, bool) {
        let Some(keys) = self.entities.get(entity_type) else {
            return (Vec::new(), false);
        };
        let mut found: Vec<&str> = keys
            .keys()
            .map(|k| &**k)
            .filter(|k| k.starts_with(prefix) && after.is_none_or(|a| *k > a))
            .collect();
        found.sort_unstable();
        let more = found.len() > limit;
        found.truncate(limit);
        (found.into_iter().map(str::to_string).collect(), more)
    }

    /// The types this node holds replicas of, with how many each.
    pub fn types(&self) -> BTreeMap<&str, usize> {
        self.entities
            .iter()
            .map(|(t, keys)| (t.as_str(), keys.len()))
            .collect()
    }

    /// Runs `ops` on the entity as this replica, all or nothing, and queues the delta for every
    /// peer. An entity without a replica starts empty as `kind`; one of another kind is refused.
    pub fn apply(
        &mut self,
        entity_type: &str,
        key: &str,
        kind: Kind,
        ops: &[Op],
    ) -> Result<Applied, Error> {
        let mut state = match self.encoded(entity_type, key) {
            Some(bytes) => Crdt::decode(bytes)?,
            None => Crdt::new(kind),
        };
        if state.kind() != kind {
            return Err(Error::KindMismatch {
                kind: state.kind(),
                delta: kind,
            });
        }
        let mut delta = Crdt::new(kind);
        for op in ops {
            let d = state.apply(&self.replica, op)?;
            delta.merge(&d)?;
        }
        let encoded = state.encode()?;
        let changed = self.store(entity_type, key, &encoded);
        if changed {
            for queue in self.pending.values_mut() {
                queue_delta(queue, entity_type, key, &delta)?;
            }
        }
        Ok(Applied {
            delta,
            encoded,
            changed,
        })
    }

    /// Merges a delta or a whole state from another node into the entity's replica (creating
    /// it). Returns the new state, encoded, when it changed. Not queued for the peers: each
    /// node sends its own changes, and anti-entropy carries the rest.
    pub fn merge(
        &mut self,
        entity_type: &str,
        key: &str,
        delta: &Crdt,
    ) -> Result<Option<Vec<u8>>, Error> {
        let mut state = match self.encoded(entity_type, key) {
            Some(bytes) => Crdt::decode(bytes)?,
            None => Crdt::new(delta.kind()),
        };
        state.merge(delta)?;
        let encoded = state.encode()?;
        Ok(self.store(entity_type, key, &encoded).then_some(encoded))
    }

    /// Sets the entity's replica to `state` (loading what the node stored).
    pub fn insert(&mut self, entity_type: &str, key: &str, state: Crdt) -> Result<(), Error> {
        let encoded = state.encode()?;
        self.store(entity_type, key, &encoded);
        Ok(())
    }

    /// Drops every replica of `entity_type` (the type was deleted), with its queued deltas.
    pub fn remove_type(&mut self, entity_type: &str) {
        if let Some(keys) = self.entities.remove(entity_type) {
            for (key, entry) in keys {
                self.digest[bucket(entity_type, &key)] ^= entry.hash;
            }
        }
        for queue in self.pending.values_mut() {
            queue.retain(|(t, _), _| t != entity_type);
        }
    }

    /// Keeps `encoded` as the replica; whether it differs from the one it replaces (states are
    /// canonical, so equal states have equal encodings).
    fn store(&mut self, entity_type: &str, key: &str, encoded: &[u8]) -> bool {
        let hash = entity_hash(entity_type, key, encoded);
        let b = bucket(entity_type, key);
        let keys = match self.entities.get_mut(entity_type) {
            Some(keys) => keys,
            None => self.entities.entry(entity_type.to_string()).or_default(),
        };
        match keys.get_mut(key) {
            Some(entry) if entry.hash == hash && *entry.state == *encoded => false,
            Some(entry) => {
                self.digest[b] ^= entry.hash ^ hash;
                *entry = Entry {
                    state: encoded.into(),
                    hash,
                };
                true
            }
            None => {
                self.digest[b] ^= hash;
                keys.insert(
                    key.into(),
                    Entry {
                        state: encoded.into(),
                        hash,
                    },
                );
                true
            }
        }
    }

    /// Sets the peers that deltas are queued for: a new peer starts with an empty queue (what
    /// it lacks reaches it by anti-entropy), a removed one's queue is dropped.
    pub fn set_peers(&mut self, peers: impl IntoIterator<Item = u64>) {
        let peers: BTreeSet<u64> = peers.into_iter().collect();
        self.pending.retain(|p, _| peers.contains(p));
        for p in peers {
            self.pending.entry(p).or_default();
        }
    }

    /// The peers deltas are queued for.
    pub fn peers(&self) -> impl Iterator<Item = u64> + '_ {
        self.pending.keys().copied()
    }

    /// Whether any delta waits for `peer`.
    pub fn has_pending(&self, peer: u64) -> bool {
        self.pending.get(&peer).is_some_and(|q| !q.is_empty())
    }

    /// Takes up to `max` of the deltas queued for `peer`, to send.
    pub fn take_pending(&mut self, peer: u64, max: usize) -> Vec<(Address, Crdt)> {
        let Some(queue) = self.pending.get_mut(&peer) else {
            return Vec::new();
        };
        if queue.len() <= max {
            return queue.drain().collect();
        }
        let keys: Vec<Address> = queue.keys().take(max).cloned().collect();
        keys.into_iter()
            .filter_map(|k| queue.remove_entry(&k))
            .collect()
    }

    /// Puts deltas that `peer` did not confirm back in its queue (merged with any queued since).
    pub fn requeue(&mut self, peer: u64, deltas: Vec<(Address, Crdt)>) {
        let Some(queue) = self.pending.get_mut(&peer) else {
            return;
        };
        for ((t, k), delta) in deltas {
            // Deltas of one entity have its kind: merging them cannot fail.
            let _ = queue_delta(queue, &t, &k, &delta);
        }
    }

    /// The per-bucket digests of this node's replicas.
    pub fn digest(&self) -> Vec<u64> {
        self.digest.to_vec()
    }

    /// The buckets whose digest differs from `theirs` (another node's [`Replicas::digest`]);
    /// every bucket when `theirs` has the wrong length.
    pub fn differing(&self, theirs: &[u64]) -> Vec<usize> {
        if theirs.len() != BUCKETS {
            return (0..BUCKETS).collect();
        }
        (0..BUCKETS)
            .filter(|&b| self.digest[b] != theirs[b])
            .collect()
    }

    /// The whole states of every entity in `buckets`, to send for anti-entropy.
    pub fn states_in(&self, buckets: &[usize]) -> Vec<(Address, Crdt)> {
        self.encoded_in(buckets)
            .into_iter()
            .filter_map(|(address, bytes)| Crdt::decode(&bytes).ok().map(|c| (address, c)))
            .collect()
    }

    /// [`Replicas::states_in`], encoded.
    pub fn encoded_in(&self, buckets: &[usize]) -> Vec<(Address, Vec<u8>)> {
        let wanted: BTreeSet<usize> = buckets.iter().copied().collect();
        let mut out = Vec::new();
        for (t, keys) in &self.entities {
            for (k, entry) in keys {
                if wanted.contains(&bucket(t, k)) {
                    out.push(((t.clone(), k.to_string()), entry.state.to_vec()));
                }
            }
        }
        out
    }
}

/// Merges `delta` into what waits in `queue` for the entity.
fn queue_delta(
    queue: &mut HashMap<Address, Crdt>,
    entity_type: &str,
    key: &str,
    delta: &Crdt,
) -> Result<(), Error> {
    let address = (entity_type.to_string(), key.to_string());
    match queue.get_mut(&address) {
        Some(waiting) => waiting.merge(delta),
        None => {
            queue.insert(address, delta.clone());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn local_changes_queue_deltas_and_gossip_converges() {
        let mut a = Replicas::new("a");
        let mut b = Replicas::new("b");
        a.set_peers([2]);
        b.set_peers([1]);
        a.apply("likes", "x", Kind::PNCounter, &[Op::Increment(2)])
            .unwrap();
        a.apply("likes", "x", Kind::PNCounter, &[Op::Increment(3)])
            .unwrap();
        b.apply("likes", "x", Kind::PNCounter, &[Op::Decrement(1)])
            .unwrap();
        let to_b = a.take_pending(2, 100);
        assert_eq!(
            to_b.len(),
            1,
            "deltas of one entity are merged while queued"
        );
        for ((t, k), d) in &to_b {
            b.merge(t, k, d).unwrap();
        }
        for ((t, k), d) in b.take_pending(1, 100) {
            a.merge(&t, &k, &d).unwrap();
        }
        assert_eq!(a.value("likes", "x", Kind::PNCounter), json!(4));
        assert_eq!(a.get("likes", "x"), b.get("likes", "x"));
        assert_eq!(a.digest(), b.digest());
        assert!(a.differing(&b.digest()).is_empty());
    }

    #[test]
    fn a_failed_op_changes_nothing() {
        let mut a = Replicas::new("a");
        a.set_peers([2]);
        let ops = [Op::Increment(1), Op::Enable];
        assert!(a.apply("likes", "x", Kind::PNCounter, &ops).is_err());
        assert!(a.get("likes", "x").is_none());
        assert!(!a.has_pending(2));
        a.apply("likes", "x", Kind::PNCounter, &[Op::Increment(1)])
            .unwrap();
        let err = a
            .apply("likes", "x", Kind::Flag, &[Op::Enable])
            .unwrap_err();
        assert!(matches!(err, Error::KindMismatch { .. }));
    }

    #[test]
    fn anti_entropy_repairs_lost_deltas() {
        let mut a = Replicas::new("a");
        let mut b = Replicas::new("b");
        a.set_peers([2]);
        for i in 0..20 {
            a.apply("s", &format!("k{i}"), Kind::ORSet, &[Op::Add(json!(i))])
                .unwrap();
        }
        drop(a.take_pending(2, usize::MAX)); // lost
        let buckets = b.differing(&a.digest());
        assert!(!buckets.is_empty());
        for ((t, k), s) in a.states_in(&buckets) {
            b.merge(&t, &k, &s).unwrap();
        }
        assert_eq!(a.digest(), b.digest());
        assert_eq!(b.len(), 20);
        let (page, more) = b.keys("s", Some("k1"), "k1", 5);
        assert_eq!(page, ["k10", "k11", "k12", "k13", "k14"]);
        assert!(more);
        assert_eq!(
            b.keys("s", Some("k18"), "", 5),
            (
                vec![
                    "k19".into(),
                    "k2".into(),
                    "k3".into(),
                    "k4".into(),
                    "k5".into()
                ],
                true
            )
        );
        let unchanged = b.merge("s", "k1", &a.get("s", "k1").unwrap()).unwrap();
        assert!(unchanged.is_none());
    }

    #[test]
    fn requeued_deltas_merge_with_newer_ones() {
        let mut a = Replicas::new("a");
        a.set_peers([2, 3]);
        a.apply("c", "k", Kind::GCounter, &[Op::Increment(1)])
            .unwrap();
        let sent = a.take_pending(2, 10);
        a.apply("c", "k", Kind::GCounter, &[Op::Increment(1)])
            .unwrap();
        a.requeue(2, sent);
        let again = a.take_pending(2, 10);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1.value(), json!(2));
        assert!(a.has_pending(3));
        a.set_peers([2]);
        assert_eq!(a.peers().collect::<Vec<_>>(), vec![2]);
        a.remove_type("c");
        assert!(a.is_empty());
        assert_eq!(a.digest(), vec![0; BUCKETS]);
    }
}
