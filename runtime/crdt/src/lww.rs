//! `LWWRegister`: a last-writer-wins register of one JSON value. A write carries a timestamp
//! given by the caller (the crate has no clock) and the writing replica's id; the write with
//! the largest (timestamp, replica) wins, the value breaking a tie a replica made with itself.
//! A replica's write always wins over what that replica has already seen: a timestamp not
//! above the current one is raised to one past it, so a replica's clock going back loses no
//! local write.

use serde::{Deserialize, Serialize};

use crate::Element;

/// One write: its timestamp, its replica and its value; ordered in that order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Write {
    /// The write's timestamp (the caller's clock, e.g. milliseconds since the epoch).
    pub timestamp: u64,
    /// The replica that wrote.
    pub replica: String,
    /// The value written.
    pub value: Element,
}

/// A last-writer-wins register; empty until the first write.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LWWRegister {
    current: Option<Write>,
}

impl LWWRegister {
    /// The delta that writes `value` as `replica` at `timestamp` (raised past the current
    /// write's timestamp if it is not above it).
    pub fn set(&self, replica: &str, value: Element, timestamp: u64) -> LWWRegister {
        let timestamp = match &self.current {
            Some(current) if current.timestamp >= timestamp => current.timestamp.saturating_add(1),
            _ => timestamp,
        };
        LWWRegister {
            current: Some(Write {
                timestamp,
                replica: replica.to_string(),
                value,
            }),
        }
    }

    /// Joins `other` (a state or a delta): the larger write.
    pub fn merge(&mut self, other: &LWWRegister) {
        if other.current > self.current {
            self.current.clone_from(&other.current);
        }
    }

    /// The winning write, if any.
    pub fn current(&self) -> Option<&Write> {
        self.current.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn latest_timestamp_wins_then_replica_id() {
        let r = LWWRegister::default();
        let mut a = r.clone();
        a.merge(&r.set("a", json!(1).into(), 10));
        let mut b = r.clone();
        b.merge(&r.set("b", json!(2).into(), 10));
        let mut c = r.clone();
        c.merge(&r.set("c", json!(3).into(), 9));
        let mut all = a.clone();
        all.merge(&c);
        all.merge(&b);
        assert_eq!(all.current().unwrap().value, json!(2).into());
        a.merge(&r.set("a", json!(4).into(), 11));
        all.merge(&a);
        assert_eq!(all.current().unwrap().value, json!(4).into());
    }

    #[test]
    fn a_clock_going_back_still_wins_locally() {
        let mut r = LWWRegister::default();
        r.merge(&r.set("a", json!("old").into(), 100));
        r.merge(&r.set("a", json!("new").into(), 50));
        assert_eq!(r.current().unwrap().value, json!("new").into());
        assert_eq!(r.current().unwrap().timestamp, 101);
    }
}
