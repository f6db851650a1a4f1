//! The Cella guest SDK: write an entity as a plain Rust type and export it as a
//! `cella:entity@0.2.0` component. This file owns the public API surface: the entity traits,
//! [`Rejection`], the [`reject!`] and [`export_entity!`] macros, and the generated WIT bindings.
//!
//! # Entities
//!
//! An entity is business logic only. The host owns the state, the journal and replication: for
//! every command it hands the guest the current state and the command, and the guest answers with
//! data. There are three kinds:
//!
//! - a [`ValueEntity`] mutates its state in place; the SDK persists the whole new state when (and
//!   only when) the command changed it;
//! - an [`EventSourcedEntity`] validates a command against its state and emits events; the host
//!   persists the events and the state is the fold of [`EventSourcedEntity::apply`] over them;
//! - a [`CrdtEntity`] reads and changes a replicated data type (a counter, a set, a map, ...)
//!   that every node serves without consensus, through typed handles (see [CRDT
//!   entities](#crdt-entities)).
//!
//! State and events are serialized as JSON by the SDK. Command payloads and replies are JSON at
//! the edge.
//!
//! # Commands
//!
//! Commands are an ordinary serde enum, externally tagged (serde's default), usually with
//! `#[serde(rename_all = "kebab-case")]`: the variant name is the command name (as in the URL)
//! and the variant content is the payload. A unit variant takes the payload `null` (an empty
//! request body). The list of command names reported to the host comes from serde itself, so no
//! extra annotations are needed; serde aliases are accepted command names too.
//!
//! ```
//! use cella_sdk::{Context, Deserialize, Reply, Result, Serialize, ValueEntity, json, reject};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! pub struct Counter {
//!     total: i64,
//! }
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "kebab-case")]
//! pub enum Command {
//!     Add(i64),
//!     Get,
//! }
//!
//! impl ValueEntity for Counter {
//!     type Command = Command;
//!
//!     fn handle(&mut self, cmd: Command, _ctx: &mut Context) -> Result<Reply> {
//!         match cmd {
//!             Command::Add(n) => match self.total.checked_add(n) {
//!                 Some(total) => self.total = total,
//!                 None => reject!("adding {n} would overflow the counter"),
//!             },
//!             Command::Get => {}
//!         }
//!         Ok(json!(self.total))
//!     }
//! }
//!
//! cella_sdk::export_entity!(value Counter);
//! ```
//!
//! # Calls, replies and timers
//!
//! A handler asks for *effects* on its [`Context`]; the host carries them out after the
//! command's change is durable, each exactly once, and only if the command succeeded (a durable
//! outbox):
//!
//! - [`Context::call`] sends a command to another entity, fire-and-forget;
//! - [`Context::call_with_reply`] does too, and routes the call's outcome back to this entity as
//!   a command of its own (the *reply route*) with a correlation of your choice in
//!   [`Context::correlation`]. That command's payload is a [`CallReply`]: the target's reply, or
//!   a [`CallError`] when it was rejected, unknown or failed, so failures come back as data;
//! - [`Context::schedule`] and [`Context::schedule_every`] set a durable, named timer that sends
//!   a command to this entity later (once, or repeatedly); a timer of the same name replaces it,
//!   [`Context::cancel`] cancels it, and the fired command sees its name in [`Context::timer`];
//! - [`Context::publish`] publishes a message to a topic, and [`Context::broadcast`] sends a
//!   command to every existing entity of a type (see [Topics and broadcasts](#topics-and-broadcasts)).
//!
//! Several entities working together with calls, replies and timers form a saga: for example a
//! transfer that debits one account, credits another and refunds the first when the credit is
//! rejected or does not answer in time (`examples/transfer`).
//!
//! ```
//! use cella_sdk::{CallReply, Context, Deserialize, Reply, Result, Serialize, Value, ValueEntity, json};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! pub struct Order {
//!     status: String,
//! }
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "kebab-case")]
//! pub enum Command {
//!     Pay { amount: u64 },
//!     /// The reply route of the `charge` call.
//!     Charged(CallReply<Value>),
//!     /// Fired by the `give-up` timer.
//!     GiveUp,
//! }
//!
//! impl ValueEntity for Order {
//!     type Command = Command;
//!
//!     fn handle(&mut self, cmd: Command, ctx: &mut Context) -> Result<Reply> {
//!         match cmd {
//!             Command::Pay { amount } => {
//!                 let order = ctx.key().to_owned();
//!                 ctx.call_with_reply("wallet", "w1", "charge", &amount, "charged", order);
//!                 ctx.schedule("give-up", 30_000, "give-up", &());
//!                 self.status = "paying".into();
//!             }
//!             Command::Charged(reply) if self.status == "paying" => {
//!                 ctx.cancel("give-up");
//!                 self.status = match reply {
//!                     CallReply::Ok(_) => "paid".into(),
//!                     CallReply::Error(e) => format!("refused: {}", e.message),
//!                 };
//!             }
//!             Command::GiveUp if self.status == "paying" => self.status = "timed out".into(),
//!             // A late reply or timer: the order has moved on.
//!             Command::Charged(_) | Command::GiveUp => {}
//!         }
//!         Ok(json!({ "status": self.status }))
//!     }
//! }
//!
//! cella_sdk::export_entity!(value Order);
//! ```
//!
//! # Topics and broadcasts
//!
//! A topic is a durable, ordered log of JSON messages, published to by entities
//! ([`Context::publish`]) and from outside the node. An entity type *subscribes* to topics by
//! declaring [`Subscription`]s ([`ValueEntity::subscriptions`],
//! [`EventSourcedEntity::subscriptions`]): each message of the topic runs one of its commands,
//! with the message as the payload, on the entity the subscription's [`SubscriberKey`] picks (a
//! JSON pointer into the message, or a fixed key), exactly once per entity and in topic order.
//! The command sees where the message comes from in [`Context::message`]. An event-sourced type
//! can also publish every event it persists to a topic of its own
//! ([`EventSourcedEntity::EVENTS_TOPIC`]), as `{"type", "key", "seq", "index", "event"}`, so
//! that other types can follow its changes.
//!
//! [`Context::broadcast`] sends a command to every entity of a type that exists when the host
//! carries it out, each exactly once.
//!
//! ```
//! use cella_sdk::{Context, Deserialize, Reply, Result, Serialize, Subscription, Value};
//! use cella_sdk::{ValueEntity, json};
//!
//! /// Counts the messages of the topic `news` addressed to each reader (`{"to": [...]}`).
//! #[derive(Default, Serialize, Deserialize)]
//! pub struct Reader {
//!     read: u64,
//!     last_offset: u64,
//! }
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "kebab-case")]
//! pub enum Command {
//!     OnNews(Value),
//!     /// Sets every reader back to zero.
//!     ResetAll,
//!     Reset,
//! }
//!
//! impl ValueEntity for Reader {
//!     type Command = Command;
//!
//!     fn subscriptions() -> Vec<Subscription> {
//!         vec![Subscription::to("news", "on-news").key_pointer("/to")]
//!     }
//!
//!     fn handle(&mut self, cmd: Command, ctx: &mut Context) -> Result<Reply> {
//!         match cmd {
//!             Command::OnNews(_) => {
//!                 self.read += 1;
//!                 self.last_offset = ctx.message().map_or(0, |m| m.offset);
//!             }
//!             Command::ResetAll => ctx.broadcast("reader", "reset", &()),
//!             Command::Reset => self.read = 0,
//!         }
//!         Ok(json!({ "read": self.read }))
//!     }
//! }
//!
//! cella_sdk::export_entity!(value Reader);
//! ```
//!
//! # CRDT entities
//!
//! A [`CrdtEntity`]'s data is a CRDT owned by the host: [`GCounter`], [`PNCounter`], [`GSet`],
//! [`ORSet`], [`LWWRegister`], [`Flag`], [`ORMap`] (string keys to any of these, nested) or
//! [`Vote`]. The handler gets the typed handle of its type, reads the value as this node sees it
//! and records operations, which the host applies as this node's replica and gossips to the
//! others. Reads see the command's own operations (a counter's increments, a set's adds and
//! removes, ...; see [`crdt`]). [`CrdtContext::set_consistency`] asks for the change to reach a
//! majority of the nodes, or all of them, before the reply. A crdt entity asks for no effects.
//!
//! ```
//! use cella_sdk::{Consistency, CrdtContext, CrdtEntity, Deserialize, PNCounter, Reply, Result};
//! use cella_sdk::json;
//!
//! pub struct Likes;
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "kebab-case")]
//! pub enum Command {
//!     Like,
//!     LikeEverywhere,
//!     Count,
//! }
//!
//! impl CrdtEntity for Likes {
//!     type Data = PNCounter;
//!     type Command = Command;
//!
//!     fn handle(likes: &mut PNCounter, cmd: Command, ctx: &mut CrdtContext) -> Result<Reply> {
//!         match cmd {
//!             Command::Like => likes.increment(1),
//!             Command::LikeEverywhere => {
//!                 ctx.set_consistency(Consistency::All);
//!                 likes.increment(1);
//!             }
//!             Command::Count => {}
//!         }
//!         Ok(json!(likes.value()))
//!     }
//! }
//!
//! cella_sdk::export_entity!(crdt Likes);
//! ```
//!
//! # Ephemeral entities
//!
//! `export_entity!(ephemeral value T)` and `export_entity!(ephemeral crdt T)` export a value or
//! crdt entity whose state the host keeps in memory only, never on disk: a value entity lives on
//! its partition's leader and is gone after a restart or a leadership change, a crdt entity is
//! rebuilt from the other nodes' replicas. The handler is the same as a durable one's, but asks
//! for no effects and forwards nothing (the SDK fails such a command).
//!
//! # Failures
//!
//! - a command name the enum does not know is reported as `unknown-command`;
//! - a payload that does not deserialize into the variant is reported as `bad-request`, with
//!   serde's message prefixed by the command name;
//! - a handler returning `Err(`[`Rejection`]`)` is reported as `rejected` with its message
//!   (`bad-request` for [`Rejection::bad_request`]);
//! - state or events that cannot be (de)serialized, and misuse of the [`Context`] (a payload that
//!   does not serialize, two forwards), are reported as `rejected` with a message starting with
//!   `entity error:`.
//!
//! Whatever the failure, nothing is persisted and no effect runs.
//!
//! # Determinism
//!
//! Handlers must be deterministic: the host replays and retries commands, and event-sourced
//! `apply` is re-run whenever state is rebuilt. A guest component gets no clock, no randomness,
//! no files and no sockets. Everything non-deterministic comes through the [`Context`], which the
//! host journals: use [`Context::timestamp_ms`] instead of a clock and [`Context::random_u64`]
//! instead of a random number generator. Do not iterate a `HashMap` to produce replies, events or
//! effects (its order is randomized per process); prefer `BTreeMap` or a `Vec`.
//!
//! # Testing
//!
//! [`export_entity!`] only emits the component exports when compiling for `wasm32`, so entity
//! crates build and run their unit tests natively. [`testing::TestKit`] runs commands through the
//! same code path as the component exports, records the effects each command asks for
//! ([`testing::Effect`]), and can run a command as a call's reply route or a timer's firing
//! ([`testing::TestKit::reply`], [`testing::TestKit::fire`]), or deliver a topic message to it
//! ([`testing::TestKit::deliver`]). [`testing::CrdtTestKit`] runs a crdt entity against a
//! value you give it, records the operations and consistency of each command, and applies them
//! to a single-replica model of the value so that commands chain.

