//! The handler's view of the world: [`Context`] (the journaled, host-chosen facts of a command
//! and the effects it asks for) and [`EventContext`] (a `Context` that also collects events).

use core::ops::{Deref, DerefMut};

use serde::Serialize;

use crate::TopicMessage;
use crate::bindings::cella::entity::types::{self as wit, Effect};

/// Everything a handler may know beyond its state and command, and the effects it asks for.
///
/// All values are chosen by the host and journaled with the command, so a replay sees the same
/// ones: use [`timestamp_ms`](Context::timestamp_ms) instead of a clock and
/// [`random_u64`](Context::random_u64) instead of a random number generator.
///
/// Effects ([`call`](Context::call), [`call_with_reply`](Context::call_with_reply),
/// [`publish`](Context::publish), [`broadcast`](Context::broadcast),
/// [`schedule`](Context::schedule), [`schedule_every`](Context::schedule_every),
/// [`cancel`](Context::cancel)) run after the command's change is durable, each exactly once,
/// and only if the command succeeds. A payload that fails to serialize fails the command
/// (`rejected`, with a message starting with `entity error:`).
///
/// A command that is the answer to a call ([`correlation`](Context::correlation) is set), that
/// a timer fired ([`timer`](Context::timer) is set) or that delivers a topic message
/// ([`message`](Context::message) is set) says so here.
#[derive(Debug)]
pub struct Context {
    entity_type: String,
    key: String,
    command_id: String,
    command: String,
    timestamp_ms: u64,
    sequence: u64,
    random_seed: u64,
    correlation: Option<String>,
    timer: Option<String>,
    message: Option<TopicMessage>,
    rng: u64,
    effects: Vec<Effect>,
    forward: Option<wit::Call>,
    error: Option<String>,
}

/// What a finished [`Context`] hands to the export glue.
pub(crate) struct Requested {
    pub(crate) effects: Vec<Effect>,
    pub(crate) forward: Option<wit::Call>,
}

impl Context {
    pub(crate) fn new(ctx: wit::Context) -> Self {
        Self {
            entity_type: ctx.entity_type,
            key: ctx.key,
            command_id: ctx.command_id,
            command: ctx.command,
            timestamp_ms: ctx.timestamp_ms,
            sequence: ctx.sequence,
            random_seed: ctx.random_seed,
            correlation: ctx.correlation,
            timer: ctx.timer,
            message: ctx.message.map(TopicMessage::from),
            rng: ctx.random_seed,
            effects: Vec::new(),
            forward: None,
            error: None,
        }
    }

    /// The entity's type (the module name).
    pub fn entity_type(&self) -> &str {
        &self.entity_type
    }

    /// The entity's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The command's unique id, stable across replays and retries (usable as an idempotency
    /// key for effects).
    pub fn command_id(&self) -> &str {
        &self.command_id
    }

    /// The command's name.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The time of the command chosen by the host, in milliseconds since the Unix epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// The entity's journal sequence number before this command (0 for a new entity).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The host's journaled random seed of this command, as handed to the entity (the start of
    /// the sequence [`random_u64`](Context::random_u64) draws from; unaffected by drawing).
    pub fn random_seed(&self) -> u64 {
        self.random_seed
    }

    /// The correlation of the call this command answers, when it is a call's reply route (see
    /// [`call_with_reply`](Context::call_with_reply)); the payload is then the call's outcome,
    /// which a command variant takes as a [`CallReply`](crate::CallReply).
    pub fn correlation(&self) -> Option<&str> {
        self.correlation.as_deref()
    }

    /// The name of the timer that fired this command, if a timer did (see
    /// [`schedule`](Context::schedule)).
    pub fn timer(&self) -> Option<&str> {
        self.timer.as_deref()
    }

    /// The topic and offset of the message this command delivers, when it runs for a
    /// subscription of the entity's type (see
    /// [`ValueEntity::subscriptions`](crate::ValueEntity::subscriptions)); the payload is then
    /// the message. Offsets increase by one per message of a topic, and a subscriber entity
    /// receives each message once, in offset order.
    pub fn message(&self) -> Option<&TopicMessage> {
        self.message.as_ref()
    }

