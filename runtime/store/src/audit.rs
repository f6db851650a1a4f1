//! The audit trail: one row per recorded admin action, keyed by the metadata group's log index
//! that carried it (so re-applying an entry writes the same row again). The record itself is
//! the caller's bytes (`cella-cluster` encodes it). Each append is its own durable transaction:
//! admin actions are rare, and the trail is never written deferred.

use redb::ReadableTable;

use crate::{
    Store,
    error::{Error, Result},
    tables::AUDIT,
};

impl Store {
    /// Records the audit entry `index` (idempotent: the same index is the same record).
    pub fn append_audit(&self, index: u64, record: &[u8]) -> Result<()> {
        self.write(|txn| {
            let mut audit = txn
                .open_table(AUDIT)
                .map_err(Error::storage("open audit"))?;
            audit
                .insert(index, record)
                .map_err(Error::storage("write audit"))?;
            Ok(())
        })
    }

    /// Up to `limit` audit entries with an index above `after`, oldest first.
    pub fn audit(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let txn = self.begin_read()?;
        let audit = txn
            .open_table(AUDIT)
            .map_err(Error::storage("open audit"))?;
        let mut out = Vec::new();
        let Some(start) = after.checked_add(1) else {
            return Ok(out);
        };
        for row in audit.range(start..).map_err(Error::storage("read audit"))? {
            if out.len() >= limit {
                break;
            }
            let (key, value) = row.map_err(Error::storage("read audit"))?;
            out.push((key.value(), value.value().to_vec()));
        }
        Ok(out)
    }

    /// The highest audit index recorded (0 when the trail is empty).
    pub fn last_audit_index(&self) -> Result<u64> {
        let txn = self.begin_read()?;
        let audit = txn
            .open_table(AUDIT)
            .map_err(Error::storage("open audit"))?;
        let last = audit.last().map_err(Error::storage("read audit"))?;
        Ok(last.map_or(0, |(k, _)| k.value()))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Store, StoreOptions};

    #[test]
    fn appends_are_idempotent_and_read_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(store.last_audit_index().unwrap(), 0);
        store.append_audit(7, b"b").unwrap();
        store.append_audit(3, b"a").unwrap();
        store.append_audit(7, b"b").unwrap();
        store.append_audit(12, b"c").unwrap();
        assert_eq!(store.last_audit_index().unwrap(), 12);
        let all = store.audit(0, 10).unwrap();
        assert_eq!(
            all,
            vec![(3, b"a".to_vec()), (7, b"b".to_vec()), (12, b"c".to_vec())]
        );
        assert_eq!(store.audit(3, 1).unwrap(), vec![(7, b"b".to_vec())]);
        assert!(store.audit(u64::MAX, 10).unwrap().is_empty());
    }
}
