//! The generic export glue: implementations of the WIT `entity` interface for any
//! [`ValueEntity`] ([`ValueGlue`]), any [`EventSourcedEntity`] ([`EventSourcedGlue`]) and any
//! [`CrdtEntity`] ([`CrdtGlue`]); the value and crdt glue come durable or ephemeral.
//! [`export_entity!`](crate::export_entity) exports one of them; the test kit calls them
//! directly, so tests run exactly this code.

use core::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::cella::entity::types::{
    Consistency, Descriptor, Durability, EntityKind, Failure, Outcome,
};
use crate::bindings::exports::cella::entity::entity::{Context as WitContext, Guest};
use crate::bindings::exports::cella::entity::fold::Guest as FoldGuest;
use crate::command::{command_names, decode_command};
use crate::context::{Context, EventContext};
use crate::crdt::{self, CrdtContext, CrdtData, CrdtEntity, Cursor};
use crate::{EventSourcedEntity, Rejection, Subscription, ValueEntity};

/// The `entity` interface of a [`ValueEntity`], kept in memory only when `EPHEMERAL`.
pub struct ValueGlue<E, const EPHEMERAL: bool = false>(PhantomData<fn() -> E>);

/// The `entity` interface of a [`CrdtEntity`], kept in memory only when `EPHEMERAL`.
pub struct CrdtGlue<E, const EPHEMERAL: bool = false>(PhantomData<fn() -> E>);

/// The `entity` interface of an [`EventSourcedEntity`].
pub struct EventSourcedGlue<E>(PhantomData<fn() -> E>);

const NO_EVENTS: &str = "a value entity has no events";
const NO_CRDT_EVENTS: &str = "a crdt entity has no events";

impl<E: ValueEntity, const EPHEMERAL: bool> Guest for ValueGlue<E, EPHEMERAL> {
    fn describe() -> Descriptor {
        Descriptor {
            durability: durability(EPHEMERAL),
            ..descriptor::<E::Command>(EntityKind::Value, 0, E::subscriptions(), None)
        }
    }

    fn handle(
        ctx: WitContext,
        state: Option<Vec<u8>>,
        payload: String,
    ) -> Result<Outcome, Failure> {
        let command = decode_command::<E::Command>(&ctx.command, &payload)?;
        let mut entity: E = decode_state(state.as_deref()).map_err(entity_error)?;
        // Compare with the state as this build serializes it, so that a read-only command never
        // persists (even if the stored bytes were written by another version of the module).
        let before = encode("state", &entity).map_err(entity_error)?;
        let mut context = Context::new(ctx);
        let reply = entity.handle(command, &mut context).map_err(rejected)?;
        let requested = context.finish().map_err(entity_error)?;
        if EPHEMERAL && (!requested.effects.is_empty() || requested.forward.is_some()) {
            return Err(entity_error(
                "an ephemeral entity cannot ask for effects (calls, publications, timers, \
                 broadcasts) or forward a command"
                    .to_owned(),
            ));
        }
        let after = encode("state", &entity).map_err(entity_error)?;
        Ok(Outcome {
            events: Vec::new(),
            state: (after != before).then_some(after),
            reply: reply.to_string(),
            forward: requested.forward,
            effects: requested.effects,
            crdt_ops: Vec::new(),
            consistency: Consistency::Local,
        })
    }

    fn apply(_state: Option<Vec<u8>>, _event: Vec<u8>) -> Result<Vec<u8>, String> {
        Err(NO_EVENTS.to_owned())
    }

    fn render_state(state: Vec<u8>) -> Result<String, String> {
        render::<E>("state", &state)
    }

    fn render_event(_event: Vec<u8>) -> Result<String, String> {
        Err(NO_EVENTS.to_owned())
    }
}

impl<E: EventSourcedEntity> Guest for EventSourcedGlue<E> {
    fn describe() -> Descriptor {
        descriptor::<E::Command>(
            EntityKind::EventSourced,
            E::SNAPSHOT_EVERY,
            E::subscriptions(),
            E::EVENTS_TOPIC,
        )
    }

    fn handle(
        ctx: WitContext,
        state: Option<Vec<u8>>,
        payload: String,
    ) -> Result<Outcome, Failure> {
        let command = decode_command::<E::Command>(&ctx.command, &payload)?;
        let mut entity: E = decode_state(state.as_deref()).map_err(entity_error)?;
        let mut context = EventContext::new(Context::new(ctx));
        let reply = entity.handle(command, &mut context).map_err(rejected)?;
        let (context, emitted) = context.into_parts();
        let requested = context.finish().map_err(entity_error)?;
        // The handler is done with the state: fold the events into it so that the host need
        // not call `apply` for them.
        let mut events = Vec::with_capacity(emitted.len());
        for event in emitted {
            events.push(encode("event", &event).map_err(entity_error)?);
            entity.apply(event);
        }
        let state = if events.is_empty() {
            None
        } else {
            Some(encode("state", &entity).map_err(entity_error)?)
        };
        Ok(Outcome {
            events,
            state,
            reply: reply.to_string(),
            forward: requested.forward,
            effects: requested.effects,
            crdt_ops: Vec::new(),
            consistency: Consistency::Local,
        })
    }

    fn apply(state: Option<Vec<u8>>, event: Vec<u8>) -> Result<Vec<u8>, String> {
        let mut entity: E = decode_state(state.as_deref())?;
        let event: E::Event = decode("event", &event)?;
        entity.apply(event);
        encode("state", &entity)
    }

