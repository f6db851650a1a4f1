//! The entity layer's [`Journal`] in a cluster: appends go through the raft group of the
//! entity's partition, reads come from the node's store (which the partition's state machine
//! keeps up to date), and a lease is this node's leadership of the partition.

use std::sync::Arc;

use cella_core::{
    AppendFuture, EntityId, EntityLoad, Journal, JournalEntry, Lease, NotOwner, RowTable, Write,
};
use cella_store::Store;
use openraft::{alias::CommittedLeaderIdOf, impls::leader_id_adv::LeaderId};

use crate::{Cluster, TypeConfig};

/// The replicated journal of one node.
pub struct ClusterJournal {
    cluster: Arc<Cluster>,
    store: Store,
}

impl ClusterJournal {
    pub fn new(cluster: Arc<Cluster>, store: Store) -> ClusterJournal {
        ClusterJournal { cluster, store }
    }
}

fn entity_of(write: &Write) -> &EntityId {
    write.entity()
}

fn leader_id(lease: Lease) -> CommittedLeaderIdOf<TypeConfig> {
    LeaderId {
        term: lease.term,
        node_id: lease.node,
    }
}

/// The refusal of an append while its entity's shard is frozen for a move (or not the
/// partition's here): a move reads the shard's data once the appends let through before its
/// freeze have committed, so none may follow. Nothing was appended.
fn moving() -> AppendFuture {
    Box::pin(async {
        Err(cella_core::Error::NotServed(
            "the entity's shard is moving to another partition".into(),
        ))
    })
}

impl Journal for ClusterJournal {
    fn append(&self, writes: Vec<Write>) -> AppendFuture {
        let Some(first) = writes.first() else {
            return self.cluster.barrier_all();
        };
        let group = self.cluster.group_of(entity_of(first));
        let leader = self.cluster.leadership(group);
        if leader.is_none() {
            return Box::pin(async {
                Err(cella_core::Error::Unconfirmed(
                    "this node does not lead the entity's partition".into(),
                ))
            });
        }
        let id = entity_of(first).clone();
        self.cluster
            .submit_serving(group, &id, writes, leader)
            .unwrap_or_else(moving)
    }

    fn load(&self, id: &EntityId) -> cella_core::Result<EntityLoad> {
        self.store.load(id)
    }

    fn read_journal(
        &self,
        id: &EntityId,
        from: u64,
        limit: usize,
    ) -> cella_core::Result<Vec<JournalEntry>> {
        self.store.read_journal(id, from, limit)
    }

    fn lease(&self, id: &EntityId) -> Result<Option<Lease>, NotOwner> {
        let group = self.cluster.group_of(id);
        if group.handing_over() {
            // The new leader takes over within moments: the router retries after a pause.
            return Err(NotOwner { leader: None });
        }
        match self.cluster.leadership(group) {
            // The entity's shard is moving (frozen here, or not yet moved in here): the
            // router retries after a pause, by when the routes name the shard's new partition.
            Some(_) if !self.cluster.serves(group, id) => Err(NotOwner { leader: None }),
            Some(leader) => Ok(Some(Lease {
                term: leader.term,
                node: leader.node_id,
            })),
            None => Err(NotOwner {
                leader: self
                    .cluster
                    .leader(group)
                    .filter(|(node, _)| *node != self.cluster.node_id())
                    .map(|(_, addr)| addr),
            }),
        }
    }

    fn ready(&self, id: &EntityId, _lease: Lease) -> AppendFuture {
        let cluster = self.cluster.clone();
        let group = cluster.partition_of(id);
        Box::pin(async move {
            let Some(group) = cluster.group(group) else {
                return Ok(());
            };
            cluster
                .ready(group)
                .await
                .map_err(|e| cella_core::Error::Unconfirmed(Box::new(e)))
        })
    }

    fn append_leased(&self, writes: Vec<Write>, lease: Option<Lease>) -> AppendFuture {
        let Some(first) = writes.first() else {
            return self.cluster.barrier_all();
        };
        let group = self.cluster.group_of(entity_of(first));
        match lease {
            Some(lease) => {
                let id = entity_of(first).clone();
                self.cluster
                    .submit_serving(group, &id, writes, Some(leader_id(lease)))
                    .unwrap_or_else(moving)
            }
            None => self.append(writes),
        }
    }

    fn confirm(&self, id: &EntityId, lease: Lease) -> AppendFuture {
        let cluster = self.cluster.clone();
        let group = cluster.partition_of(id);
        Box::pin(async move {
            let Some(group) = cluster.group(group) else {
                return Ok(());
            };
            cluster
                .confirm(group, leader_id(lease))
                .await
                .map_err(|e| cella_core::Error::Unconfirmed(Box::new(e)))
        })
    }

    fn barrier(&self, id: &EntityId) -> AppendFuture {
        self.cluster.barrier(self.cluster.group_of(id))
    }

    fn keys(
        &self,
        entity_type: &str,
        after: Option<&str>,
        limit: usize,
    ) -> cella_core::Result<Vec<String>> {
        Ok(self.store.entity_keys(entity_type, after, limit)?)
    }

    fn rows(
        &self,
        id: &EntityId,
        table: RowTable,
        prefix: &str,
    ) -> cella_core::Result<Vec<(String, Vec<u8>)>> {
        Ok(self.store.entity_rows(id, table, prefix)?)
    }

    fn row(
        &self,
        id: &EntityId,
        table: RowTable,
        name: &str,
    ) -> cella_core::Result<Option<Vec<u8>>> {
        Ok(self.store.entity_row(id, table, name)?)
    }
}
