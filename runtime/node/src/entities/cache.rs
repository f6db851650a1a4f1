//! The cache of hot entities: one slot per entity holding its FIFO lock around the loaded
//! state and the highest sequence number known durable, found or created per command and
//! evicted approximately least-recently-used among idle entities.
//!
//! *The memory bound.* Each slot accounts its bytes (see [`footprint`]): the state, the
//! timers and request ids its activation remembers, and a fixed overhead per entity. The sum
//! over living slots is [`Entities::resident_bytes`]. Past the bound
//! ([`EntityOptions::max_memory`](super::EntityOptions)), the least recently used idle
//! entities are passivated — dropped from memory, their state being durable already; the next
//! command activates them again from snapshot and journal. An entity with a command in flight
//! (its slot held by anyone but the cache) is never passivated, so the bound can be exceeded by
//! the entities in use at that moment.

use std::{
    hash::{Hash, Hasher, RandomState},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use cella_core::EntityId;

use super::{Entities, activation::Loaded};
use crate::error::{Error, Result};

/// The map of cached entities. SipHash (std's `RandomState`): keys come from requests.
pub(super) type CacheMap = hashbrown::HashMap<CacheKey, Arc<Slot>, RandomState>;

/// An entity id as the cache holds it: the type, a `0xFF` byte (never part of UTF-8) and the
/// key, in one allocation of their exact size (an [`EntityId`]'s two `String`s take 48 bytes
/// in the map besides their own allocations, this takes 16).
pub(super) struct CacheKey(Box<[u8]>);

/// Separates the type from the key in a [`CacheKey`]; no UTF-8 text contains it.
const SEPARATOR: u8 = 0xFF;

impl CacheKey {
    pub(super) fn new(id: &EntityId) -> CacheKey {
        let mut bytes = Vec::with_capacity(id.entity_type.len() + 1 + id.key.len());
        bytes.extend_from_slice(id.entity_type.as_bytes());
        bytes.push(SEPARATOR);
        bytes.extend_from_slice(id.key.as_bytes());
        CacheKey(bytes.into_boxed_slice())
    }

    /// The type's and the key's bytes.
    fn parts(&self) -> (&[u8], &[u8]) {
        let at = self
            .0
            .iter()
            .position(|&b| b == SEPARATOR)
            .unwrap_or(self.0.len());
        (&self.0[..at], self.0.get(at + 1..).unwrap_or_default())
    }

    /// The entity id again.
    pub(super) fn id(&self) -> EntityId {
        let (entity_type, key) = self.parts();
        EntityId::new(
            String::from_utf8_lossy(entity_type),
            String::from_utf8_lossy(key),
        )
    }
}

/// What [`CacheKey`] and [`IdRef`] both hash: the type, the separator, the key.
fn hash_parts(entity_type: &[u8], key: &[u8], state: &mut impl Hasher) {
    state.write(entity_type);
    state.write_u8(SEPARATOR);
    state.write(key);
}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (entity_type, key) = self.parts();
        hash_parts(entity_type, key, state);
    }
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &CacheKey) -> bool {
        self.0 == other.0
    }
}

impl Eq for CacheKey {}

/// An [`EntityId`] looking itself up in a [`CacheMap`].
pub(super) struct IdRef<'a>(pub(super) &'a EntityId);

impl Hash for IdRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_parts(self.0.entity_type.as_bytes(), self.0.key.as_bytes(), state);
    }
}

impl hashbrown::Equivalent<CacheKey> for IdRef<'_> {
    fn equivalent(&self, key: &CacheKey) -> bool {
        let (entity_type, rest) = key.parts();
        entity_type == self.0.entity_type.as_bytes() && rest == self.0.key.as_bytes()
    }
}

