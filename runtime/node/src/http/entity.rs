//! The entity endpoints: run a command, read an entity's state or its journal — each routed to
//! the entity's partition leader first ([`dispatch`]) — and the commands another node forwards
//! on its forwarding exchange ([`forwarded_command`]).

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use cella_core::{EntityId, OUTBOX_PREFIX, OutboxItem, RowTable, TimerRow, decode};
use http_body_util::BodyExt;
use hyper::{Request, Response, StatusCode, body::Incoming};

use super::{
    Params,
    body::{Body, command_payload, json_response, read_body, text_response, u64_param},
    entity_command_path,
};
use crate::{
    auth::Action,
    entities::Invocation,
    error::{Error, Result},
    metrics::Outcome,
    node::Node,
    routing::{Origin, Target, Via, answer_forwarded, dispatch},
};

/// `POST /v1/entities/{type}/{key}/{command}`.
pub(super) async fn command(
    node: &Arc<Node>,
    params: &Params<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let (ty, key, command) = (
        params.decoded("type")?,
        params.decoded("key")?,
        params.decoded("command")?,
    );
    if crate::entities::is_system_type(&ty) {
        return Err(Error::BadRequest(format!(
            "entity types starting with `$` are the node's own (`{ty}`); publish to a topic with POST /v1/topics/{{topic}}"
        )));
    }
    node.authorize(&req, Action::Command(&ty))?;
    run_routed(node, &ty, &key, &command, req).await
}

/// `POST /v1/topics/{topic}`: appends the JSON body to the topic, `{"topic": T, "offset": O}`.
pub(super) async fn publish(
    node: &Arc<Node>,
    params: &Params<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let topic = params.decoded("topic")?;
    node.authorize(&req, Action::Publish(&topic))?;
    cella_core::validate_name("topic", &topic)?;
    run_routed(node, crate::entities::TOPIC_TYPE, &topic, "publish", req).await
}

/// Runs a command at its entity's partition leader (here, or forwarded there).
async fn run_routed(
    node: &Arc<Node>,
    ty: &str,
    key: &str,
    command: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let (ty, key, command) = (ty.to_string(), key.to_string(), command.to_string());
    if let Some(unjournaled) = unjournaled(node, &ty).await? {
        return run_unjournaled(node, &ty, &key, &command, req, unjournaled).await;
    }
    if super::body::query_param(&req, "consistency").is_some() && node.registry.get(&ty).is_ok() {
        return Err(Error::BadRequest(format!(
            "`{ty}` is not a crdt type: its commands are always strongly consistent (drop `consistency`)"
        )));
    }
    let mut origin = Origin::of(&req, Via::Exchange);
    let invocation = idempotency(&req)?;
    let id = EntityId::new(&ty, &key);
    // Forwarded, the command carries its request id in the query (the exchange carries no
    // headers).
    origin.path_and_query = crate::effects::delivery_path(&id, &command, &invocation);
    let body = read_body(req, node.options.max_payload, "the command payload").await?;
    let payload = command_payload(&body)?;
    dispatch(node, Target::Entity(&id), &origin, body, || {
        run_command(node, &ty, &key, &command, payload.clone(), &invocation)
    })
    .await
}

/// How a type without a journal is served.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unjournaled {
    /// On the node that received the command.
    Crdt,
    /// On its partition's leader, in memory.
    Ephemeral,
}

/// Whether `ty` is a crdt or an ephemeral type (`None`: journaled, or a system type).
async fn unjournaled(node: &Node, ty: &str) -> Result<Option<Unjournaled>> {
    if crate::entities::is_system_type(ty) {
        return Ok(None);
    }
    let (crdt, durability) = match node.registry.storage(ty) {
        Some(storage) => storage,
        None => match node.registry.get_loaded(ty).await {
            Ok(active) => {
                let descriptor = active.module.descriptor();
                (descriptor.crdt, descriptor.durability)
            }
            // Answered by the usual path (unknown type).
            Err(_) => return Ok(None),
        },
    };
    Ok(if crdt.is_some() {
        Some(Unjournaled::Crdt)
    } else if durability == cella_host::Durability::Ephemeral {
        Some(Unjournaled::Ephemeral)
    } else {
        None
    })
}