    /// The next number of a deterministic pseudo-random sequence (splitmix64) seeded by the
    /// host's journaled seed: the same command sees the same numbers on every replay.
    pub fn random_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Sends `command` with `payload` to the entity `entity_type`/`key` after this command
    /// commits (exactly once). Its reply is not seen by this entity (fire-and-forget).
    pub fn call<P: Serialize + ?Sized>(
        &mut self,
        entity_type: impl Into<String>,
        key: impl Into<String>,
        command: impl Into<String>,
        payload: &P,
    ) {
        if let Some(call) = self.make_call(entity_type.into(), key.into(), command.into(), payload)
        {
            self.effects.push(Effect::Call(call));
        }
    }

    /// Like [`call`](Context::call), and the outcome of the call comes back to this entity as
    /// the command `reply_command`, with `correlation` as its context's
    /// [`correlation`](Context::correlation). That command's payload is the outcome as a
    /// [`CallReply`](crate::CallReply): `{"ok": <the target's reply>}`, or
    /// `{"error": {"code": C, "message": M}}` when the target rejected it, did not know the
    /// command, or failed; so a reply handler never fails because the call did.
    ///
    /// ```
    /// # use cella_sdk::{CallReply, Context, Deserialize, Reply, Result, Serialize, Value, ValueEntity, json};
    /// # #[derive(Default, Serialize, Deserialize)] struct Order { paid: bool }
    /// #[derive(Deserialize)]
    /// #[serde(rename_all = "kebab-case")]
    /// enum Command {
    ///     Pay { amount: u64 },
    ///     Charged(CallReply<Value>),
    /// }
    ///
    /// impl ValueEntity for Order {
    ///     type Command = Command;
    ///     fn handle(&mut self, cmd: Command, ctx: &mut Context) -> Result<Reply> {
    ///         match cmd {
    ///             Command::Pay { amount } => {
    ///                 let order = ctx.key().to_owned();
    ///                 ctx.call_with_reply("wallet", "w1", "charge", &amount, "charged", order);
    ///             }
    ///             Command::Charged(CallReply::Ok(_)) => self.paid = true,
    ///             Command::Charged(CallReply::Error(_)) => {}
    ///         }
    ///         Ok(json!({ "paid": self.paid }))
    ///     }
    /// }
    /// # cella_sdk::export_entity!(value Order);
    /// ```
    pub fn call_with_reply<P: Serialize + ?Sized>(
        &mut self,
        entity_type: impl Into<String>,
        key: impl Into<String>,
        command: impl Into<String>,
        payload: &P,
        reply_command: impl Into<String>,
        correlation: impl Into<String>,
    ) {
        if let Some(mut call) =
            self.make_call(entity_type.into(), key.into(), command.into(), payload)
        {
            call.reply_to = Some(wit::ReplyRoute {
                command: reply_command.into(),
                correlation: correlation.into(),
            });
            self.effects.push(Effect::Call(call));
        }
    }

    /// Publishes `payload` to `topic` after this command commits (exactly once): it is
    /// appended to the topic's durable log, from where it reaches the topic's subscribers (see
    /// [`Subscription`](crate::Subscription)) and its followers.
    pub fn publish<P: Serialize + ?Sized>(&mut self, topic: impl Into<String>, payload: &P) {
        let topic = topic.into();
        if let Some(payload) = self.payload(&format!("publication to `{topic}`"), payload) {
            self.effects
                .push(Effect::Publish(wit::Publication { topic, payload }));
        }
    }

    /// Sends `command` with `payload` to every entity of `entity_type` that exists (has a
    /// journal) when the host carries it out, after this command commits: each receives it
    /// exactly once, across all partitions and nodes. Entities created later do not receive it,
    /// and no reply comes back.
    pub fn broadcast<P: Serialize + ?Sized>(
        &mut self,
        entity_type: impl Into<String>,
        command: impl Into<String>,
        payload: &P,
    ) {
        let (entity_type, command) = (entity_type.into(), command.into());
        let what = format!("broadcast of `{command}` to {entity_type}");
        if let Some(payload) = self.payload(&what, payload) {
            self.effects.push(Effect::Broadcast(wit::Broadcast {
                entity_type,
                command,
                payload,
            }));
        }
    }

    /// Sends `command` with `payload` to this same entity `delay_ms` milliseconds after this
    /// command commits (a durable timer: it survives restarts). `name` identifies the timer: a
    /// timer of the same name replaces it, and [`cancel`](Context::cancel) cancels it. The fired
    /// command sees the name as its context's [`timer`](Context::timer).
    pub fn schedule<P: Serialize + ?Sized>(
        &mut self,
        name: impl Into<String>,
        delay_ms: u64,
        command: impl Into<String>,
        payload: &P,
    ) {
        self.push_timer(name.into(), delay_ms, None, command.into(), payload);
    }