/// One cached entity.
pub(super) struct Slot {
    pub(super) loaded: tokio::sync::Mutex<Option<Loaded>>,
    /// Highest sequence number known durable.
    pub(super) durable_seq: AtomicU64,
    last_used: AtomicU64,
    /// What this entity accounts for in [`Entities::resident_bytes`].
    bytes: AtomicUsize,
    /// The node's sum of the slots' bytes, which this slot leaves when dropped.
    total: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.total
            .fetch_sub(*self.bytes.get_mut(), Ordering::Relaxed);
    }
}

/// Bytes accounted per entity besides its state, timers and remembered request ids: the slot
/// (160 with its `Arc`), its map entry (a 24-byte bucket in a table at most 7/8 full, doubled
/// when it grows) and its key's allocation; close to the RSS growth per resident small entity
/// (see docs/memory.md).
pub(super) const ENTITY_OVERHEAD: usize = 256;

/// Bytes accounted per timer and per remembered request id, besides their names.
const ROW_OVERHEAD: usize = 96;

/// The bytes an entity holds in memory: its slot, and its loaded state if activated.
pub(super) fn footprint(id: &EntityId, loaded: Option<&Loaded>) -> usize {
    let base = ENTITY_OVERHEAD + id.entity_type.len() + id.key.len();
    let Some(loaded) = loaded else {
        return base;
    };
    let state = loaded.state.as_ref().map_or(0, Vec::capacity);
    let timers: usize = loaded
        .timer_names()
        .map(|name| 2 * name.len() + ROW_OVERHEAD)
        .sum();
    let recent: usize = loaded
        .recents()
        .map(|(id, outcome)| 2 * id.len() + recorded_len(outcome) + ROW_OVERHEAD)
        .sum();
    base + state + timers + recent
}

/// The payload bytes of a recorded outcome.
fn recorded_len(outcome: &cella_core::Recorded) -> usize {
    match outcome {
        cella_core::Recorded::Ok(reply) => reply.len(),
        cella_core::Recorded::Err { code, message } => code.len() + message.len(),
        cella_core::Recorded::Forwarded {
            target,
            command,
            payload,
        } => target.entity_type.len() + target.key.len() + command.len() + payload.len(),
    }
}

impl Entities {
    /// Number of entities held in memory.
    pub fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Bytes the entities held in memory account for (see [`footprint`]).
    pub fn resident_bytes(&self) -> usize {
        self.resident.load(Ordering::Relaxed)
    }

    /// The bound on [`Entities::resident_bytes`] (`None`: only the entity count is bounded).
    pub fn resident_budget(&self) -> Option<usize> {
        (self.entity_budget > 0).then_some(self.entity_budget)
    }

    /// Accounts what `slot` (of `id`) holds now, and passivates idle entities if that makes the
    /// node exceed its bound. The caller holds the slot, so it is not passivated itself.
    pub(super) fn account(&self, slot: &Slot, id: &EntityId, loaded: Option<&Loaded>) {
        let bytes = footprint(id, loaded);
        let old = slot.bytes.swap(bytes, Ordering::Relaxed);
        if bytes >= old {
            self.resident.fetch_add(bytes - old, Ordering::Relaxed);
        } else {
            self.resident.fetch_sub(old - bytes, Ordering::Relaxed);
        }
        if self.entity_budget > 0 && self.resident_bytes() > self.entity_budget {
            self.passivate();
        }
    }

