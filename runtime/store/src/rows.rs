//! Reading an entity's rows (its outbox, timers and processed request ids, see
//! [`cella_core::RowTable`]): the database's rows with the deferred writes merged over them.

use std::{collections::BTreeMap, ops::Bound};

use cella_core::{EntityId, RowTable};
use redb::{ReadTransaction, ReadableTable, TableDefinition};

use crate::{
    Store,
    error::{Error, Result},
    op::Op,
    tables::{EFFECTS, PROCESSED},
};

type Rows = TableDefinition<'static, (&'static str, &'static str, &'static str), &'static [u8]>;

fn table_of(table: RowTable) -> Rows {
    match table {
        RowTable::Effects => EFFECTS,
        RowTable::Processed => PROCESSED,
    }
}

/// The first string greater than every string starting with `prefix` (`None`: unbounded).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Applies pending writes of one entity to its rows of `table` starting with `prefix`.
fn merge_rows(rows: &mut BTreeMap<String, Vec<u8>>, ops: &[Op], table: RowTable, prefix: &str) {
    for op in ops {
        match op {
            Op::Row {
                table: t,
                name,
                value,
                ..
            } if *t == table && name.starts_with(prefix) => match value {
                Some(v) => {
                    rows.insert(name.clone(), v.clone());
                }
                None => {
                    rows.remove(name);
                }
            },
            Op::Clear { .. } => rows.clear(),
            _ => {}
        }
    }
}

fn read_prefix(
    txn: &ReadTransaction,
    table: RowTable,
    id: &EntityId,
    prefix: &str,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let rows = txn
        .open_table(table_of(table))
        .map_err(Error::storage("open rows table"))?;
    let (t, k) = (id.entity_type.as_str(), id.key.as_str());
    let end = prefix_end(prefix);
    let upper = match &end {
        Some(end) => Bound::Excluded((t, k, end.as_str())),
        None => Bound::Included((t, k, "\u{10ffff}")),
    };
    let mut out = BTreeMap::new();
    for row in rows
        .range::<(&str, &str, &str)>((Bound::Included((t, k, prefix)), upper))
        .map_err(Error::storage("read rows"))?
    {
        let (key, value) = row.map_err(Error::storage("read rows"))?;
        out.insert(key.value().2.to_string(), value.value().to_vec());
    }
    Ok(out)
}

impl Store {
    /// The rows of `id` in `table` whose names start with `prefix`, in name order.
    pub fn entity_rows(
        &self,
        id: &EntityId,
        table: RowTable,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let (pending, txn) = self.begin_read_with(|p| p.entity_ops(&id.entity_type, &id.key))?;
        let mut rows = read_prefix(&txn, table, id, prefix)?;
        merge_rows(&mut rows, &pending, table, prefix);
        Ok(rows.into_iter().collect())
    }

    /// One row of `id` in `table`.
    pub fn entity_row(
        &self,
        id: &EntityId,
        table: RowTable,
        name: &str,
    ) -> Result<Option<Vec<u8>>> {
        let (pending, txn) = self.begin_read_with(|p| p.entity_ops(&id.entity_type, &id.key))?;
        let rows = txn
            .open_table(table_of(table))
            .map_err(Error::storage("open rows table"))?;
        let mut found: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        if let Some(v) = rows
            .get((id.entity_type.as_str(), id.key.as_str(), name))
            .map_err(Error::storage("read row"))?
        {
            found.insert(name.to_string(), v.value().to_vec());
        }
        merge_rows(&mut found, &pending, table, name);
        Ok(found.remove(name))
    }

