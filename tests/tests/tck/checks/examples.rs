//! The two examples (SPEC: the counter, the shopping cart): their scripts, rejections, bad
//! requests and 64-bit limits.

use serde_json::{Value, json};

use super::{CART, COUNTER, line};
use crate::api::Api;

/// The counter's script.
pub(super) async fn counter(api: &Api<'_>) {
    let k = "cnt-1";
    api.expect(COUNTER, k, "get", json!(null), json!(0)).await;
    api.assert_state(COUNTER, k, Value::Null, 0).await;
    api.expect(COUNTER, k, "add", json!(5), json!(5)).await;
    api.expect(COUNTER, k, "add", json!(-7), json!(-2)).await;
    api.expect(COUNTER, k, "get", json!(null), json!(-2)).await;
    for payload in [
        json!("five"),
        json!(1.5),
        json!(null),
        json!({"n": 1}),
        json!([1]),
    ] {
        api.bad_request(COUNTER, k, "add", payload).await;
    }
    api.bad_request(COUNTER, k, "get", json!(1)).await;
    api.unknown_command(COUNTER, k, "reset").await;
    api.assert_state(COUNTER, k, json!({"total": -2}), 2).await;
    assert_eq!(
        api.journal_payloads(COUNTER, k, "state").await,
        [(1, json!({"total": 5})), (2, json!({"total": -2}))],
        "[{}] {COUNTER}/{k}: the journal's states",
        api.lang
    );

    // The 64-bit limits, exactly.
    let k = "cnt-max";
    api.expect(COUNTER, k, "add", json!(i64::MAX), json!(i64::MAX))
        .await;
    api.rejected(COUNTER, k, "add", json!(1), "adding 1 overflows")
        .await;
    api.expect(COUNTER, k, "add", json!(i64::MIN), json!(-1))
        .await;
    api.rejected(
        COUNTER,
        k,
        "add",
        json!(i64::MIN),
        "adding -9223372036854775808 overflows",
    )
    .await;
    api.expect(COUNTER, k, "add", json!(i64::MIN + 1), json!(i64::MIN))
        .await;
    api.expect(COUNTER, k, "get", json!(null), json!(i64::MIN))
        .await;
    api.assert_state(COUNTER, k, json!({"total": i64::MIN}), 3)
        .await;
}

/// The shopping cart's script.
pub(super) async fn cart(api: &Api<'_>) {
    let add = |id: &str, name: &str, q: i64| line(id, name, json!(q));
    let k = "cart-1";
    api.expect(CART, k, "get-cart", json!(null), json!({"items": []}))
        .await;
    api.assert_state(CART, k, Value::Null, 0).await;
    for item in [
        add("p1", "Apple", 2),
        add("p2", "Bread", 1),
        add("p1", "Apple", 3),
    ] {
        api.expect(CART, k, "add-item", item, json!({})).await;
    }
    api.expect(
        CART,
        k,
        "get-cart",
        json!(null),
        json!({"items": [add("p1", "Apple", 5), add("p2", "Bread", 1)]}),
    )
    .await;

    for (id, q) in [("p9", 0), ("p8", -1)] {
        let message = format!("Quantity for item {id} must be greater than zero.");
        api.rejected(CART, k, "add-item", add(id, "None", q), &message)
            .await;
    }
    api.rejected(
        CART,
        k,
        "remove-item",
        json!({"productId": "p7"}),
        "Cannot remove item p7 because it is not in the cart.",
    )
    .await;
    for payload in [
        json!(null),
        json!({"productId": "p1", "quantity": 1}),
        json!({"productId": "p1", "name": "Apple"}),
        line("p1", "Apple", json!("2")),
        line("p1", "Apple", json!(1.5)),
        json!({"productId": 5, "name": "Apple", "quantity": 1}),
    ] {
        api.bad_request(CART, k, "add-item", payload).await;
    }
    api.bad_request(CART, k, "remove-item", json!({})).await;
    api.bad_request(CART, k, "remove-item", json!({"productId": 5}))
        .await;
    api.bad_request(CART, k, "get-cart", json!({})).await;
    api.unknown_command(CART, k, "checkout").await;
    api.assert_state(
        CART,
        k,
        json!({"items": [add("p1", "Apple", 5), add("p2", "Bread", 1)]}),
        3,
    )
    .await;

    // A removed product added again goes last.
    api.expect(
        CART,
        k,
        "remove-item",
        json!({"productId": "p1"}),
        json!({}),
    )
    .await;
    api.expect(CART, k, "add-item", add("p1", "Apple", 1), json!({}))
        .await;
    let items = json!({"items": [add("p2", "Bread", 1), add("p1", "Apple", 1)]});
    api.expect(CART, k, "get-cart", json!(null), items.clone())
        .await;
    api.assert_state(CART, k, items, 5).await;
    let added = |item: Value| json!([{"itemAdded": {"item": item}}]);
    assert_eq!(
        api.journal_payloads(CART, k, "events").await,
        [
            (1, added(add("p1", "Apple", 2))),
            (2, added(add("p2", "Bread", 1))),
            (3, added(add("p1", "Apple", 3))),
            (4, json!([{"itemRemoved": {"productId": "p1"}}])),
            (5, added(add("p1", "Apple", 1))),
        ],
        "[{}] {CART}/{k}: the journal's events",
        api.lang
    );

    // A line's quantity is a 64-bit integer.
    let k = "cart-2";
    api.expect(CART, k, "add-item", add("big", "Big", i64::MAX), json!({}))
        .await;
    api.rejected(
        CART,
        k,
        "add-item",
        add("big", "Big", 1),
        "Quantity for item big is too large.",
    )
    .await;
    api.expect(
        CART,
        k,
        "get-cart",
        json!(null),
        json!({"items": [add("big", "Big", i64::MAX)]}),
    )
    .await;
}
