//! `Flag`: an enable-wins flag, on a [`DotKernel`] with one key. Enabling adds a dot; disabling
//! removes the dots seen; an enable concurrent with a disable survives it.

use serde::{Deserialize, Serialize};

use crate::causal::DotKernel;

/// An enable-wins flag; off until enabled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    kernel: DotKernel<()>,
}

impl Flag {
    /// The delta that turns the flag on.
    pub fn enable(&self, replica: &str) -> Flag {
        Flag {
            kernel: self.kernel.add(replica, ()),
        }
    }

    /// The delta that turns the flag off (unless enabled concurrently elsewhere).
    pub fn disable(&self) -> Flag {
        Flag {
            kernel: self.kernel.clear(),
        }
    }

    /// Joins `other` (a state or a delta).
    pub fn merge(&mut self, other: &Flag) {
        self.kernel.merge(&other.kernel);
    }

    /// Whether the flag is on.
    pub fn is_enabled(&self) -> bool {
        !self.kernel.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enable_wins() {
        let mut a = Flag::default();
        a.merge(&a.enable("a"));
        let mut b = a.clone();
        b.merge(&b.disable());
        assert!(!b.is_enabled());
        a.merge(&a.enable("a"));
        b.merge(&a);
        assert!(b.is_enabled());
        b.merge(&b.disable());
        a.merge(&b);
        assert!(!a.is_enabled());
    }
}
