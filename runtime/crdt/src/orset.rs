//! `ORSet`: an observed-remove, add-wins set of JSON values, on a [`DotKernel`]. A remove
//! takes away only the adds its replica has seen, so an add concurrent with a remove survives;
//! the causal context compacts, so removed elements leave no tombstones behind.

use serde::{Deserialize, Serialize};

use crate::{Element, causal::DotKernel};

/// An add-wins observed-remove set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ORSet {
    kernel: DotKernel<Element>,
}

impl ORSet {
    /// The delta that adds `element` as `replica`.
    pub fn add(&self, replica: &str, element: Element) -> ORSet {
        ORSet {
            kernel: self.kernel.add(replica, element),
        }
    }

    /// The delta that removes `element` (the adds of it this state has seen).
    pub fn remove(&self, element: &Element) -> ORSet {
        ORSet {
            kernel: self.kernel.remove(element),
        }
    }

    /// The delta that removes every element this state holds.
    pub fn clear(&self) -> ORSet {
        ORSet {
            kernel: self.kernel.clear(),
        }
    }

    /// Joins `other` (a state or a delta).
    pub fn merge(&mut self, other: &ORSet) {
        self.kernel.merge(&other.kernel);
    }

    /// Whether `element` is in.
    pub fn contains(&self, element: &Element) -> bool {
        self.kernel.contains(element)
    }

    /// The elements, in canonical order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.kernel.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn e(v: i64) -> Element {
        json!(v).into()
    }

    #[test]
    fn add_wins_over_a_concurrent_remove() {
        let mut a = ORSet::default();
        a.merge(&a.add("a", e(1)));
        let mut b = a.clone();
        b.merge(&b.remove(&e(1)));
        a.merge(&a.add("a", e(1)));
        a.merge(&b);
        b.merge(&a);
        assert!(a.contains(&e(1)));
        assert_eq!(a, b);
    }

    #[test]
    fn a_seen_add_is_removed_and_can_come_back() {
        let mut a = ORSet::default();
        a.merge(&a.add("a", e(1)));
        a.merge(&a.add("a", e(2)));
        a.merge(&a.remove(&e(1)));
        assert_eq!(a.elements().cloned().collect::<Vec<_>>(), vec![e(2)]);
        a.merge(&a.clear());
        assert_eq!(a.elements().count(), 0);
        a.merge(&a.add("a", e(1)));
        assert!(a.contains(&e(1)));
    }

    #[test]
    fn a_remove_that_arrives_first_still_removes() {
        let mut a = ORSet::default();
        let add = a.add("a", e(1));
        a.merge(&add);
        let remove = a.remove(&e(1));
        let mut b = ORSet::default();
        b.merge(&remove);
        b.merge(&add);
        assert!(!b.contains(&e(1)));
    }
}
