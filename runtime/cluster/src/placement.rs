//! Placement: an entity `(type, key)` hashes to one of `shards` shards (fixed when the cluster
//! is created, so an entity never changes shard), and shard `s` belongs to partition
//! `s % partitions + 1` (group 0 is cluster metadata). The hash is FNV-1a over the type, a zero
//! byte and the key: stable across builds and platforms, unlike `std`'s hasher.

use cella_core::EntityId;

use crate::GroupId;

/// How entities map to partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    pub shards: u32,
    pub partitions: u32,
}

impl Default for Placement {
    fn default() -> Self {
        Placement {
            shards: 4096,
            partitions: 8,
        }
    }
}

impl Placement {
    /// The entity's shard.
    pub fn shard(&self, id: &EntityId) -> u32 {
        self.shard_of(&id.entity_type, &id.key)
    }

    /// The shard of the entity `(entity_type, key)`.
    pub fn shard_of(&self, entity_type: &str, key: &str) -> u32 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let bytes = entity_type
            .as_bytes()
            .iter()
            .chain(&[0u8])
            .chain(key.as_bytes());
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (h % u64::from(self.shards.max(1))) as u32
    }

    /// The partition (raft group) that owns the entity.
    pub fn partition(&self, id: &EntityId) -> GroupId {
        self.default_partition(self.shard(id))
    }

    /// The partition `shard` belongs to unless it was moved.
    pub fn default_partition(&self, shard: u32) -> GroupId {
        GroupId::from(shard % self.partitions.max(1)) + 1
    }

    /// Every partition's group id.
    pub fn groups(&self) -> impl Iterator<Item = GroupId> {
        1..=GroupId::from(self.partitions.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_stable_and_spread() {
        let p = Placement::default();
        let id = EntityId::new("counter", "c1");
        // Pinned: changing the hash would move every stored entity.
        assert_eq!(p.shard(&id), 3821);
        assert_ne!(p.shard(&id), p.shard(&EntityId::new("counterc", "1")));
        let mut per_partition = [0u32; 8];
        for k in 0..8000 {
            let g = p.partition(&EntityId::new("counter", format!("k{k}")));
            assert!((1..=8).contains(&g));
            per_partition[(g - 1) as usize] += 1;
        }
        assert!(
            per_partition.iter().all(|n| (800..1200).contains(n)),
            "{per_partition:?}"
        );
        assert_eq!(p.groups().collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
    }
}