    /// Drops least recently used idle entities until the resident bytes are within the bound
    /// (or no idle entity is left).
    fn passivate(&self) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        while self.resident_bytes() > self.entity_budget {
            if !self.evict(&mut cache) {
                break;
            }
        }
    }

    /// Finds or creates the cache slot of `id`, evicting idle entities past capacity.
    pub(super) fn slot(&self, id: &EntityId) -> Result<Arc<Slot>> {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| Error::Internal("entity cache poisoned".into()))?;
        if let Some(slot) = cache.get(&IdRef(id)) {
            slot.last_used.store(tick, Ordering::Relaxed);
            return Ok(slot.clone());
        }
        if cache.len() >= self.options.cache_capacity {
            self.evict(&mut cache);
        }
        while self.entity_budget > 0 && self.resident_bytes() > self.entity_budget {
            if !self.evict(&mut cache) {
                break;
            }
        }
        let bytes = footprint(id, None);
        self.resident.fetch_add(bytes, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            loaded: tokio::sync::Mutex::new(None),
            durable_seq: AtomicU64::new(0),
            last_used: AtomicU64::new(tick),
            bytes: AtomicUsize::new(bytes),
            total: self.resident.clone(),
        });
        cache.insert(CacheKey::new(id), slot.clone());
        Ok(slot)
    }

    /// Evicts the least recently used of a sample of idle entities. An entity is idle when no
    /// command holds it: its last change is then durable, so dropping it loses nothing. False
    /// when no idle entity was found.
    fn evict(&self, cache: &mut CacheMap) -> bool {
        let victim = cache
            .iter()
            .filter(|(_, s)| Arc::strong_count(s) == 1)
            .take(32)
            .min_by_key(|(_, s)| s.last_used.load(Ordering::Relaxed))
            .map(|(key, _)| key.id());
        if let Some(id) = victim {
            cache.remove(&IdRef(&id));
            self.warm.forget(&id);
            self.metrics.cache_eviction();
            return true;
        }
        false
    }

    /// Drops the cached entities `pick` chooses (a shard moved: their next command loads them
    /// from what the store holds now).
    pub fn forget_where(&self, pick: impl Fn(&EntityId) -> bool) {
        let picked: Vec<EntityId> = match self.cache.lock() {
            Ok(mut cache) => {
                let picked: Vec<EntityId> = cache
                    .keys()
                    .map(CacheKey::id)
                    .filter(|id| pick(id))
                    .collect();
                for id in &picked {
                    cache.remove(&IdRef(id));
                }
                picked
            }
            Err(_) => return,
        };
        for id in &picked {
            self.warm.forget(id);
        }
    }

    pub(super) fn drop_from_cache(&self, id: &EntityId) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(&IdRef(id));
        }
        self.warm.forget(id);
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    /// A resident entity's slot, with its `Arc` counts, stays within 160 bytes (one of the
    /// allocator's size classes): it is in memory for every resident entity.
    #[test]
    fn a_slot_stays_small() {
        assert!(
            size_of::<Slot>() + 2 * size_of::<usize>() <= 160,
            "Slot is {} bytes",
            size_of::<Slot>()
        );
        assert_eq!(size_of::<CacheKey>(), 16);
    }

    #[test]
    fn cache_keys_find_their_ids_and_only_them() {
        let hasher = RandomState::new();
        let ids = [
            EntityId::new("ab", "c"),
            EntityId::new("a", "bc"),
            EntityId::new("a", "b/c"),
            EntityId::new("counter", "ключ"),
            EntityId::new("t", ""),
        ];
        let mut map = CacheMap::default();
        for (i, id) in ids.iter().enumerate() {
            let key = CacheKey::new(id);
            assert_eq!(key.id(), *id);
            assert_eq!(hasher.hash_one(&key), hasher.hash_one(IdRef(id)));
            map.insert(key, Arc::new(test_slot(i)));
        }
        assert_eq!(map.len(), ids.len());
        for (i, id) in ids.iter().enumerate() {
            let slot = map.get(&IdRef(id)).expect("found");
            assert_eq!(slot.durable_seq.load(Ordering::Relaxed), i as u64);
        }
        assert!(map.get(&IdRef(&EntityId::new("abc", ""))).is_none());
        assert!(map.get(&IdRef(&EntityId::new("a", "b"))).is_none());
    }

    fn test_slot(seq: usize) -> Slot {
        Slot {
            loaded: tokio::sync::Mutex::new(None),
            durable_seq: AtomicU64::new(seq as u64),
            last_used: AtomicU64::new(0),
            bytes: AtomicUsize::new(0),
            total: Arc::default(),
        }
    }
}
