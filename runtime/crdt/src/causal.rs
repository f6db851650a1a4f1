//! Dots and causal contexts, the machinery of the add-wins types (`ORSet`, `Flag` and
//! `ORMap`'s keys): the optimized delta-state design of Almeida, Shoker and Baquero.
//!
//! A [`Dot`] names one add: the replica that made it and that replica's sequence number. A
//! [`CausalContext`] is the set of dots a state has seen, kept compact as a version vector (every
//! dot up to a number, per replica) plus a cloud of dots beyond a gap; a dot moves into the
//! vector as soon as the gap before it closes, so a context holds no tombstones for ever. A
//! [`DotKernel`] maps keys to the dots that keep them alive, with one context: a removed key is
//! one whose dots the context has seen but the store no longer holds. Merging keeps a dot that
//! both sides hold, or that one side holds and the other has not seen. Both forms are canonical
//! (compacted, no empty entries), so equal states compare equal.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One event: a replica and its sequence number (from 1).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// The replica that made the event.
    pub replica: String,
    /// The replica's sequence number for it.
    pub counter: u64,
}

/// The dots a state has seen: a version vector plus the dots beyond a gap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CausalContext {
    vector: BTreeMap<String, u64>,
    cloud: BTreeSet<Dot>,
}

impl CausalContext {
    /// Whether the context has seen `dot`.
    pub fn contains(&self, dot: &Dot) -> bool {
        self.vector
            .get(&dot.replica)
            .is_some_and(|&seen| dot.counter <= seen)
            || self.cloud.contains(dot)
    }

    /// The next dot for `replica`: one past every dot of it this context has seen.
    pub fn next_dot(&self, replica: &str) -> Dot {
        let in_vector = self.vector.get(replica).copied().unwrap_or(0);
        let in_cloud = self
            .cloud
            .iter()
            .filter(|d| d.replica == replica)
            .map(|d| d.counter)
            .max()
            .unwrap_or(0);
        Dot {
            replica: replica.to_string(),
            counter: in_vector.max(in_cloud).saturating_add(1),
        }
    }

    /// Adds `dot`.
    pub fn insert(&mut self, dot: Dot) {
        self.cloud.insert(dot);
        self.compact();
    }

    /// Joins `other` into this context.
    pub fn join(&mut self, other: &CausalContext) {
        for (replica, &seen) in &other.vector {
            let entry = self.vector.entry(replica.clone()).or_insert(0);
            *entry = (*entry).max(seen);
        }
        self.cloud.extend(other.cloud.iter().cloned());
        self.compact();
    }

    /// Whether the context has seen nothing.
    pub fn is_empty(&self) -> bool {
        self.vector.is_empty() && self.cloud.is_empty()
    }

    /// Moves every dot that extends the vector without a gap into it and drops dots the vector
    /// covers. The cloud is ordered by replica then number, so one pass suffices.
    fn compact(&mut self) {
        let cloud = std::mem::take(&mut self.cloud);
        for dot in cloud {
            let seen = self.vector.get(&dot.replica).copied().unwrap_or(0);
            if dot.counter <= seen {
                continue;
            }
            if dot.counter == seen + 1 {
                self.vector.insert(dot.replica, dot.counter);
            } else {
                self.cloud.insert(dot);
            }
        }
    }
}

/// Keys kept alive by dots, with the context of every dot seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DotKernel<K: Ord> {
    entries: BTreeMap<K, BTreeSet<Dot>>,
    context: CausalContext,
}

impl<K: Ord> Default for DotKernel<K> {
    fn default() -> Self {
        DotKernel {
            entries: BTreeMap::new(),
            context: CausalContext::default(),
        }
    }
}

impl<K: Ord + Clone> DotKernel<K> {
    /// Whether `key` is alive (holds at least one dot).
    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// The live keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.keys()
    }

    /// Whether no key is alive.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The delta that adds `key` with a fresh dot of `replica` and retires the key's older dots
    /// (so they compact away wherever the delta goes).
    pub fn add(&self, replica: &str, key: K) -> DotKernel<K> {
        let dot = self.context.next_dot(replica);
        let mut delta = self.remove(&key);
        delta.context.insert(dot.clone());
        delta.entries.insert(key, BTreeSet::from([dot]));
        delta
    }

    /// The delta that removes `key`: a context of the dots this state holds for it. Dots added
    /// elsewhere that this state has not seen survive it (add wins).
    pub fn remove(&self, key: &K) -> DotKernel<K> {
        let mut delta = DotKernel::default();
        for dot in self.entries.get(key).into_iter().flatten() {
            delta.context.cloud.insert(dot.clone());
        }
        delta.context.compact();
        delta
    }

    /// The delta that removes every key this state holds.
    pub fn clear(&self) -> DotKernel<K> {
        let mut delta = DotKernel::default();
        for dot in self.entries.values().flatten() {
            delta.context.cloud.insert(dot.clone());
        }
        delta.context.compact();
        delta
    }

    /// Joins `other` (a state or a delta) into this kernel.
    pub fn merge(&mut self, other: &DotKernel<K>) {
        let mut keys: BTreeSet<&K> = self.entries.keys().collect();
        keys.extend(other.entries.keys());
        let mut entries = BTreeMap::new();
        let empty = BTreeSet::new();
        for key in keys {
            let mine = self.entries.get(key).unwrap_or(&empty);
            let theirs = other.entries.get(key).unwrap_or(&empty);
            let kept: BTreeSet<Dot> = mine
                .iter()
                .filter(|d| theirs.contains(*d) || !other.context.contains(d))
                .chain(theirs.iter().filter(|d| !self.context.contains(d)))
                .cloned()
                .collect();
            if !kept.is_empty() {
                entries.insert(key.clone(), kept);
            }
        }
        self.entries = entries;
        self.context.join(&other.context);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(replica: &str, counter: u64) -> Dot {
        Dot {
            replica: replica.into(),
            counter,
        }
    }

    #[test]
    fn context_compacts_once_gaps_close() {
        let mut context = CausalContext::default();
        context.insert(dot("a", 2));
        assert!(!context.contains(&dot("a", 1)));
        assert!(context.contains(&dot("a", 2)));
        assert_eq!(context.next_dot("a"), dot("a", 3));
        context.insert(dot("a", 1));
        assert_eq!(context.cloud.len(), 0);
        assert_eq!(context.vector.get("a"), Some(&2));
    }

    #[test]
    fn a_remove_keeps_unseen_adds() {
        let mut a = DotKernel::default();
        a.merge(&a.add("a", "x"));
        let mut b = a.clone();
        b.merge(&b.remove(&"x"));
        assert!(!b.contains(&"x"));
        a.merge(&a.add("a", "x"));
        b.merge(&a);
        assert!(b.contains(&"x"));
    }
}
