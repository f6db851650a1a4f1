//! `ORMap`: string keys to CRDT values of any kind. Keys are an add-wins set (a [`DotKernel`]):
//! updating a key adds it, deleting removes the adds seen, so an update concurrent with a
//! delete keeps the key. Values merge per key with their own kind's merge.
//!
//! A deleted key's value stays in the state, unread, and is merged on: if the key is updated
//! again (here, or concurrently elsewhere) it reads as the old value merged with the new
//! operations, as in Akka's and Cloudstate's ORMap (a counter does not restart from zero). A
//! key's value kind is fixed by the first operation on it (counter operations make a
//! `PNCounter`, `Add`/`Remove` an `ORSet`, `Set` an `LWWRegister`, `Enable`/`Disable` a `Flag`,
//! `Update`/`Delete` an `ORMap`, `Vote` a `Vote`); if two replicas concurrently create one key
//! with different kinds, the kind later in [`Kind`]'s order wins everywhere.

use std::{cell::Cell, collections::BTreeMap};

use serde::{Deserialize, Deserializer, Serialize, de::Error as _};

use crate::{Crdt, Error, Kind, Op, causal::DotKernel};

/// An add-wins map of CRDTs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ORMap {
    keys: DotKernel<String>,
    #[serde(deserialize_with = "nested_values")]
    values: BTreeMap<String, Crdt>,
}

/// How deeply maps may nest in decoded bytes: decoding recurses, so bytes from elsewhere must
/// not be able to exhaust the stack.
pub const MAX_MAP_NESTING: u32 = 32;

thread_local! {
    /// The nesting of the map being decoded on this thread.
    static DECODING_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Decodes a map's values, refusing maps nested more than [`MAX_MAP_NESTING`] deep.
fn nested_values<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, Crdt>, D::Error> {
    let depth = DECODING_DEPTH.with(|d| {
        d.set(d.get() + 1);
        d.get()
    });
    let values = if depth > MAX_MAP_NESTING {
        Err(D::Error::custom(format!(
            "maps nested more than {MAX_MAP_NESTING} deep"
        )))
    } else {
        BTreeMap::deserialize(deserializer)
    };
    DECODING_DEPTH.with(|d| d.set(d.get() - 1));
    values
}

impl ORMap {
    /// The delta that applies `op` to `key`'s value as `replica`, adding the key.
    pub fn update(&self, replica: &str, key: &str, op: &Op) -> Result<ORMap, Error> {
        self.update_as(replica, key, None, op)
    }

    /// [`ORMap::update`], creating a new key's value as `kind` (when set) instead of the kind
    /// the operation implies; the only way to put a `GCounter` or a `GSet` in a map.
    pub fn update_as(
        &self,
        replica: &str,
        key: &str,
        kind: Option<Kind>,
        op: &Op,
    ) -> Result<ORMap, Error> {
        let value = match self.values.get(key) {
            Some(value) => value.delta(replica, op)?,
            None => match kind.or_else(|| Kind::for_op(op)) {
                Some(kind) => Crdt::new(kind).delta(replica, op)?,
                // `Clear` on a key that was never written: nothing to do.
                None => return Ok(ORMap::default()),
            },
        };
        Ok(ORMap {
            keys: self.keys.add(replica, key.to_string()),
            values: BTreeMap::from([(key.to_string(), value)]),
        })
    }

    /// The delta that deletes `key` (the updates of it this state has seen).
    pub fn delete(&self, key: &str) -> ORMap {
        ORMap {
            keys: self.keys.remove(&key.to_string()),
            values: BTreeMap::new(),
        }
    }

    /// The delta that deletes every key this state holds.
    pub fn clear(&self) -> ORMap {
        ORMap {
            keys: self.keys.clear(),
            values: BTreeMap::new(),
        }
    }

    /// Joins `other` (a state or a delta).
    pub fn merge(&mut self, other: &ORMap) {
        self.keys.merge(&other.keys);
        for (key, value) in &other.values {
            match self.values.get_mut(key) {
                Some(mine) => mine.join_any(value),
                None => {
                    self.values.insert(key.clone(), value.clone());
                }
            }
        }
    }

    /// `key`'s value, if the key is in the map.
    pub fn get(&self, key: &str) -> Option<&Crdt> {
        if self.keys.contains(&key.to_string()) {
            self.values.get(key)
        } else {
            None
        }
    }

    /// The keys in the map, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.keys.keys()
    }

    /// The keys in the map with their values, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Crdt)> {
        self.keys
            .keys()
            .filter_map(|key| self.values.get(key).map(|value| (key, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn updates_add_keys_and_merge_values() {
        let mut a = ORMap::default();
        a.merge(&a.update("a", "hits", &Op::Increment(2)).unwrap());
        let mut b = ORMap::default();
        b.merge(&b.update("b", "hits", &Op::Increment(3)).unwrap());
        b.merge(&b.update("b", "tags", &Op::Add(json!("x"))).unwrap());
        a.merge(&b);
        assert_eq!(a.get("hits").unwrap().value(), json!(5));
        assert_eq!(a.keys().collect::<Vec<_>>(), ["hits", "tags"]);
        assert!(matches!(
            a.update("a", "tags", &Op::Increment(1)),
            Err(Error::OperationMismatch { .. })
        ));
    }

    #[test]
    fn update_wins_over_a_concurrent_delete() {
        let mut a = ORMap::default();
        a.merge(&a.update("a", "k", &Op::Increment(1)).unwrap());
        let mut b = a.clone();
        b.merge(&b.delete("k"));
        assert!(b.get("k").is_none());
        a.merge(&a.update("a", "k", &Op::Increment(1)).unwrap());
        b.merge(&a);
        assert_eq!(b.get("k").unwrap().value(), json!(2));
        b.merge(&b.clear());
        assert_eq!(b.keys().count(), 0);
    }

    #[test]
    fn concurrent_kinds_resolve_to_the_later_kind() {
        let mut a = ORMap::default();
        a.merge(&a.update("a", "k", &Op::Increment(1)).unwrap());
        let mut b = ORMap::default();
        b.merge(&b.update("b", "k", &Op::Enable).unwrap());
        let mut ab = a.clone();
        ab.merge(&b);
        b.merge(&a);
        assert_eq!(ab, b);
        assert_eq!(ab.get("k").unwrap().kind(), Kind::PNCounter.max(Kind::Flag));
    }
}