    /// Like [`schedule`](Context::schedule), then again every `every_ms` milliseconds until the
    /// timer is cancelled (or replaced by a timer of the same name).
    pub fn schedule_every<P: Serialize + ?Sized>(
        &mut self,
        name: impl Into<String>,
        delay_ms: u64,
        every_ms: u64,
        command: impl Into<String>,
        payload: &P,
    ) {
        self.push_timer(
            name.into(),
            delay_ms,
            Some(every_ms),
            command.into(),
            payload,
        );
    }

    /// Cancels this entity's timer `name` after this command commits (nothing if there is
    /// none, or if it already fired for the last time).
    pub fn cancel(&mut self, name: impl Into<String>) {
        self.effects.push(Effect::Cancel(name.into()));
    }

    fn push_timer<P: Serialize + ?Sized>(
        &mut self,
        name: String,
        delay_ms: u64,
        every_ms: Option<u64>,
        command: String,
        payload: &P,
    ) {
        if let Some(payload) = self.payload(&format!("timer `{name}`"), payload) {
            self.effects.push(Effect::Schedule(wit::Timer {
                name,
                delay_ms,
                command,
                payload,
                every_ms,
            }));
        }
    }

    /// Hands this command on to the entity `entity_type`/`key` as `command` with `payload`:
    /// its reply becomes this command's reply (the handler's own reply is ignored). At most
    /// once per command. A forward has no reply route: its outcome goes to the caller.
    pub fn forward<P: Serialize + ?Sized>(
        &mut self,
        entity_type: impl Into<String>,
        key: impl Into<String>,
        command: impl Into<String>,
        payload: &P,
    ) {
        if self.forward.is_some() {
            self.fail("forward called more than once".to_owned());
            return;
        }
        self.forward = self.make_call(entity_type.into(), key.into(), command.into(), payload);
    }

    fn make_call<P: Serialize + ?Sized>(
        &mut self,
        entity_type: String,
        key: String,
        command: String,
        payload: &P,
    ) -> Option<wit::Call> {
        let what = format!("command `{command}` to {entity_type}/{key}");
        let payload = self.payload(&what, payload)?;
        Some(wit::Call {
            target: wit::Address { entity_type, key },
            command,
            payload,
            reply_to: None,
        })
    }

    fn payload<P: Serialize + ?Sized>(&mut self, what: &str, payload: &P) -> Option<String> {
        match serde_json::to_string(payload) {
            Ok(json) => Some(json),
            Err(e) => {
                self.fail(format!("cannot serialize the payload of the {what}: {e}"));
                None
            }
        }
    }

    fn fail(&mut self, message: String) {
        // The first error is the one worth reporting.
        self.error.get_or_insert(message);
    }

    /// The requested effects and forward, or the first misuse of the context.
    pub(crate) fn finish(self) -> Result<Requested, String> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(Requested {
                effects: self.effects,
                forward: self.forward,
            }),
        }
    }
}

/// The [`Context`] of an event-sourced handler: everything a `Context` offers (through `Deref`)
/// plus [`emit`](EventContext::emit).
#[derive(Debug)]
pub struct EventContext<E> {
    ctx: Context,
    events: Vec<E>,
}

impl<E> EventContext<E> {
    pub(crate) fn new(ctx: Context) -> Self {
        Self {
            ctx,
            events: Vec::new(),
        }
    }

    /// Emits an event. Events are persisted in emission order if the handler returns `Ok`, and
    /// discarded if it returns `Err`.
    pub fn emit(&mut self, event: E) {
        self.events.push(event);
    }

    /// The events emitted so far by this command.
    pub fn emitted(&self) -> &[E] {
        &self.events
    }

    pub(crate) fn into_parts(self) -> (Context, Vec<E>) {
        (self.ctx, self.events)
    }
}

impl<E> Deref for EventContext<E> {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.ctx
    }
}

