//! Example event-sourced entity: the canonical shopping cart. `add-item` adds a quantity of a
//! product (to the existing line if the product is already in the cart), `remove-item` removes a
//! product's line, and `get-cart` replies the lines in the order they were first added. Every
//! event is published to the topic `cart-events` (which `examples/cart-stats` follows).

use cella_sdk::{EventContext, EventSourcedEntity, Reply, Result, json, reject};
use serde::{Deserialize, Serialize};

/// One line of the cart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    pub product_id: String,
    pub name: String,
    pub quantity: i64,
}

/// The cart: its lines in insertion order.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ShoppingCart {
    pub items: Vec<LineItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    AddItem(LineItem),
    RemoveItem(RemoveItem),
    GetCart,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveItem {
    pub product_id: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Event {
    ItemAdded {
        item: LineItem,
    },
    #[serde(rename_all = "camelCase")]
    ItemRemoved {
        product_id: String,
    },
}

impl ShoppingCart {
    fn line(&self, product_id: &str) -> Option<&LineItem> {
        self.items.iter().find(|item| item.product_id == product_id)
    }
}

impl EventSourcedEntity for ShoppingCart {
    type Command = Command;
    type Event = Event;
    const EVENTS_TOPIC: Option<&'static str> = Some("cart-events");

    fn handle(&self, cmd: Command, ctx: &mut EventContext<Event>) -> Result<Reply> {
        match cmd {
            Command::AddItem(item) => {
                if item.quantity <= 0 {
                    reject!(
                        "Quantity for item {} must be greater than zero.",
                        item.product_id
                    );
                }
                let in_cart = self.line(&item.product_id).map_or(0, |line| line.quantity);
                if in_cart.checked_add(item.quantity).is_none() {
                    reject!("Quantity for item {} is too large.", item.product_id);
                }
                ctx.emit(Event::ItemAdded { item });
                Ok(json!({}))
            }
            Command::RemoveItem(RemoveItem { product_id }) => {
                if self.line(&product_id).is_none() {
                    reject!("Cannot remove item {product_id} because it is not in the cart.");
                }
                ctx.emit(Event::ItemRemoved { product_id });
                Ok(json!({}))
            }
            Command::GetCart => Ok(json!({ "items": self.items })),
        }
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::ItemAdded { item } => {
                match self
                    .items
                    .iter_mut()
                    .find(|line| line.product_id == item.product_id)
                {
                    Some(line) => line.quantity = line.quantity.saturating_add(item.quantity),
                    None => self.items.push(item),
                }
            }
            Event::ItemRemoved { product_id } => {
                self.items.retain(|line| line.product_id != product_id);
            }
        }
    }
}

cella_sdk::export_entity!(event_sourced ShoppingCart);

#[cfg(test)]
mod tests {
    use cella_sdk::json;
    use cella_sdk::testing::{Failure, TestKit};

    use super::ShoppingCart;

    fn add(kit: &mut TestKit<ShoppingCart>, id: &str, name: &str, quantity: i64) {
        let item = json!({"productId": id, "name": name, "quantity": quantity});
        assert_eq!(kit.handle("add-item", item), Ok(json!({})));
    }

    fn cart(kit: &mut TestKit<ShoppingCart>) -> cella_sdk::Value {
        match kit.handle("get-cart", json!(null)) {
            Ok(cart) => cart,
            Err(failure) => panic!("get-cart failed: {failure:?}"),
        }
    }

    #[test]
    fn declares_its_commands() {
        let kit = TestKit::<ShoppingCart>::new();
        assert_eq!(kit.commands(), ["add-item", "remove-item", "get-cart"]);
        assert!(kit.subscriptions().is_empty());
    }

    #[test]
    fn publishes_its_events_to_cart_events() {
        let mut kit = TestKit::<ShoppingCart>::with_address("cart", "c1");
        assert_eq!(kit.events_topic().as_deref(), Some("cart-events"));
        add(&mut kit, "p1", "Pen", 2);
        let removal = kit.handle("remove-item", json!({"productId": "p1"}));
        assert_eq!(removal, Ok(json!({})));
        assert_eq!(
            kit.events_topic_messages(),
            [
                json!({"type": "cart", "key": "c1", "seq": 1, "index": 0, "event":
                    {"itemAdded": {"item": {"productId": "p1", "name": "Pen", "quantity": 2}}}}),
                json!({"type": "cart", "key": "c1", "seq": 2, "index": 0, "event":
                    {"itemRemoved": {"productId": "p1"}}}),
            ]
        );
    }

    #[test]
    fn a_new_cart_is_empty() {
        let mut kit = TestKit::<ShoppingCart>::new();
        assert_eq!(cart(&mut kit), json!({"items": []}));
        assert_eq!(kit.sequence(), 0);
    }