    fn render_state(state: Vec<u8>) -> Result<String, String> {
        render::<E>("state", &state)
    }

    fn render_event(event: Vec<u8>) -> Result<String, String> {
        render::<E::Event>("event", &event)
    }
}

impl<E: EventSourcedEntity> FoldGuest for EventSourcedGlue<E> {
    /// Decodes the state once, applies every event to it and encodes it once: the same state
    /// as `apply` per event (a command's events are folded the same way in `handle`).
    fn apply_all(state: Option<Vec<u8>>, events: Vec<Vec<u8>>) -> Result<Vec<u8>, String> {
        let mut entity: E = decode_state(state.as_deref())?;
        for event in events {
            entity.apply(decode("event", &event)?);
        }
        encode("state", &entity)
    }
}

impl<E: ValueEntity, const EPHEMERAL: bool> FoldGuest for ValueGlue<E, EPHEMERAL> {
    fn apply_all(_state: Option<Vec<u8>>, _events: Vec<Vec<u8>>) -> Result<Vec<u8>, String> {
        Err(NO_EVENTS.to_owned())
    }
}

impl<E: CrdtEntity, const EPHEMERAL: bool> FoldGuest for CrdtGlue<E, EPHEMERAL> {
    fn apply_all(_state: Option<Vec<u8>>, _events: Vec<Vec<u8>>) -> Result<Vec<u8>, String> {
        Err(NO_CRDT_EVENTS.to_owned())
    }
}

impl<E: CrdtEntity, const EPHEMERAL: bool> Guest for CrdtGlue<E, EPHEMERAL> {
    fn describe() -> Descriptor {
        Descriptor {
            durability: durability(EPHEMERAL),
            crdt: Some(crdt::wit_type(E::Data::TYPE)),
            ..descriptor::<E::Command>(EntityKind::Crdt, 0, Vec::new(), None)
        }
    }

    fn handle(
        ctx: WitContext,
        state: Option<Vec<u8>>,
        payload: String,
    ) -> Result<Outcome, Failure> {
        let command = decode_command::<E::Command>(&ctx.command, &payload)?;
        // The host always hands the value in; none reads as new data.
        let view = match state {
            Some(bytes) => decode("value", &bytes).map_err(entity_error)?,
            None => crdt::model::Node::empty(E::Data::TYPE).view(),
        };
        let root = Cursor::root(E::Data::TYPE, &view).map_err(entity_error)?;
        let mut data = E::Data::at(root.clone());
        let mut context = CrdtContext::new(ctx);
        let reply = E::handle(&mut data, command, &mut context).map_err(rejected)?;
        drop(data);
        let ops = root.finish().map_err(entity_error)?;
        Ok(Outcome {
            events: Vec::new(),
            state: None,
            reply: reply.to_string(),
            forward: None,
            effects: Vec::new(),
            crdt_ops: ops.into_iter().map(crdt::wit_op).collect(),
            consistency: crdt::wit_consistency(context.consistency()),
        })
    }

    fn apply(_state: Option<Vec<u8>>, _event: Vec<u8>) -> Result<Vec<u8>, String> {
        Err(NO_CRDT_EVENTS.to_owned())
    }

    fn render_state(state: Vec<u8>) -> Result<String, String> {
        render::<serde_json::Value>("value", &state)
    }

    fn render_event(_event: Vec<u8>) -> Result<String, String> {
        Err(NO_CRDT_EVENTS.to_owned())
    }
}

fn durability(ephemeral: bool) -> Durability {
    match ephemeral {
        true => Durability::Ephemeral,
        false => Durability::Durable,
    }
}

fn descriptor<C: DeserializeOwned>(
    kind: EntityKind,
    snapshot_every: u32,
    subscriptions: Vec<Subscription>,
    events_topic: Option<&str>,
) -> Descriptor {
    let commands = command_names::<C>().unwrap_or_default();
    Descriptor {
        kind,
        commands: commands.iter().map(|name| (*name).to_owned()).collect(),
        snapshot_every,
        subscriptions: subscriptions
            .into_iter()
            .map(Subscription::into_wit)
            .collect(),
        events_topic: events_topic.map(str::to_owned),
        durability: Durability::Durable,
        crdt: None,
    }
}

/// The state of the entity: `Default` when there is none yet.
fn decode_state<E: Default + DeserializeOwned>(state: Option<&[u8]>) -> Result<E, String> {
    match state {
        None => Ok(E::default()),
        Some(bytes) => decode("state", bytes),
    }
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("cannot decode the {what}: {e}"))
}

fn encode<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| format!("cannot encode the {what}: {e}"))
}

/// Renders stored bytes as JSON text, checking that they decode as `T`.
fn render<T: Serialize + DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<String, String> {
    let value: T = decode(what, bytes)?;
    serde_json::to_string(&value).map_err(|e| format!("cannot render the {what}: {e}"))
}

fn rejected(rejection: Rejection) -> Failure {
    if rejection.is_bad_request() {
        Failure::BadRequest(rejection.message().to_owned())
    } else {
        Failure::Rejected(rejection.message().to_owned())
    }
}

/// A failure of the entity's code or data rather than a business rule.
fn entity_error(message: String) -> Failure {
    Failure::Rejected(format!("entity error: {message}"))
}
