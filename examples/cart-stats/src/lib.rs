//! Example value entity following a topic: statistics over every shopping cart. The cart
//! (`examples/shopping-cart`) publishes each of its events to the topic `cart-events`; this type
//! subscribes to it with the fixed key `all`, so the one entity `cart-stats/all` receives every
//! cart's events, each exactly once and in topic order, as the command `on-cart-event`. It adds
//! up the quantities of `itemAdded` events (in total and per product) and counts `itemRemoved`
//! events; `get` replies `{"itemsAdded": N, "itemsRemoved": M, "byProduct": {ID: N, ...}}`.
//!
//! A message is the events topic's envelope `{"type", "key", "seq", "index", "event"}` with the
//! cart's event in `event`. A message that is not one (or an `on-cart-event` sent by a client
//! rather than delivered from the topic) is a bad request: the host counts the delivery as
//! failed and the topic moves on.

use std::collections::BTreeMap;

use cella_sdk::{Context, Rejection, Reply, Result, Subscription, ValueEntity, json};
use serde::{Deserialize, Serialize};

/// The topic the carts publish their events to.
pub const TOPIC: &str = "cart-events";
/// The one entity that receives every message.
pub const KEY: &str = "all";

/// The statistics.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CartStats {
    /// The sum of the quantities of every `itemAdded` event.
    pub items_added: i64,
    /// How many `itemRemoved` events there were.
    pub items_removed: u64,
    /// The sum of the quantities added, per product id (in id order).
    pub by_product: BTreeMap<String, i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    /// A message of `cart-events`.
    OnCartEvent(CartEventMessage),
    Get,
}

/// A message of an events topic: an event of the entity `key` of type `type`.
#[derive(Deserialize)]
pub struct CartEventMessage {
    #[serde(rename = "type")]
    pub entity_type: String,
    pub key: String,
    /// The journal entry of the cart that holds the event.
    pub seq: u64,
    /// The event's index in that entry.
    pub index: u32,
    pub event: CartEvent,
}

/// The shopping cart's events, as it publishes them.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CartEvent {
    ItemAdded {
        item: LineItem,
    },
    #[serde(rename_all = "camelCase")]
    ItemRemoved {
        product_id: String,
    },
}

/// A line of a cart (its `name` is not needed here).
#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    pub product_id: String,
    pub quantity: i64,
}

impl CartStats {
    fn reply(&self) -> Reply {
        json!({
            "itemsAdded": self.items_added,
            "itemsRemoved": self.items_removed,
            "byProduct": self.by_product,
        })
    }

    fn count(&mut self, event: CartEvent) {
        match event {
            CartEvent::ItemAdded { item } => {
                self.items_added = self.items_added.saturating_add(item.quantity);
                let product = self.by_product.entry(item.product_id).or_default();
                *product = product.saturating_add(item.quantity);
            }
            CartEvent::ItemRemoved { .. } => self.items_removed += 1,
        }
    }
}

impl ValueEntity for CartStats {
    type Command = Command;

    fn subscriptions() -> Vec<Subscription> {
        vec![Subscription::to(TOPIC, "on-cart-event").fixed_key(KEY)]
    }

    fn handle(&mut self, cmd: Command, ctx: &mut Context) -> Result<Reply> {
        match cmd {
            Command::OnCartEvent(message) => {
                if ctx.message().is_none() {
                    return Err(Rejection::bad_request(format!(
                        "command `on-cart-event`: only messages of topic `{TOPIC}` are counted"
                    )));
                }
                self.count(message.event);
            }
            Command::Get => {}
        }
        Ok(self.reply())
    }
}

cella_sdk::export_entity!(value CartStats);

#[cfg(test)]
mod tests {
    use cella_sdk::testing::{Failure, TestKit};
    use cella_sdk::{Subscription, TopicMessage, Value, json};

    use super::{CartStats, KEY, TOPIC};

    fn kit() -> TestKit<CartStats> {
        TestKit::with_address("cart-stats", KEY)
    }

    /// The message the host publishes for event `index` of entry `seq` of cart `key`.
    fn message(key: &str, seq: u64, index: u32, event: Value) -> Value {
        json!({"type": "cart", "key": key, "seq": seq, "index": index, "event": event})
    }

    fn added(key: &str, seq: u64, product: &str, quantity: i64) -> Value {
        let item = json!({"productId": product, "name": product, "quantity": quantity});
        message(key, seq, 0, json!({"itemAdded": {"item": item}}))
    }