#[cfg(feature = "bundle")]
pub mod bundle;
mod command;
mod context;
pub mod crdt;
mod glue;
mod reply;
pub mod testing;
mod topic;

pub use context::{Context, EventContext};
pub use crdt::{Consistency, CrdtContext, CrdtEntity, CrdtType, Durability};
pub use crdt::{Flag, GCounter, GSet, LWWRegister, ORMap, ORSet, PNCounter, Vote};
pub use reply::{CallError, CallReply};
pub use serde::de::DeserializeOwned;
pub use serde::{Deserialize, Serialize};
pub use serde_json::{Value, json};
pub use topic::{SubscriberKey, Subscription, SubscriptionBuilder, TopicMessage};

/// The generated `cella:entity@0.2.0` bindings. Used by [`export_entity!`]; not a stable API.
#[doc(hidden)]
#[allow(missing_docs, unsafe_op_in_unsafe_fn)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "folding-entity-world",
        pub_export_macro: true,
        default_bindings_module: "cella_sdk::bindings",
    });
}

/// What a handler replies: any JSON value (`json!(...)` builds one).
pub type Reply = serde_json::Value;

/// A business rejection: the command is refused, nothing is persisted, and the message is shown
/// to the caller. Return it with [`reject!`] or `Err(Rejection::new(..))`.
///
/// [`Rejection::bad_request`] refuses the command as a `bad-request` instead: the payload (or
/// the way the command was sent) is not what the command expects, beyond what its type checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    message: String,
    bad_request: bool,
}

