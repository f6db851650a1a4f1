//! The replicas of durable crdt entities held by this node: one row per entity with its
//! encoded state (the node's crdt layer owns the encoding). Writes go through the group-commit
//! writer like journal appends (one fsync per batch); they are never deferred, and nothing
//! replicates them by raft: each node stores its own replica.

use std::future::Future;

use redb::ReadableTable;

use crate::{
    Store,
    error::{Error, Result},
    op::Op,
    tables::CRDT_STATES,
};

impl Store {
    /// Stores (`Some`) or removes the replica state of crdt entity (`entity_type`, `key`);
    /// resolves once it is durable. Writes become durable in the order they are called.
    pub fn put_crdt(
        &self,
        entity_type: &str,
        key: &str,
        state: Option<Vec<u8>>,
    ) -> impl Future<Output = Result<()>> + Send + use<> {
        let reply = self.inner.writer.submit(vec![Op::CrdtPut {
            entity_type: entity_type.to_string(),
            key: key.to_string(),
            value: state,
        }]);
        async move {
            match reply.await {
                Ok(outcome) => outcome,
                Err(_) => Err(Error::Closed),
            }
        }
    }

    /// Every stored crdt replica state, as `(entity_type, key, state)` in key order.
    pub fn crdt_states(&self) -> Result<Vec<(String, String, Vec<u8>)>> {
        let txn = self.begin_read()?;
        let table = txn
            .open_table(CRDT_STATES)
            .map_err(Error::storage("open crdt table"))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(Error::storage("read crdt states"))? {
            let (key, value) = row.map_err(Error::storage("read crdt states"))?;
            let (t, k) = key.value();
            out.push((t.to_string(), k.to_string(), value.value().to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Store, StoreOptions};

    #[tokio::test]
    async fn crdt_states_are_stored_replaced_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        store.put_crdt("likes", "a", Some(vec![1])).await.unwrap();
        store.put_crdt("likes", "b", Some(vec![2])).await.unwrap();
        store.put_crdt("likes", "a", Some(vec![3])).await.unwrap();
        store.put_crdt("likes", "b", None).await.unwrap();
        store.close().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(
            store.crdt_states().unwrap(),
            vec![("likes".to_string(), "a".to_string(), vec![3])]
        );
    }
}
