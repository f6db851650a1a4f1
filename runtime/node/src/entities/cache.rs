//! The cache of hot entities: one slot per entity holding its FIFO lock around the loaded
//! state and the highest sequence number known durable, found or created per command and
//! evicted approximately least-recently-used among idle entities.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use cella_core::EntityId;

use super::{Entities, activation::Loaded};
use crate::error::{Error, Result};

/// One cached entity.
pub(super) struct Slot {
    pub(super) loaded: tokio::sync::Mutex<Option<Loaded>>,
    /// Highest sequence number known durable.
    pub(super) durable_seq: AtomicU64,
    last_used: AtomicU64,
}

impl Entities {
    /// Number of entities held in memory.
    pub fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Finds or creates the cache slot of `id`, evicting idle entities past capacity.
    pub(super) fn slot(&self, id: &EntityId) -> Result<Arc<Slot>> {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| Error::Internal("entity cache poisoned".into()))?;
        if let Some(slot) = cache.get(id) {
            slot.last_used.store(tick, Ordering::Relaxed);
            return Ok(slot.clone());
        }
        if cache.len() >= self.options.cache_capacity {
            self.evict(&mut cache);
        }
        let slot = Arc::new(Slot {
            loaded: tokio::sync::Mutex::new(None),
            durable_seq: AtomicU64::new(0),
            last_used: AtomicU64::new(tick),
        });
        cache.insert(id.clone(), slot.clone());
        Ok(slot)
    }

    /// Evicts the least recently used of a sample of idle entities. An entity is idle when no
    /// command holds it: its last change is then durable, so dropping it loses nothing.
    fn evict(&self, cache: &mut HashMap<EntityId, Arc<Slot>>) {
        let victim = cache
            .iter()
            .filter(|(_, s)| Arc::strong_count(s) == 1)
            .take(32)
            .min_by_key(|(_, s)| s.last_used.load(Ordering::Relaxed))
            .map(|(id, _)| id.clone());
        if let Some(id) = victim {
            cache.remove(&id);
            self.warm.forget(&id);
            self.metrics.cache_eviction();
        }
    }

    pub(super) fn drop_from_cache(&self, id: &EntityId) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(id);
        }
        self.warm.forget(id);
    }
}
