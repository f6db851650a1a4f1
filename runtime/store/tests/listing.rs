//! Listing a type's entities (`Store::list_entities`): key order, `after`, `prefix`, `limit`
//! and `more`, the head of each journal (its newest entry, past trims), a selection by key,
//! other types left out, and deferred writes merged over the disk (new keys, newer heads,
//! cleared entities).

mod common;

use std::time::Duration;

use cella_core::{EntityId, Journal, Write};
use cella_store::{EntityPage, GroupWrite, ListQuery, Store, StoreOptions};
use common::{append, entry, id, open};

fn query<'a>(after: Option<&'a str>, prefix: &'a str, limit: usize) -> ListQuery<'a> {
    ListQuery {
        entity_type: "counter",
        after,
        prefix,
        limit,
    }
}

fn keys(page: &EntityPage) -> Vec<&str> {
    page.entities.iter().map(|e| e.key.as_str()).collect()
}

fn list(store: &Store, after: Option<&str>, prefix: &str, limit: usize) -> EntityPage {
    store
        .list_entities(query(after, prefix, limit), |_| true)
        .unwrap()
}

#[tokio::test]
async fn pages_in_key_order_with_their_heads() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut writes = Vec::new();
    for key in ["b", "a", "ab", "c", "a\u{e9}", "B"] {
        writes.push(append(key, 1));
    }
    // `a` has three entries, the first trimmed away.
    writes.extend([append("a", 2), append("a", 3), Write::Trim(id("a"), 1)]);
    // Another type, with a key between ours.
    writes.push(Write::Append(EntityId::new("counters", "aa"), entry(1)));
    store.append(writes).await.unwrap();

    let all = list(&store, None, "", 100);
    assert_eq!(
        keys(&all),
        ["B", "a", "ab", "a\u{e9}", "b", "c"],
        "bytewise order"
    );
    assert!(!all.more);
    let a = &all.entities[1];
    assert_eq!((a.seq, a.module_version), (3, 1));
    assert_eq!(a.changed_ms, entry(3).timestamp_ms);

    let first = list(&store, None, "", 2);
    assert_eq!(keys(&first), ["B", "a"]);
    assert!(first.more);
    let second = list(&store, Some("a"), "", 3);
    assert_eq!(keys(&second), ["ab", "a\u{e9}", "b"]);
    assert!(second.more);
    let last = list(&store, Some("b"), "", 3);
    assert_eq!(keys(&last), ["c"]);
    assert!(!last.more);

    assert_eq!(keys(&list(&store, None, "a", 10)), ["a", "ab", "a\u{e9}"]);
    assert_eq!(keys(&list(&store, Some("a"), "a", 10)), ["ab", "a\u{e9}"]);
    assert_eq!(keys(&list(&store, Some("0"), "b", 10)), ["b"]);
    assert!(list(&store, Some("zz"), "", 10).entities.is_empty());
    assert!(list(&store, None, "x", 10).entities.is_empty());

    let selected = store
        .list_entities(query(None, "", 2), |k| k.len() == 1)
        .unwrap();
    assert_eq!(keys(&selected), ["B", "a"]);
    assert!(selected.more);
}

#[tokio::test]
async fn deferred_writes_are_merged() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        defer_for: Duration::from_secs(3600),
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), options).unwrap();
    store
        .append(vec![append("a", 1), append("c", 1), append("e", 1)])
        .await
        .unwrap();
    let deferred = |w: Write| GroupWrite::Entity(w);
    store
        .write_group_deferred(vec![
            deferred(append("b", 1)),
            deferred(append("c", 2)),
            GroupWrite::ClearEntity(id("e")),
            deferred(append("f", 1)),
        ])
        .unwrap();

    let all = list(&store, None, "", 10);
    assert_eq!(keys(&all), ["a", "b", "c", "f"]);
    assert_eq!(all.entities[2].seq, 2, "the pending entry is c's head");
    assert!(!all.more);
    // Past the limit, more follow, whether the next key is on disk or only pending.
    let page = list(&store, None, "", 2);
    assert_eq!(keys(&page), ["a", "b"]);
    assert!(page.more);
    let page = list(&store, Some("b"), "", 2);
    assert_eq!(keys(&page), ["c", "f"]);
    assert!(!page.more, "e is cleared");

    // Once written, the same.
    store.flush_deferred().await.unwrap();
    assert_eq!(keys(&list(&store, None, "", 10)), ["a", "b", "c", "f"]);
    assert_eq!(list(&store, None, "c", 10).entities[0].seq, 2);
}