    fn removed(key: &str, seq: u64, product: &str) -> Value {
        message(key, seq, 0, json!({"itemRemoved": {"productId": product}}))
    }

    fn deliver(kit: &mut TestKit<CartStats>, message: Value) -> Value {
        match kit.deliver(TOPIC, message) {
            Ok(reply) => reply,
            Err(failure) => panic!("the delivery failed: {failure:?}"),
        }
    }

    #[test]
    fn follows_cart_events_as_the_entity_all() {
        let kit = kit();
        assert_eq!(kit.commands(), ["on-cart-event", "get"]);
        assert_eq!(
            kit.subscriptions(),
            [Subscription::to("cart-events", "on-cart-event").fixed_key("all")]
        );
        assert_eq!(kit.events_topic(), None);
    }

    #[test]
    fn starts_at_zero() {
        let mut kit = kit();
        assert_eq!(
            kit.handle("get", json!(null)),
            Ok(json!({"itemsAdded": 0, "itemsRemoved": 0, "byProduct": {}}))
        );
        assert_eq!(kit.sequence(), 0);
    }

    #[test]
    fn counts_the_events_of_every_cart() {
        let mut kit = kit();
        deliver(&mut kit, added("c1", 1, "pen", 2));
        deliver(&mut kit, added("c2", 1, "ink", 5));
        deliver(&mut kit, added("c1", 2, "pen", 3));
        deliver(&mut kit, removed("c2", 2, "ink"));
        let reply = deliver(&mut kit, removed("c1", 3, "pen"));
        let expected = json!({"itemsAdded": 10, "itemsRemoved": 2,
            "byProduct": {"ink": 5, "pen": 5}});
        assert_eq!(reply, expected);
        assert_eq!(kit.handle("get", json!(null)), Ok(expected));
        assert_eq!(kit.sequence(), 5);
    }

    #[test]
    fn follows_the_cart_itself() {
        // The events a real cart publishes, through the cart's own test kit.
        use shopping_cart::ShoppingCart;
        let mut cart = TestKit::<ShoppingCart>::with_address("cart", "c9");
        let line =
            |id: &str, quantity: i64| json!({"productId": id, "name": id, "quantity": quantity});
        for payload in [line("a", 1), line("b", 4), line("a", 2)] {
            assert_eq!(cart.handle("add-item", payload), Ok(json!({})));
        }
        let removal = cart.handle("remove-item", json!({"productId": "b"}));
        assert_eq!(removal, Ok(json!({})));
        let mut stats = kit();
        for message in cart.events_topic_messages() {
            deliver(&mut stats, message);
        }
        assert_eq!(
            stats.handle("get", json!(null)),
            Ok(json!({"itemsAdded": 7, "itemsRemoved": 1, "byProduct": {"a": 3, "b": 4}}))
        );
    }

    #[test]
    fn only_topic_messages_count() {
        let mut kit = kit();
        // Sent by a client rather than delivered.
        assert!(matches!(
            kit.handle("on-cart-event", added("c1", 1, "pen", 2)),
            Err(Failure::BadRequest(m)) if m.contains("cart-events")
        ));
        // Not an events-topic message, or not a cart event.
        let at = || TopicMessage::new(TOPIC, 1);
        for payload in [
            json!(null),
            json!({"productId": "pen"}),
            message("c1", 1, 0, json!({"itemRenamed": {"productId": "pen"}})),
            message(
                "c1",
                1,
                0,
                json!({"itemAdded": {"item": {"productId": "pen"}}}),
            ),
            json!({"type": "cart", "key": "c1", "event": {"itemRemoved": {"productId": "p"}}}),
        ] {
            assert!(
                matches!(
                    kit.deliver_as("on-cart-event", at(), payload.clone()),
                    Err(Failure::BadRequest(_))
                ),
                "{payload}"
            );
        }
        assert_eq!(kit.sequence(), 0);
    }

    #[test]
    fn sums_saturate() {
        let mut kit = kit();
        deliver(&mut kit, added("c1", 1, "pen", i64::MAX));
        let reply = deliver(&mut kit, added("c2", 1, "pen", 1));
        assert_eq!(reply["itemsAdded"], json!(i64::MAX));
        assert_eq!(reply["byProduct"]["pen"], json!(i64::MAX));
    }
}