    #[test]
    fn adding_items_keeps_insertion_order() {
        let mut kit = TestKit::<ShoppingCart>::new();
        add(&mut kit, "socks", "Socks", 2);
        add(&mut kit, "hat", "Hat", 1);
        assert_eq!(
            kit.last().map(|h| h.events.clone()),
            Some(vec![
                json!({"itemAdded": {"item": {"productId": "hat", "name": "Hat", "quantity": 1}}})
            ])
        );
        assert_eq!(
            cart(&mut kit),
            json!({"items": [
                {"productId": "socks", "name": "Socks", "quantity": 2},
                {"productId": "hat", "name": "Hat", "quantity": 1},
            ]})
        );
    }

    #[test]
    fn adding_a_product_again_adds_to_its_quantity() {
        let mut kit = TestKit::<ShoppingCart>::new();
        add(&mut kit, "socks", "Socks", 2);
        add(&mut kit, "hat", "Hat", 1);
        add(&mut kit, "socks", "Socks", 3);
        assert_eq!(
            cart(&mut kit),
            json!({"items": [
                {"productId": "socks", "name": "Socks", "quantity": 5},
                {"productId": "hat", "name": "Hat", "quantity": 1},
            ]})
        );
        assert_eq!(kit.sequence(), 3);
    }

    #[test]
    fn a_quantity_that_is_not_positive_is_rejected() {
        let mut kit = TestKit::<ShoppingCart>::new();
        for quantity in [0, -1] {
            let item = json!({"productId": "socks", "name": "Socks", "quantity": quantity});
            assert_eq!(
                kit.handle("add-item", item),
                Err(Failure::Rejected(
                    "Quantity for item socks must be greater than zero.".into()
                ))
            );
        }
        assert!(kit.events().is_empty());
    }

    #[test]
    fn a_quantity_that_would_overflow_is_rejected() {
        let mut kit = TestKit::<ShoppingCart>::new();
        add(&mut kit, "socks", "Socks", i64::MAX);
        let item = json!({"productId": "socks", "name": "Socks", "quantity": 1});
        assert!(matches!(
            kit.handle("add-item", item),
            Err(Failure::Rejected(_))
        ));
    }

    #[test]
    fn removing_an_item_removes_its_line() {
        let mut kit = TestKit::<ShoppingCart>::new();
        add(&mut kit, "socks", "Socks", 2);
        add(&mut kit, "hat", "Hat", 1);
        assert_eq!(
            kit.handle("remove-item", json!({"productId": "socks"})),
            Ok(json!({}))
        );
        assert_eq!(
            kit.last().map(|h| h.events.clone()),
            Some(vec![json!({"itemRemoved": {"productId": "socks"}})])
        );
        assert_eq!(
            cart(&mut kit),
            json!({"items": [{"productId": "hat", "name": "Hat", "quantity": 1}]})
        );
    }

    #[test]
    fn removing_an_item_not_in_the_cart_is_rejected() {
        let mut kit = TestKit::<ShoppingCart>::new();
        add(&mut kit, "hat", "Hat", 1);
        assert_eq!(
            kit.handle("remove-item", json!({"productId": "socks"})),
            Err(Failure::Rejected(
                "Cannot remove item socks because it is not in the cart.".into()
            ))
        );
        assert_eq!(kit.sequence(), 1);
    }

    #[test]
    fn a_removed_item_added_again_goes_last() {
        let mut kit = TestKit::<ShoppingCart>::new();
        add(&mut kit, "socks", "Socks", 2);
        add(&mut kit, "hat", "Hat", 1);
        kit.handle("remove-item", json!({"productId": "socks"}))
            .ok();
        add(&mut kit, "socks", "Socks", 1);
        assert_eq!(
            cart(&mut kit),
            json!({"items": [
                {"productId": "hat", "name": "Hat", "quantity": 1},
                {"productId": "socks", "name": "Socks", "quantity": 1},
            ]})
        );
    }

    #[test]
    fn malformed_commands_are_bad_requests() {
        let mut kit = TestKit::<ShoppingCart>::new();
        let missing_name = json!({"productId": "socks", "quantity": 1});
        let Err(Failure::BadRequest(msg)) = kit.handle("add-item", missing_name) else {
            panic!("expected a bad request");
        };
        assert!(msg.contains("add-item") && msg.contains("name"), "{msg}");
        assert!(matches!(
            kit.handle("remove-item", json!({})),
            Err(Failure::BadRequest(_))
        ));
        assert!(matches!(
            kit.handle("get-cart", json!({})),
            Err(Failure::BadRequest(_))
        ));
        assert_eq!(
            kit.handle("checkout", json!(null)),
            Err(Failure::UnknownCommand("checkout".into()))
        );
    }
}
