//! Native unit testing of entities: [`TestKit`] plays the host's part for one entity, running
//! commands through the same export glue a component runs, against an in-memory state; it
//! records the effects each command asks for ([`Effect`]: calls with their reply routes,
//! publications, timers, cancels, broadcasts), keeps the pending timers, and runs commands as a
//! call's reply route ([`TestKit::answer`], [`TestKit::reply`]), a timer's firing
//! ([`TestKit::fire`]) or a topic message's delivery ([`TestKit::deliver`]). The types of
//! what a command produced ([`Handled`], [`Effect`]) or why it failed ([`Failure`]) are in
//! `testing_effects.rs`; crdt entities have a kit of their own, [`CrdtTestKit`]
//! (`testing_crdt.rs`).
//!
//! ```
//! use cella_sdk::testing::{Failure, TestKit};
//! use cella_sdk::{Context, Deserialize, Reply, Result, Serialize, ValueEntity, json, reject};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Gauge {
//!     level: u8,
//! }
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "kebab-case")]
//! enum Command {
//!     Set(u8),
//! }
//!
//! impl ValueEntity for Gauge {
//!     type Command = Command;
//!     fn handle(&mut self, Command::Set(level): Command, _ctx: &mut Context) -> Result<Reply> {
//!         if level > 100 {
//!             reject!("level {level} is above 100");
//!         }
//!         self.level = level;
//!         Ok(json!({}))
//!     }
//! }
//! cella_sdk::export_entity!(value Gauge);
//!
//! let mut kit = TestKit::<Gauge>::new();
//! assert_eq!(kit.handle("set", json!(40)), Ok(json!({})));
//! assert_eq!(kit.state().level, 40);
//! assert_eq!(kit.handle("set", json!(140)), Err(Failure::Rejected("level 140 is above 100".into())));
//! assert!(matches!(kit.handle("set", json!("high")), Err(Failure::BadRequest(_))));
//! assert_eq!(kit.handle("reset", json!(null)), Err(Failure::UnknownCommand("reset".into())));
//! assert_eq!(kit.sequence(), 1);
//! ```
//!
//! Effects, reply routes and timers:
//!
//! ```
//! use cella_sdk::testing::{Call, Effect, TestKit};
//! use cella_sdk::{CallError, CallReply, Context, Deserialize, Reply, Result, Serialize, Value};
//! use cella_sdk::{ValueEntity, json};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Order {
//!     status: String,
//! }
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "kebab-case")]
//! enum Command {
//!     Pay,
//!     Charged(CallReply<Value>),
//!     Remind,
//! }
//!
//! impl ValueEntity for Order {
//!     type Command = Command;
//!     fn handle(&mut self, cmd: Command, ctx: &mut Context) -> Result<Reply> {
//!         match cmd {
//!             Command::Pay => {
//!                 ctx.call_with_reply("wallet", "w", "charge", &5, "charged", "pay-1");
//!                 ctx.schedule_every("remind", 1_000, 60_000, "remind", &());
//!             }
//!             Command::Charged(reply) => {
//!                 assert_eq!(ctx.correlation(), Some("pay-1"));
//!                 ctx.cancel("remind");
//!                 self.status = match reply {
//!                     CallReply::Ok(_) => "paid".into(),
//!                     CallReply::Error(e) => e.code,
//!                 };
//!             }
//!             Command::Remind => assert_eq!(ctx.timer(), Some("remind")),
//!         }
//!         Ok(json!(self.status))
//!     }
//! }
//! cella_sdk::export_entity!(value Order);
//!
//! let mut kit = TestKit::<Order>::new();
//! kit.handle("pay", json!(null)).unwrap();
//! let handled = kit.last().unwrap();
//! let charge = Call::new("wallet", "w", "charge", json!(5)).with_reply("charged", "pay-1");
//! assert_eq!(handled.calls(), [&charge]);
//! assert_eq!(handled.timers()[0].every_ms, Some(60_000));
//! kit.fire("remind").unwrap(); // repeating: still pending
//! assert!(kit.timers().contains_key("remind"));
//! let refused = CallReply::<Value>::Error(CallError::new("rejected", "no funds"));
//! assert_eq!(kit.answer(&charge, &refused), Ok(json!("rejected")));
//! assert_eq!(kit.last().unwrap().effects, [Effect::Cancel("remind".into())]);
//! assert!(kit.timers().is_empty());
//! ```
//!
//! Subscriptions, topic messages and broadcasts:
//!
//! ```
//! use cella_sdk::testing::{Effect, TestKit};
//! use cella_sdk::{Context, Deserialize, Reply, Result, Serialize, Subscription, Value};
//! use cella_sdk::{ValueEntity, json};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Inbox {
//!     seen: Vec<u64>,
//! }
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "kebab-case")]
//! enum Command {
//!     OnMail(Value),
//!     Clear,
//! }
//!
//! impl ValueEntity for Inbox {
//!     type Command = Command;
//!     fn subscriptions() -> Vec<Subscription> {
//!         vec![Subscription::to("mail", "on-mail").key_pointer("/to")]
//!     }
//!     fn handle(&mut self, cmd: Command, ctx: &mut Context) -> Result<Reply> {
//!         match cmd {
//!             Command::OnMail(_) => self.seen.extend(ctx.message().map(|m| m.offset)),
//!             Command::Clear => ctx.broadcast("inbox", "clear-one", &()),
//!         }
//!         Ok(json!(self.seen))
//!     }
//! }
//! cella_sdk::export_entity!(value Inbox);
//!
//! let mut kit = TestKit::<Inbox>::with_address("inbox", "ann");
//! assert_eq!(kit.subscriptions()[0].topic, "mail");
//! assert_eq!(kit.deliver("mail", json!({"to": ["ann", "bob"]})), Ok(json!([1])));
//! assert_eq!(kit.deliver("mail", json!({"to": "ann"})), Ok(json!([1, 2])));
//! kit.handle("clear", json!(null)).unwrap();
//! let broadcast = Effect::Broadcast {
//!     entity_type: "inbox".into(),
//!     command: "clear-one".into(),
//!     payload: json!(null),
//! };
//! assert_eq!(kit.last().unwrap().effects, [broadcast]);
//! ```