impl Rejection {
    /// A rejection with the given message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            bad_request: false,
        }
    }

    /// A `bad-request` failure with the given message (HTTP 400 `bad_request`).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            bad_request: true,
        }
    }

    /// The message shown to the caller.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether this is a `bad-request` rather than a business rejection.
    pub fn is_bad_request(&self) -> bool {
        self.bad_request
    }
}

impl core::fmt::Display for Rejection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rejection {}

impl From<String> for Rejection {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for Rejection {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// The result of a handler: `Err` is a [`Rejection`].
pub type Result<T, E = Rejection> = core::result::Result<T, E>;

/// Returns early from a handler with a [`Rejection`]; the arguments are those of `format!`.
///
/// ```
/// # fn check(quantity: i64) -> cella_sdk::Result<()> {
/// if quantity <= 0 {
///     cella_sdk::reject!("quantity must be positive, got {quantity}");
/// }
/// # Ok(())
/// # }
/// # assert!(check(0).is_err());
/// ```
#[macro_export]
macro_rules! reject {
    ($($t:tt)*) => {
        return ::core::result::Result::Err($crate::Rejection::new(::std::format!($($t)*)))
    };
}

/// An entity whose state is persisted whole: the handler mutates it in place.
///
/// A missing state (a new key) is `Default::default()`. After each successful command the SDK
/// serializes the state and persists it if it differs from the state the command started from,
/// so read-only commands persist nothing.
pub trait ValueEntity: Default + Serialize + DeserializeOwned + 'static {
    /// The commands: a serde enum, externally tagged (see the [crate docs](crate#commands)).
    type Command: DeserializeOwned;