impl<E> DerefMut for EventContext<E> {
    fn deref_mut(&mut self) -> &mut Context {
        &mut self.ctx
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn context(seed: u64) -> Context {
        Context::new(wit_context(seed))
    }

    fn wit_context(seed: u64) -> wit::Context {
        wit::Context {
            entity_type: "counter".into(),
            key: "k1".into(),
            command_id: "c-1".into(),
            command: "add".into(),
            timestamp_ms: 1_000,
            random_seed: seed,
            sequence: 7,
            correlation: None,
            timer: None,
            message: None,
        }
    }

    #[test]
    fn exposes_the_host_context() {
        let ctx = context(1);
        assert_eq!(
            (
                ctx.entity_type(),
                ctx.key(),
                ctx.command_id(),
                ctx.command()
            ),
            ("counter", "k1", "c-1", "add")
        );
        assert_eq!((ctx.timestamp_ms(), ctx.sequence()), (1_000, 7));
        assert_eq!((ctx.correlation(), ctx.timer()), (None, None));
        assert_eq!(ctx.message(), None);
        let mut ctx = context(42);
        ctx.random_u64();
        assert_eq!(ctx.random_seed(), 42);
        let ctx = Context::new(wit::Context {
            correlation: Some("t-1".into()),
            timer: Some("expire".into()),
            message: Some(wit::TopicMessage {
                topic: "news".into(),
                offset: 3,
            }),
            ..wit_context(0)
        });
        assert_eq!(
            (ctx.correlation(), ctx.timer()),
            (Some("t-1"), Some("expire"))
        );
        assert_eq!(ctx.message(), Some(&TopicMessage::new("news", 3)));
    }

    #[test]
    fn randomness_is_splitmix64_of_the_seed() {
        // Reference values of splitmix64 seeded with 0.
        let mut ctx = context(0);
        assert_eq!(ctx.random_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(ctx.random_u64(), 0x6e78_9e6a_a1b9_65f4);
        let (mut a, mut b) = (context(42), context(42));
        assert_eq!(
            (0..4).map(|_| a.random_u64()).collect::<Vec<_>>(),
            (0..4).map(|_| b.random_u64()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn collects_effects_in_order() {
        let mut ctx = context(0);
        ctx.call(
            "cart",
            "c1",
            "add-item",
            &serde_json::json!({"productId": "p"}),
        );
        ctx.publish("totals", &5);
        ctx.schedule("expire", 60_000, "expire", &());
        ctx.forward("other", "k2", "get", &());
        ctx.call_with_reply("account", "a", "withdraw", &5, "debited", "t-1");
        ctx.schedule_every("tick", 10, 20, "tick", &1);
        ctx.cancel("expire");
        ctx.broadcast("cart", "reset", &serde_json::json!({"all": true}));
        let Ok(done) = ctx.finish() else {
            panic!("context failed")
        };
        assert_eq!(done.effects.len(), 7);
        assert!(matches!(&done.effects[0], Effect::Call(c)
            if c.target.entity_type == "cart" && c.payload == r#"{"productId":"p"}"#));
        assert!(matches!(&done.effects[1], Effect::Publish(p) if p.payload == "5"));
        assert!(matches!(&done.effects[2], Effect::Schedule(t)
            if t.delay_ms == 60_000 && t.payload == "null" && t.every_ms.is_none()));
        assert!(matches!(&done.effects[0], Effect::Call(c) if c.reply_to.is_none()));
        assert!(matches!(&done.effects[3], Effect::Call(c)
            if c.payload == "5" && c.reply_to.as_ref().is_some_and(|r|
                r.command == "debited" && r.correlation == "t-1")));
        assert!(matches!(&done.effects[4], Effect::Schedule(t)
            if t.name == "tick" && t.delay_ms == 10 && t.every_ms == Some(20)));
        assert!(matches!(&done.effects[5], Effect::Cancel(name) if name == "expire"));
        assert!(matches!(&done.effects[6], Effect::Broadcast(b)
            if b.entity_type == "cart" && b.command == "reset" && b.payload == r#"{"all":true}"#));
        assert!(matches!(done.forward, Some(c)
            if c.target.key == "k2" && c.command == "get" && c.reply_to.is_none()));
    }

    #[test]
    fn misuse_fails_the_command() {
        let mut ctx = context(0);
        ctx.forward("a", "1", "get", &());
        ctx.forward("b", "2", "get", &());
        assert!(matches!(ctx.finish(), Err(e) if e.contains("more than once")));

        let mut ctx = context(0);
        let bad: BTreeMap<(u8, u8), u8> = BTreeMap::from([((1, 2), 3)]);
        ctx.publish("t", &bad);
        assert!(matches!(ctx.finish(), Err(e) if e.contains("publication to `t`")));

        let mut ctx = context(0);
        ctx.broadcast("cart", "reset", &bad);
        assert!(matches!(ctx.finish(), Err(e) if e.contains("broadcast of `reset` to cart")));
    }
}