/// The `?consistency=` of a request (`local` when absent).
fn consistency(req: &Request<Incoming>) -> Result<cella_host::Consistency> {
    match super::body::query_param(req, "consistency") {
        None => Ok(cella_host::Consistency::Local),
        Some(v) => cella_host::Consistency::parse(&v).ok_or_else(|| {
            Error::BadRequest(format!(
                "query parameter `consistency` must be `local`, `majority` or `all`, got `{v}`"
            ))
        }),
    }
}

/// Runs a command of a crdt type here, or of an ephemeral type at its partition's leader.
/// Neither records request ids, so an `Idempotency-Key` is refused rather than ignored.
async fn run_unjournaled(
    node: &Arc<Node>,
    ty: &str,
    key: &str,
    command: &str,
    req: Request<Incoming>,
    how: Unjournaled,
) -> Result<Response<Body>> {
    if req.headers().contains_key(IDEMPOTENCY_KEY) {
        return Err(Error::BadRequest(format!(
            "`{ty}` is {} type, whose commands are not deduplicated: send it without an Idempotency-Key",
            match how {
                Unjournaled::Crdt => "a crdt",
                Unjournaled::Ephemeral => "an ephemeral",
            }
        )));
    }
    let invocation = Invocation {
        consistency: consistency(&req)?,
        ..Invocation::default()
    };
    if how == Unjournaled::Ephemeral && invocation.consistency != cella_host::Consistency::Local {
        return Err(Error::BadRequest(format!(
            "`{ty}` is an ephemeral value entity: `consistency` is for crdt entities"
        )));
    }
    let mut origin = Origin::of(&req, Via::Exchange);
    let id = EntityId::new(ty, key);
    origin.path_and_query = crate::effects::delivery_path(&id, command, &invocation);
    let body = read_body(req, node.options.max_payload, "the command payload").await?;
    let payload = command_payload(&body)?;
    if how == Unjournaled::Crdt {
        return run_command(node, ty, key, command, payload, &invocation).await;
    }
    dispatch(node, Target::Entity(&id), &origin, body, || {
        run_command(node, ty, key, command, payload.clone(), &invocation)
    })
    .await
}

/// The header a client retries a command with to have it run once.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The invocation of a client's command: its `Idempotency-Key`, if any, as its request id.
fn idempotency(req: &Request<Incoming>) -> Result<Invocation> {
    let Some(value) = req.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(Invocation::default());
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 256)
        .ok_or_else(|| {
            Error::BadRequest(
                "the Idempotency-Key header must be 1 to 256 visible ASCII characters".into(),
            )
        })?;
    Ok(Invocation {
        request_id: Some(format!("k/{key}")),
        ..Invocation::default()
    })
}

/// `GET /v1/entities/{type}/{key}`: the state as JSON, with its sequence and module version.
pub(super) async fn state(
    node: &Arc<Node>,
    params: &Params<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let (ty, key) = (params.decoded("type")?, params.decoded("key")?);
    node.authorize(&req, Action::Read(&ty))?;
    let origin = Origin::of(&req, Via::Request);
    let id = EntityId::new(&ty, &key);
    if unjournaled(node, &ty).await? == Some(Unjournaled::Crdt) {
        let inspection = node.entities.inspect(&ty, &key).await?;
        return Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({
                "type": ty,
                "key": key,
                "sequence": inspection.sequence,
                "moduleVersion": inspection.module_version,
                "state": inspection.state,
                "effects": [],
                "timers": [],
            }),
        ));
    }
    dispatch(node, Target::Entity(&id), &origin, Bytes::new(), || async {
        let inspection = node.entities.inspect(&ty, &key).await?;
        let (effects, timers) = pending_effects(node, &id)?;
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({
                "type": ty,
                "key": key,
                "sequence": inspection.sequence,
                "moduleVersion": inspection.module_version,
                "state": inspection.state,
                "effects": effects,
                "timers": timers,
            }),
        ))
    })
    .await
}

