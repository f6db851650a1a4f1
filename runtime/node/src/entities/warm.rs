//! Warm instances: the guest instance of a hot entity, kept after a command that succeeded so
//! that the entity's next command skips instantiation (for interpreted guests, a fresh
//! interpreter: most of a command's cost).
//!
//! *What a guest may observe.* An instance serves one entity (type and key) only, and only the
//! module version it was made from. Guest memory (module-level globals, caches) may therefore
//! carry over from one command of an entity to its next ones while the entity is hot on this
//! node — never to another entity, never into a replay or an activation (they take fresh
//! instances; the one an activation folded the entity's events in may then serve that
//! entity's next command), and never past a command that failed in any way (the instance is
//! dropped), a trap or deadline, a re-activation (another lease or module version), an append
//! that failed, or the entity leaving the cache. Durable state is only what the host passes in and journals:
//! whatever a guest keeps in memory may vanish at any command.
//!
//! The set is bounded by the linear memory of its instances
//! ([`EntityOptions::warm_memory`](super::EntityOptions)), which bounds what they keep
//! resident, and by their number ([`EntityOptions::warm_max_count`](super::EntityOptions):
//! each holds a slot of the host's instance pool, and commands that need a fresh instance must
//! find one free): past either, the least recently used instances are dropped (an
//! interpreter's instance holds tens of MiB, a Rust one about one); an instance idle for
//! [`EntityOptions::warm_idle`](super::EntityOptions) is dropped at the next sweep, so an idle
//! node gives its instances' memory back to the pool. An instance whose memory has grown past
//! half the per-instance limit is not kept: memory never shrinks, and an interpreter's heap
//! grows with its garbage until a command runs out of memory where a fresh instance would not.
//!
//! Linear memory bounds what an instance keeps resident from above, and for a small instance
//! far above (a Rust instance has about 1 MiB, mostly a stack it never touches, and keeps about
//! 100 KB resident), while an interpreter's instance (10–30 MiB) keeps most of it. So the
//! *large* instances, over [`LARGE_INSTANCE`] of linear memory, may together hold only
//! [`LARGE_SHARE`] of the budget: a thousand hot Rust entities stay warm in the default budget
//! without letting a busy Python type hold a gigabyte.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::{Duration, Instant},
};

use cella_core::EntityId;
use cella_host::{Instance, Module};

/// Linear memory past which a kept instance counts as large (an interpreter's, typically).
const LARGE_INSTANCE: usize = 4 << 20;

/// The part of the budget the large instances may hold together (an eighth).
const LARGE_SHARE: usize = 8;

struct Kept {
    module: Module,
    instance: Instance,
    bytes: usize,
    used: Instant,
    /// Its place in [`Inner::order`].
    tick: u64,
}

struct Inner {
    kept: HashMap<EntityId, Kept>,
    /// The kept instances from the least recently used on (by the tick of their last use).
    order: BTreeMap<u64, EntityId>,
    /// The large kept instances (over [`LARGE_INSTANCE`]), in the same order.
    large: BTreeMap<u64, EntityId>,
    tick: u64,
    /// The sum of the kept instances' `bytes`.
    bytes: usize,
    /// The sum of the large kept instances' `bytes`.
    large_bytes: usize,
}

impl Inner {
    fn remove(&mut self, id: &EntityId) -> Option<Kept> {
        let kept = self.kept.remove(id)?;
        self.order.remove(&kept.tick);
        self.bytes -= kept.bytes;
        if kept.bytes > LARGE_INSTANCE {
            self.large.remove(&kept.tick);
            self.large_bytes -= kept.bytes;
        }
        Some(kept)
    }

    /// Drops the least recently used instance (to the caller, who drops it outside the lock).
    fn pop_oldest(&mut self) -> Option<Kept> {
        let (_, id) = self.order.first_key_value()?;
        let id = id.clone();
        self.remove(&id)
    }

    /// Drops the least recently used large instance.
    fn pop_oldest_large(&mut self) -> Option<Kept> {
        let (_, id) = self.large.first_key_value()?;
        let id = id.clone();
        self.remove(&id)
    }
}

