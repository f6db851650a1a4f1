//! The TCK's checks, one async function per area of tests/tck/SPEC.md, each against a node that
//! has one language's components deployed. Areas use keys of their own, so they run one after
//! the other on the same node; `topics` broadcasts to every `tck-value` entity, so it runs after
//! the areas that inspect them; `recovery` restarts the node and runs last. This module owns the areas,
//! the deployed entity types, the `deploy` area (the descriptors) and the helpers the areas
//! share; the areas' checks are in `checks/`, one module per part of the spec.

#[path = "checks/context.rs"]
mod context;
#[path = "checks/crdt.rs"]
mod crdt;
#[path = "checks/effects.rs"]
mod effects;
#[path = "checks/examples.rs"]
mod examples;
#[path = "checks/failures.rs"]
mod failures;
#[path = "checks/forward.rs"]
mod forward;
#[path = "checks/isolation.rs"]
mod isolation;
#[path = "checks/models.rs"]
mod models;
#[path = "checks/node.rs"]
mod node;
#[path = "checks/sse.rs"]
mod sse;
#[path = "checks/topics.rs"]
mod topics;

use serde_json::{Value, json};

use super::Suite;
use super::api::Api;

/// The entity types the components are deployed as.
pub const VALUE: &str = "tck-value";
pub const EVENTS: &str = "tck-events";
pub const COUNTER: &str = "counter";
pub const CART: &str = "cart";
pub const CRDT: &str = "tck-crdt";

/// How far the context's `timestampMs` may be from the test's own clock.
const CLOCK_SLACK_MS: u64 = 5_000;

/// An area of the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    Deploy,
    ValueModel,
    EventsModel,
    Forward,
    Effects,
    Context,
    Failures,
    Counter,
    Cart,
    Inspection,
    Isolation,
    Crdt,
    Topics,
    Recovery,
}

impl Area {
    /// Every area, in the order they run (`Deploy` is the setup, `Topics` comes after every
    /// area that inspects `tck-value` entities, `Recovery` must be last).
    pub const ALL: &[Area] = &[
        Area::Deploy,
        Area::ValueModel,
        Area::EventsModel,
        Area::Forward,
        Area::Effects,
        Area::Context,
        Area::Failures,
        Area::Counter,
        Area::Cart,
        Area::Inspection,
        Area::Isolation,
        Area::Crdt,
        Area::Topics,
        Area::Recovery,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Area::Deploy => "deploy",
            Area::ValueModel => "value_model",
            Area::EventsModel => "events_model",
            Area::Forward => "forward",
            Area::Effects => "effects",
            Area::Context => "context",
            Area::Failures => "failures",
            Area::Counter => "counter",
            Area::Cart => "cart",
            Area::Inspection => "inspection",
            Area::Isolation => "isolation",
            Area::Crdt => "crdt",
            Area::Topics => "topics",
            Area::Recovery => "recovery",
        }
    }

    /// Runs the area's checks; they panic on the first difference.
    pub async fn run(self, suite: &mut Suite) {
        if self == Area::Recovery {
            return node::recovery(suite).await;
        }
        let api = Api::new(suite);
        match self {
            Area::Deploy => descriptors(suite).await,
            Area::ValueModel => models::value_model(&api).await,
            Area::EventsModel => models::events_model(&api).await,
            Area::Forward => forward::forward(&api).await,
            Area::Effects => effects::effects(&api).await,
            Area::Context => context::context(&api).await,
            Area::Failures => failures::failures(&api).await,
            Area::Counter => examples::counter(&api).await,
            Area::Cart => examples::cart(&api).await,
            Area::Inspection => node::inspection(&api).await,
            Area::Isolation => isolation::isolation(&api).await,
            Area::Crdt => crdt::crdt(&api).await,
            Area::Topics => topics::topics(&api).await,
            Area::Recovery => {}
        }
    }
}

/// Kinds, command lists, subscriptions and events topics of the deployed modules.
pub async fn descriptors(suite: &Suite) {
    let api = Api::new(suite);
    let expected = [
        (
            VALUE,
            "value",
            vec!["process", "get", "context", "on-reply", "on-message"],
            true,
        ),
        (
            EVENTS,
            "event-sourced",
            vec!["process", "get", "context", "on-message"],
            true,
        ),
        (COUNTER, "value", vec!["add", "get"], false),
        (
            CART,
            "event-sourced",
            vec!["add-item", "remove-item", "get-cart"],
            false,
        ),
    ];
    for (ty, kind, commands, ordered) in expected {
        let module = api.get(&format!("/v1/modules/{ty}")).await;
        assert_eq!(module["kind"], kind, "[{}] {ty}: kind", api.lang);
        let mut got: Vec<&str> = module["commands"]
            .as_array()
            .map(|c| c.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut commands = commands;
        if !ordered {
            got.sort_unstable();
            commands.sort_unstable();
        }
        assert_eq!(got, commands, "[{}] {ty}: commands", api.lang);
    }
    let news = |key: Value| json!([{"topic": "tck-news", "command": "on-message", "key": key}]);
    let topics = [
        (VALUE, news(json!({"pointer": "/to"})), Value::Null),
        (
            EVENTS,
            news(json!({"fixed": "all"})),
            json!("tck-events-log"),
        ),
        (COUNTER, json!([]), Value::Null),
        (CART, json!([]), json!("cart-events")),
    ];
    for (ty, subscriptions, events_topic) in topics {
        let module = api.get(&format!("/v1/modules/{ty}")).await;
        assert_eq!(
            (&module["subscriptions"], &module["eventsTopic"]),
            (&subscriptions, &events_topic),
            "[{}] {ty}: subscriptions and events topic",
            api.lang
        );
    }
}

/// A line of the cart.
fn line(id: &str, name: &str, quantity: Value) -> Value {
    json!({"productId": id, "name": name, "quantity": quantity})
}
