//! `Vote`: each replica's current vote (for or against). A replica changes only its own entry,
//! numbered by a per-replica version, so merging keeps the latest version per replica. Totals:
//! how many voted for, how many voted at all; the quorum queries build on them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Each replica's latest vote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// Replica → (version, vote); ordered by version, then `true` over `false`.
    votes: BTreeMap<String, (u64, bool)>,
}

impl Vote {
    /// The delta that records `replica`'s vote.
    pub fn vote(&self, replica: &str, vote: bool) -> Vote {
        let version = self
            .votes
            .get(replica)
            .map_or(1, |(version, _)| version.saturating_add(1));
        Vote {
            votes: BTreeMap::from([(replica.to_string(), (version, vote))]),
        }
    }

    /// Joins `other` (a state or a delta): the latest vote per replica.
    pub fn merge(&mut self, other: &Vote) {
        for (replica, &entry) in &other.votes {
            let mine = self.votes.entry(replica.clone()).or_insert(entry);
            *mine = (*mine).max(entry);
        }
    }

    /// `replica`'s vote, if it voted.
    pub fn vote_of(&self, replica: &str) -> Option<bool> {
        self.votes.get(replica).map(|&(_, vote)| vote)
    }

    /// How many replicas vote for.
    pub fn votes_for(&self) -> usize {
        self.votes.values().filter(|(_, vote)| *vote).count()
    }

    /// How many replicas have voted.
    pub fn voters(&self) -> usize {
        self.votes.len()
    }

    /// Whether at least `needed` replicas vote for.
    pub fn quorum(&self, needed: usize) -> bool {
        self.votes_for() >= needed
    }

    /// Whether more than half of the voters vote for.
    pub fn majority(&self) -> bool {
        self.votes_for() * 2 > self.voters()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_vote_per_replica_counts() {
        let mut a = Vote::default();
        a.merge(&a.vote("a", true));
        let mut b = Vote::default();
        b.merge(&b.vote("b", true));
        b.merge(&b.vote("b", false));
        let mut c = Vote::default();
        c.merge(&c.vote("c", true));
        a.merge(&b);
        a.merge(&c);
        assert_eq!((a.votes_for(), a.voters()), (2, 3));
        assert!(a.majority() && a.quorum(2) && !a.quorum(3));
        assert_eq!(a.vote_of("b"), Some(false));
        a.merge(&a.vote("c", false));
        assert!(!a.majority());
    }
}