/// The warm instances of one node, by entity.
pub(super) struct Warm {
    /// Most linear memory the kept instances may hold together (0: keep none).
    budget: usize,
    /// Most instances kept (they hold slots of the host's instance pool, which fresh
    /// instances need too).
    max_count: usize,
    /// Linear memory past which an instance is dropped instead of kept.
    recycle_at: usize,
    idle: Duration,
    inner: Mutex<Inner>,
}

impl Warm {
    pub(super) fn new(budget: usize, max_count: usize, recycle_at: usize, idle: Duration) -> Warm {
        Warm {
            budget,
            max_count,
            recycle_at,
            idle,
            inner: Mutex::new(Inner {
                kept: HashMap::new(),
                order: BTreeMap::new(),
                large: BTreeMap::new(),
                tick: 0,
                bytes: 0,
                large_bytes: 0,
            }),
        }
    }

    /// The instance kept for `id`, if it was made from `module` (else it is dropped). The
    /// caller holds the entity's lock, so no one else uses it meanwhile.
    pub(super) fn take(&self, id: &EntityId, module: &Module) -> Option<Instance> {
        let kept = self.inner.lock().ok()?.remove(id)?;
        (kept.module.is(module) && !kept.instance.is_poisoned()).then_some(kept.instance)
        // A mismatched instance is dropped here, outside the lock (a drop resets its memory).
    }

    /// Keeps `instance` (made from `module`) for `id`'s next command, making room by dropping
    /// the least recently used ones, and drops instances idle for too long.
    pub(super) fn put(&self, id: &EntityId, module: &Module, instance: Instance) {
        let bytes = instance.memory_bytes();
        let large = bytes > LARGE_INSTANCE;
        let large_budget = self.budget / LARGE_SHARE;
        if bytes > self.budget
            || bytes > self.recycle_at
            || (large && bytes > large_budget)
            || self.max_count == 0
            || instance.is_poisoned()
        {
            return;
        }
        let now = Instant::now();
        let mut dropped = Vec::new();
        {
            let Ok(mut inner) = self.inner.lock() else {
                return;
            };
            dropped.extend(inner.remove(id));
            while inner.bytes + bytes > self.budget || inner.kept.len() >= self.max_count {
                let Some(oldest) = inner.pop_oldest() else {
                    break;
                };
                dropped.push(oldest);
            }
            while large && inner.large_bytes + bytes > large_budget {
                let Some(oldest) = inner.pop_oldest_large() else {
                    break;
                };
                dropped.push(oldest);
            }
            inner.bytes += bytes;
            inner.tick += 1;
            let tick = inner.tick;
            if large {
                inner.large_bytes += bytes;
                inner.large.insert(tick, id.clone());
            }
            let kept = Kept {
                module: module.clone(),
                instance,
                bytes,
                used: now,
                tick,
            };
            inner.order.insert(tick, id.clone());
            inner.kept.insert(id.clone(), kept);
        }
        drop(dropped);
    }

    /// Drops the instance kept for `id`, if any.
    pub(super) fn forget(&self, id: &EntityId) {
        let kept = self.inner.lock().ok().and_then(|mut i| i.remove(id));
        drop(kept);
    }

    /// Drops the instances idle for longer than the idle time (see the module doc).
    pub(super) fn sweep(&self) {
        let now = Instant::now();
        let dropped = match self.inner.lock() {
            Ok(mut inner) => Self::expire(&mut inner, now, self.idle),
            Err(_) => Vec::new(),
        };
        drop(dropped);
    }

    /// How many instances are kept, and their linear memory in bytes.
    pub(super) fn size(&self) -> (usize, usize) {
        self.inner
            .lock()
            .map(|i| (i.kept.len(), i.bytes))
            .unwrap_or((0, 0))
    }

    fn expire(inner: &mut Inner, now: Instant, idle: Duration) -> Vec<Kept> {
        // In use order: the idle ones come first.
        let mut dropped = Vec::new();
        while let Some((_, id)) = inner.order.first_key_value() {
            let idle_for = inner
                .kept
                .get(id)
                .map_or(idle, |k| now.duration_since(k.used));
            if idle_for < idle {
                break;
            }
            dropped.extend(inner.pop_oldest());
        }
        dropped
    }
}