    /// The topics this type subscribes to, and which of its commands each message runs on which
    /// entity (see [Topics and broadcasts](crate#topics-and-broadcasts)). None by default. Read
    /// once per module version: it must not depend on anything but the code.
    fn subscriptions() -> Vec<Subscription> {
        Vec::new()
    }

    /// Handles one command. `Err` rejects it and discards every change.
    fn handle(&mut self, cmd: Self::Command, ctx: &mut Context) -> Result<Reply>;
}

/// An entity whose changes are events: the handler validates a command and emits events, and
/// the state is the fold of [`apply`](EventSourcedEntity::apply) over all events.
///
/// A missing state (a new key) is `Default::default()`.
pub trait EventSourcedEntity: Default + Serialize + DeserializeOwned + 'static {
    /// The commands: a serde enum, externally tagged (see the [crate docs](crate#commands)).
    type Command: DeserializeOwned;
    /// The events, persisted as JSON.
    type Event: Serialize + DeserializeOwned;
    /// Ask the host to snapshot the state every this many events (0 = the host's default).
    const SNAPSHOT_EVERY: u32 = 0;
    /// The topic every persisted event is published to, after its command commits, as the
    /// message `{"type": T, "key": K, "seq": S, "index": I, "event": E}` (the entity's type and
    /// key, the journal entry's sequence number, the event's index in that entry, the event as
    /// JSON). `None` (the default) publishes nothing.
    ///
    /// ```
    /// # use cella_sdk::{EventContext, EventSourcedEntity, Reply, Result, Serialize, Deserialize, json};
    /// # #[derive(Default, Serialize, Deserialize)] struct Cart;
    /// # #[derive(Deserialize)] enum Command { Noop }
    /// # #[derive(Serialize, Deserialize)] enum Event {}
    /// impl EventSourcedEntity for Cart {
    ///     type Command = Command;
    ///     type Event = Event;
    ///     const EVENTS_TOPIC: Option<&'static str> = Some("cart-events");
    /// #   fn handle(&self, _: Command, _: &mut EventContext<Event>) -> Result<Reply> { Ok(json!({})) }
    /// #   fn apply(&mut self, event: Event) { match event {} }
    /// }
    /// # cella_sdk::export_entity!(event_sourced Cart);
    /// ```
    const EVENTS_TOPIC: Option<&'static str> = None;