use core::marker::PhantomData;
use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::bindings::cella::entity::types::{self as wit, EntityKind};
use crate::bindings::exports::cella::entity::entity::Guest;
use crate::bindings::exports::cella::entity::fold::Guest as FoldGuest;
use crate::{CallReply, ExportedEntity, Subscription, TopicMessage};

#[path = "testing_crdt.rs"]
mod crdt_kit;
#[path = "testing_effects.rs"]
mod effects;

pub use crdt_kit::{CrdtHandled, CrdtReplica, CrdtTestKit};

pub use effects::{Call, Effect, Failure, Handled, ReplyRoute, Timer};
use effects::{call, effect};

/// Runs commands against one in-memory entity the way the host does: the state starts empty,
/// each command goes through the entity's export glue (command decoding, rejections, state
/// and event handling), and whatever it persists becomes the next command's state.
///
/// For event-sourced entities the kit also folds every persisted event with the `apply`
/// export, as the host does when it rebuilds a state, and checks that the result equals the
/// state the handler returned.
///
/// The context is deterministic: the command ids are `test-command-<n>`, the time is fixed
/// (see [`set_time`](TestKit::set_time)) and the random seed depends only on `n`.
///
/// The kit also keeps the entity's pending timers as the host would ([`timers`](TestKit::timers):
/// a schedule sets one, a timer of the same name replaces it, a cancel removes it, a one-shot
/// timer is gone once it fired) but never fires them by itself: [`fire`](TestKit::fire) does.
/// The kit runs only this entity, so it does not run the entities a call targets;
/// [`answer`](TestKit::answer) delivers a call's outcome to its
/// reply route, as the host does once the target ran. Publications and broadcasts are recorded
/// only; [`deliver`](TestKit::deliver) runs a topic message through the type's subscription, as
/// the host does for every message of a topic the type subscribes to.
///
/// # Panics
///
/// The kit panics when the entity breaks the contract in a way the host would not accept: a
/// reply that is not JSON, a value entity emitting events, an `apply` that fails or disagrees
/// with the handler's state, or stored bytes that do not render.
pub struct TestKit<E: ExportedEntity> {
    entity_type: String,
    key: String,
    timestamp_ms: u64,
    state: Option<Vec<u8>>,
    sequence: u64,
    commands_run: u64,
    events: Vec<Value>,
    /// Where each of `events` is: (journal sequence number, index in its entry).
    positions: Vec<(u64, u32)>,
    last: Option<Handled>,
    timers: BTreeMap<String, Timer>,
    offsets: BTreeMap<String, u64>,
    entity: PhantomData<fn() -> E>,
}

