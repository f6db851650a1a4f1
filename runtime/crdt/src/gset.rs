//! `GSet`: a grow-only set of JSON values; merging is union.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::Element;

/// A grow-only set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GSet {
    elements: BTreeSet<Element>,
}

impl GSet {
    /// The delta that adds `element` (empty if it is already in).
    pub fn add(&self, element: Element) -> GSet {
        let mut delta = GSet::default();
        if !self.elements.contains(&element) {
            delta.elements.insert(element);
        }
        delta
    }

    /// Joins `other` (a state or a delta): union.
    pub fn merge(&mut self, other: &GSet) {
        self.elements.extend(other.elements.iter().cloned());
    }

    /// Whether `element` is in.
    pub fn contains(&self, element: &Element) -> bool {
        self.elements.contains(element)
    }

    /// The elements, in canonical order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.elements.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn union_of_adds() {
        let mut a = GSet::default();
        a.merge(&a.add(json!(1).into()));
        assert_eq!(a.add(json!(1).into()), GSet::default());
        let mut b = GSet::default();
        b.merge(&b.add(json!("x").into()));
        a.merge(&b);
        assert!(a.contains(&json!("x").into()) && a.contains(&json!(1).into()));
        assert_eq!(a.elements().count(), 2);
    }
}