    /// The topics this type subscribes to, as for
    /// [`ValueEntity::subscriptions`]. None by default.
    fn subscriptions() -> Vec<Subscription> {
        Vec::new()
    }

    /// Handles one command against the current state: emits events with
    /// [`EventContext::emit`] and replies. `Err` rejects it and discards the emitted events.
    fn handle(&self, cmd: Self::Command, ctx: &mut EventContext<Self::Event>) -> Result<Reply>;

    /// Folds one event into the state. Must be pure and must not fail: it runs again whenever
    /// the host rebuilds the state from the journal.
    fn apply(&mut self, event: Self::Event);
}

/// Links an entity type to its component export glue. Implemented by [`export_entity!`]; do not
/// implement it by hand.
pub trait ExportedEntity: 'static {
    #[doc(hidden)]
    type Glue: bindings::exports::cella::entity::entity::Guest
        + bindings::exports::cella::entity::fold::Guest;
}

/// Exports an entity as the `cella:entity/entity` interface of the component.
///
/// ```ignore
/// cella_sdk::export_entity!(value Counter);
/// cella_sdk::export_entity!(event_sourced ShoppingCart);
/// cella_sdk::export_entity!(crdt Likes);
/// cella_sdk::export_entity!(ephemeral value Visits);   // in memory only
/// cella_sdk::export_entity!(ephemeral crdt Presence);  // in memory only
/// ```
///
/// Use it once per crate (a component exports one entity). `ephemeral` (value and crdt
/// entities) declares the state [`Durability::Ephemeral`]: see [Ephemeral
/// entities](crate#ephemeral-entities). It implements [`ExportedEntity`] for
/// the type (which [`testing::TestKit`] needs) on every target, and emits the component exports
/// only when compiling for `wasm32`, so the crate also builds and tests natively.
#[macro_export]
macro_rules! export_entity {
    (value $entity:ty) => {
        $crate::export_entity!(@glue $entity, $crate::__private::ValueGlue<$entity>);
    };
    (event_sourced $entity:ty) => {
        $crate::export_entity!(@glue $entity, $crate::__private::EventSourcedGlue<$entity>);
    };
    (crdt $entity:ty) => {
        $crate::export_entity!(@glue $entity, $crate::__private::CrdtGlue<$entity>);
    };
    (ephemeral value $entity:ty) => {
        $crate::export_entity!(@glue $entity, $crate::__private::ValueGlue<$entity, true>);
    };
    (ephemeral crdt $entity:ty) => {
        $crate::export_entity!(@glue $entity, $crate::__private::CrdtGlue<$entity, true>);
    };
    (@glue $entity:ty, $glue:ty) => {
        impl $crate::ExportedEntity for $entity {
            type Glue = $glue;
        }

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type CellaEntityGlue = $glue;
            $crate::bindings::export!(CellaEntityGlue with_types_in $crate::bindings);
        };
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::glue::{CrdtGlue, EventSourcedGlue, ValueGlue};
}