/// Why a command runs, which decides what its context says.
enum Origin<'a> {
    Client,
    Reply(&'a str),
    Timer(&'a str),
    Message(TopicMessage),
}

impl<E: ExportedEntity> Default for TestKit<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: ExportedEntity> TestKit<E> {
    /// The default time of commands: 2025-01-01T00:00:00Z.
    pub const DEFAULT_TIME_MS: u64 = 1_735_689_600_000;

    /// A new entity `test/test-key` with no state.
    pub fn new() -> Self {
        Self::with_address("test", "test-key")
    }

    /// A new entity with the given address and no state.
    pub fn with_address(entity_type: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            entity_type: entity_type.into(),
            key: key.into(),
            timestamp_ms: Self::DEFAULT_TIME_MS,
            state: None,
            sequence: 0,
            commands_run: 0,
            events: Vec::new(),
            positions: Vec::new(),
            last: None,
            timers: BTreeMap::new(),
            offsets: BTreeMap::new(),
            entity: PhantomData,
        }
    }

    /// Sets the time the next commands see ([`Context::timestamp_ms`](crate::Context)).
    pub fn set_time(&mut self, timestamp_ms: u64) {
        self.timestamp_ms = timestamp_ms;
    }

    /// The command names the entity declares.
    pub fn commands(&self) -> Vec<String> {
        E::Glue::describe().commands
    }

    /// Whether the entity is durable or ephemeral.
    pub fn durability(&self) -> crate::Durability {
        crate::crdt::from_wit_durability(E::Glue::describe().durability)
    }

    /// The snapshot interval the entity declares (0 = the host's default).
    pub fn snapshot_every(&self) -> u32 {
        E::Glue::describe().snapshot_every
    }

    /// The subscriptions the entity's type declares, in order.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        E::Glue::describe()
            .subscriptions
            .into_iter()
            .map(Subscription::from_wit)
            .collect()
    }

    /// The topic the entity's events are published to, if it declares one.
    pub fn events_topic(&self) -> Option<String> {
        E::Glue::describe().events_topic
    }

    /// Runs `command` with the JSON `payload` (`Value::Null` for none) and returns its reply,
    /// or why it failed (in which case nothing changes).
    pub fn handle(&mut self, command: &str, payload: Value) -> Result<Value, Failure> {
        self.run(command, payload, Origin::Client)
    }

    /// Runs `command` as the reply route of a call with `correlation`, its payload the call's
    /// outcome ([`Context::correlation`](crate::Context::correlation) is set).
    pub fn reply<T: Serialize>(
        &mut self,
        command: &str,
        correlation: &str,
        outcome: &CallReply<T>,
    ) -> Result<Value, Failure> {
        let payload = match serde_json::to_value(outcome) {
            Ok(payload) => payload,
            Err(e) => panic!("cannot serialize the call's outcome: {e}"),
        };
        self.run(command, payload, Origin::Reply(correlation))
    }

    /// Delivers the outcome of `call` (one the entity requested) to its reply route.
    ///
    /// # Panics
    ///
    /// If the call has no reply route.
    pub fn answer<T: Serialize>(
        &mut self,
        call: &Call,
        outcome: &CallReply<T>,
    ) -> Result<Value, Failure> {
        let Some(route) = &call.reply_to else {
            panic!("the call {call:?} has no reply route");
        };
        self.reply(&route.command, &route.correlation, outcome)
    }

    /// Fires the pending timer `name`: runs its command with its payload, with
    /// [`Context::timer`](crate::Context::timer) set. A one-shot timer is no longer pending
    /// afterwards (unless the command scheduled it again); a repeating one stays.
    ///
    /// # Panics
    ///
    /// If no timer of that name is pending.
    pub fn fire(&mut self, name: &str) -> Result<Value, Failure> {
        let Some(timer) = self.timers.get(name).cloned() else {
            panic!(
                "no timer `{name}` is pending (pending: {:?})",
                self.timers.keys().collect::<Vec<_>>()
            );
        };
        if timer.every_ms.is_none() {
            self.timers.remove(name);
        }
        self.run(&timer.command, timer.payload, Origin::Timer(name))
    }

    /// Runs `command` with `payload` as fired by the timer `name`, whether or not it is pending
    /// (e.g. a timer of a state set with [`set_state`](TestKit::set_state)).
    pub fn fire_as(&mut self, name: &str, command: &str, payload: Value) -> Result<Value, Failure> {
        self.run(command, payload, Origin::Timer(name))
    }

    /// Delivers `message` as the next message of `topic` (offset 1 for the first one the kit
    /// delivers of that topic, then one more each time): runs the command of the type's
    /// subscription to `topic` with the message as its payload and
    /// [`Context::message`](crate::Context::message) set, as the host does.
    ///
    /// # Panics
    ///
    /// If the type has no subscription to `topic`, or several; or if the subscription's key
    /// does not pick this entity for `message` (the host would deliver it elsewhere, or
    /// nowhere): give the kit the right key with [`with_address`](TestKit::with_address).
    pub fn deliver(&mut self, topic: &str, message: Value) -> Result<Value, Failure> {
        let subscriptions: Vec<Subscription> = self
            .subscriptions()
            .into_iter()
            .filter(|s| s.topic == topic)
            .collect();
        let [subscription] = subscriptions.as_slice() else {
            panic!(
                "the type has {} subscriptions to topic `{topic}` (deliver needs exactly one; \
                 use deliver_as to run a command with a topic message)",
                subscriptions.len()
            );
        };
        match subscription.keys_of(&message) {
            Ok(keys) if keys.contains(&self.key) => {}
            Ok(keys) => panic!(
                "the subscription {subscription:?} delivers {message} to {keys:?}, not to this \
                 entity `{}`",
                self.key
            ),
            Err(e) => panic!("the subscription {subscription:?} delivers {message} nowhere: {e}"),
        }
        let offset = self.offsets.get(topic).map_or(1, |last| last + 1);
        let command = subscription.command.clone();
        self.deliver_as(&command, TopicMessage::new(topic, offset), message)
    }

    /// Runs `command` with `payload` as the delivery of `message`, whether or not the type
    /// subscribes to its topic (e.g. to replay a given offset). Later [`deliver`](TestKit::deliver)s
    /// of the topic carry on after the highest offset delivered.
    pub fn deliver_as(
        &mut self,
        command: &str,
        message: TopicMessage,
        payload: Value,
    ) -> Result<Value, Failure> {
        let last = self.offsets.entry(message.topic.clone()).or_insert(0);
        *last = (*last).max(message.offset);
        self.run(command, payload, Origin::Message(message))
    }

    /// The messages the host would have published to the type's
    /// [`events_topic`](TestKit::events_topic) so far, in order:
    /// `{"type": T, "key": K, "seq": S, "index": I, "event": E}` for every persisted event
    /// (empty when the type declares no events topic).
    pub fn events_topic_messages(&self) -> Vec<Value> {
        if self.events_topic().is_none() {
            return Vec::new();
        }
        self.positions
            .iter()
            .zip(&self.events)
            .map(|((seq, index), event)| {
                serde_json::json!({
                    "type": self.entity_type,
                    "key": self.key,
                    "seq": seq,
                    "index": index,
                    "event": event,
                })
            })
            .collect()
    }

    /// The pending timers, by name.
    pub fn timers(&self) -> &BTreeMap<String, Timer> {
        &self.timers
    }

    fn run(&mut self, command: &str, payload: Value, origin: Origin) -> Result<Value, Failure> {
        self.last = None;
        self.commands_run += 1;
        let n = self.commands_run;
        let ctx = wit::Context {
            entity_type: self.entity_type.clone(),
            key: self.key.clone(),
            command_id: format!("test-command-{n}"),
            command: command.to_owned(),
            timestamp_ms: self.timestamp_ms,
            random_seed: n.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            sequence: self.sequence,
            correlation: None,
            timer: None,
            message: None,
        };
        let ctx = match origin {
            Origin::Client => ctx,
            Origin::Reply(correlation) => wit::Context {
                correlation: Some(correlation.to_owned()),
                ..ctx
            },
            Origin::Timer(name) => wit::Context {
                timer: Some(name.to_owned()),
                ..ctx
            },
            Origin::Message(message) => wit::Context {
                message: Some(message.into()),
                ..ctx
            },
        };
        let outcome = E::Glue::handle(ctx, self.state.clone(), payload.to_string())?;
        let reply = parse_json("reply", &outcome.reply);

        let mut events = Vec::with_capacity(outcome.events.len());
        let persisted = match E::Glue::describe().kind {
            EntityKind::Value => {
                assert!(outcome.events.is_empty(), "a value entity returned events");
                let persisted = outcome.state.is_some();
                if let Some(state) = outcome.state {
                    self.state = Some(state);
                }
                persisted
            }
            EntityKind::EventSourced if outcome.events.is_empty() => false,
            EntityKind::EventSourced => {
                let mut folded = self.state.clone();
                for event in &outcome.events {
                    events.push(render("event", E::Glue::render_event(event.clone())));
                    match E::Glue::apply(folded, event.clone()) {
                        Ok(state) => folded = Some(state),
                        Err(e) => panic!("`apply` failed on an event the handler emitted: {e}"),
                    }
                }
                if let (Some(returned), Some(folded)) = (&outcome.state, &folded) {
                    assert_eq!(
                        parse_json("state", &String::from_utf8_lossy(returned)),
                        parse_json("state", &String::from_utf8_lossy(folded)),
                        "the state returned by `handle` differs from the fold of its events \
                         with `apply`"
                    );
                }
                let batch =
                    <E::Glue as FoldGuest>::apply_all(self.state.clone(), outcome.events.clone());
                match (batch, &folded) {
                    (Ok(batch), Some(folded)) => assert_eq!(
                        parse_json("state", &String::from_utf8_lossy(&batch)),
                        parse_json("state", &String::from_utf8_lossy(folded)),
                        "`apply-all` over the command's events differs from `apply` per event"
                    ),
                    (batch, _) => panic!("`apply-all` failed on the events: {batch:?}"),
                }
                self.state = outcome.state.or(folded);
                true
            }
            EntityKind::Crdt => panic!("a crdt entity: test it with `testing::CrdtTestKit`"),
        };
        if persisted {
            self.sequence += 1;
        }
        let seq = self.sequence;
        self.positions
            .extend((0u32..).take(events.len()).map(|index| (seq, index)));
        self.events.extend(events.iter().cloned());
        let effects: Vec<Effect> = outcome.effects.into_iter().map(effect).collect();
        for effect in &effects {
            match effect {
                Effect::Schedule(timer) => {
                    self.timers.insert(timer.name.clone(), timer.clone());
                }
                Effect::Cancel(name) => {
                    self.timers.remove(name);
                }
                Effect::Call(_) | Effect::Publish { .. } | Effect::Broadcast { .. } => {}
            }
        }
        self.last = Some(Handled {
            reply: reply.clone(),
            events,
            persisted,
            effects,
            forward: outcome.forward.map(call),
        });
        Ok(reply)
    }

    /// What the last command produced; `None` if it failed or none ran yet.
    pub fn last(&self) -> Option<&Handled> {
        self.last.as_ref()
    }

    /// The journal sequence number: how many commands persisted something.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Event-sourced: every event persisted so far, as JSON, in order.
    pub fn events(&self) -> &[Value] {
        &self.events
    }

    /// The stored state as JSON (rendered by the entity), or `None` if nothing was stored yet.
    pub fn state_json(&self) -> Option<Value> {
        self.state
            .as_ref()
            .map(|state| render("state", E::Glue::render_state(state.clone())))
    }

    /// Replaces the stored state, e.g. to start a test from a given state.
    pub fn set_state(&mut self, state: &E)
    where
        E: serde::Serialize,
    {
        match serde_json::to_vec(state) {
            Ok(bytes) => self.state = Some(bytes),
            Err(e) => panic!("cannot serialize the state: {e}"),
        }
    }

    /// The stored state, decoded (`Default` if nothing was stored yet).
    pub fn state(&self) -> E
    where
        E: Default + DeserializeOwned,
    {
        match &self.state {
            None => E::default(),
            Some(bytes) => match serde_json::from_slice(bytes) {
                Ok(state) => state,
                Err(e) => panic!("the stored state does not decode: {e}"),
            },
        }
    }
}

fn parse_json(what: &str, text: &str) -> Value {
    match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => panic!("the {what} is not JSON ({e}): {text}"),
    }
}

fn render(what: &str, rendered: Result<String, String>) -> Value {
    match rendered {
        Ok(text) => parse_json(what, &text),
        Err(e) => panic!("the {what} does not render: {e}"),
    }
}