    /// Every row of `table` whose entity `select` picks (and whose name starts with
    /// `prefix`), in `(entity, name)` order, read in one consistent view. Scans the table.
    pub fn scan_rows(
        &self,
        table: RowTable,
        prefix: &str,
        mut select: impl FnMut(&EntityId) -> bool,
    ) -> Result<Vec<(EntityId, String, Vec<u8>)>> {
        let (pending, txn) =
            self.begin_read_with(|p| p.entities(|t, k| select(&EntityId::new(t, k))))?;
        let rows = txn
            .open_table(table_of(table))
            .map_err(Error::storage("open rows table"))?;
        let mut out: BTreeMap<EntityId, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
        let mut current: Option<(EntityId, bool)> = None;
        for row in rows.iter().map_err(Error::storage("read rows"))? {
            let (key, value) = row.map_err(Error::storage("read rows"))?;
            let (t, k, name) = key.value();
            let selected = match &current {
                Some((id, selected)) if id.entity_type == t && id.key == k => *selected,
                _ => {
                    let id = EntityId::new(t, k);
                    let selected = select(&id);
                    current = Some((id, selected));
                    selected
                }
            };
            if selected && name.starts_with(prefix) {
                out.entry(EntityId::new(t, k))
                    .or_default()
                    .insert(name.to_string(), value.value().to_vec());
            }
        }
        for ((t, k), ops) in pending {
            merge_rows(
                out.entry(EntityId::new(t, k)).or_default(),
                &ops,
                table,
                prefix,
            );
        }
        Ok(out
            .into_iter()
            .flat_map(|(id, rows)| rows.into_iter().map(move |(n, v)| (id.clone(), n, v)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use cella_core::{Journal, Write};

    use super::*;
    use crate::StoreOptions;

    fn row(id: &EntityId, table: RowTable, name: &str, value: Option<&[u8]>) -> Write {
        Write::Row {
            id: id.clone(),
            table,
            name: name.into(),
            value: value.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("o/").as_deref(), Some("o0"));
        assert_eq!(prefix_end(""), None);
    }

    #[tokio::test]
    async fn rows_are_set_deleted_and_scanned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let (a, b) = (EntityId::new("t", "a"), EntityId::new("t", "b"));
        store
            .append(vec![
                row(&a, RowTable::Effects, "o/1", Some(b"x")),
                row(&a, RowTable::Effects, "t/n", Some(b"y")),
                row(&b, RowTable::Effects, "o/2", Some(b"z")),
                row(&a, RowTable::Processed, "o/1", Some(b"p")),
            ])
            .await
            .unwrap();
        store
            .append(vec![row(&b, RowTable::Effects, "o/2", None)])
            .await
            .unwrap();
        let outbox = store.entity_rows(&a, RowTable::Effects, "o/").unwrap();
        assert_eq!(outbox, vec![("o/1".to_string(), b"x".to_vec())]);
        assert_eq!(
            store.entity_row(&a, RowTable::Processed, "o/1").unwrap(),
            Some(b"p".to_vec())
        );
        assert_eq!(
            store.entity_row(&b, RowTable::Effects, "o/2").unwrap(),
            None
        );
        let all = store.scan_rows(RowTable::Effects, "", |_| true).unwrap();
        assert_eq!(all.len(), 2);
        assert!(
            store
                .scan_rows(RowTable::Effects, "", |id| id == &b)
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn deferred_rows_merge_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let a = EntityId::new("t", "a");
        store
            .append(vec![row(&a, RowTable::Effects, "t/x", Some(b"1"))])
            .await
            .unwrap();
        store
            .write_group_deferred(vec![crate::GroupWrite::Entity(row(
                &a,
                RowTable::Effects,
                "t/y",
                Some(b"2"),
            ))])
            .unwrap();
        let rows = store.entity_rows(&a, RowTable::Effects, "t/").unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        store
            .write_group_deferred(vec![crate::GroupWrite::ClearEntity(a.clone())])
            .unwrap();
        assert!(
            store
                .entity_rows(&a, RowTable::Effects, "")
                .unwrap()
                .is_empty()
        );
        store.flush_deferred().await.unwrap();
        assert!(
            store
                .scan_rows(RowTable::Effects, "", |_| true)
                .unwrap()
                .is_empty()
        );
    }
}