/// The entity's outbox (calls awaiting delivery) and its timers, as JSON.
fn pending_effects(
    node: &Node,
    id: &EntityId,
) -> Result<(Vec<serde_json::Value>, Vec<serde_json::Value>)> {
    let (mut effects, mut timers) = (Vec::new(), Vec::new());
    for (name, bytes) in node.store.entity_rows(id, RowTable::Effects, "")? {
        if name.starts_with(OUTBOX_PREFIX) {
            let item: OutboxItem = decode(&bytes).map_err(Error::Journal)?;
            effects.push(serde_json::json!({
                "id": item.effect_id,
                "kind": "call",
                "target": {"type": item.target.entity_type, "key": item.target.key},
                "command": item.command,
                "replyTo": item.reply_to.map(|r| serde_json::json!({
                    "command": r.command, "correlation": r.correlation,
                })),
                "createdMs": item.created_ms,
            }));
        } else if name.starts_with(cella_core::TIMER_PREFIX) {
            let timer: TimerRow = decode(&bytes).map_err(Error::Journal)?;
            timers.push(serde_json::json!({
                "name": timer.name,
                "dueMs": timer.due_ms,
                "everyMs": timer.every_ms,
                "command": timer.command,
                "fired": timer.fired,
            }));
        }
    }
    Ok((effects, timers))
}

/// `GET /v1/entities/{type}/{key}/journal?from=N&limit=N`.
pub(super) async fn journal(
    node: &Arc<Node>,
    params: &Params<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let (ty, key) = (params.decoded("type")?, params.decoded("key")?);
    node.authorize(&req, Action::Read(&ty))?;
    let from = u64_param(&req, "from", 1)?;
    let limit = u64_param(&req, "limit", 1000)?.min(10_000) as usize;
    let origin = Origin::of(&req, Via::Request);
    let id = EntityId::new(&ty, &key);
    dispatch(node, Target::Entity(&id), &origin, Bytes::new(), || async {
        let entries = node.entities.journal(&ty, &key, from, limit).await?;
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "type": ty, "key": key, "entries": entries }),
        ))
    })
    .await
}

/// Runs an entity command another node forwarded on its forwarding exchange (`path` is
/// `/v1/entities/{type}/{key}/{command}`). It runs here or is answered as not led here, never
/// forwarded again.
pub(crate) async fn forwarded_command(node: &Node, path: &str, body: Bytes) -> (StatusCode, Bytes) {
    let run = async {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let params = entity_command_path(path)
            .ok_or_else(|| Error::BadRequest(format!("`{path}` is not an entity command path")))?;
        let invocation = crate::effects::invocation_of_query(query);
        let (ty, key, command) = (
            params.decoded("type")?,
            params.decoded("key")?,
            params.decoded("command")?,
        );
        if body.len() > node.options.max_payload {
            return Err(Error::PayloadTooLarge {
                what: "the command payload",
                size: body.len() as u64,
                limit: node.options.max_payload as u64,
            });
        }
        let payload = command_payload(&body)?;
        run_command(node, &ty, &key, &command, payload, &invocation).await
    };
    let response = match run.await {
        Ok(response) => response,
        Err(e) => match answer_forwarded(&e) {
            Some(answer) => return answer,
            None => super::error_response(&e),
        },
    };
    let status = response.status();
    match response.into_body().collect().await {
        Ok(body) => (status, body.to_bytes()),
        Err(never) => match never {},
    }
}

/// Runs a command here, recording its outcome.
async fn run_command(
    node: &Node,
    ty: &str,
    key: &str,
    command: &str,
    payload: String,
    invocation: &Invocation,
) -> Result<Response<Body>> {
    let started = Instant::now();
    let result = node
        .entities
        .invoke(ty, key, command, payload, invocation)
        .await;
    let outcome = match &result {
        Ok(_) => Outcome::Ok,
        Err(Error::Rejected(_)) => Outcome::Rejected,
        // Not run here: routing runs it where it is led, and that node counts it.
        Err(Error::NotLeader { .. }) => return result.map(|_| Response::new(Body::default())),
        Err(_) => Outcome::Failed,
    };
    // Counted under its type only when the type exists: URLs do not make label sets.
    let typed = (!matches!(result, Err(Error::UnknownType(_)))).then_some(ty);
    node.metrics.command(typed, outcome, started.elapsed());
    Ok(text_response(StatusCode::OK, "application/json", result?))
}
