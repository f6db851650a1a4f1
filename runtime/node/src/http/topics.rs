//! The topic listing: `GET /v1/topics` and `GET /v1/topics/{topic}`, what the cluster knows of
//! its topics and of the subscriptions to them.
//!
//! A topic's entry is `{"topic", "first", "last", "length", "subscribers": [...]}`: the first
//! and last retained offsets and how many messages that is (all 0 for a topic with
//! subscriptions and no message yet), and per subscription (declared by an entity type's
//! module) `{"type", "command", "key": {"pointer": P} | {"fixed": K}, "delivered", "failures",
//! "lag", "lastFailure": {"offset", "key", "reason"} | null}` from its cursor.
//!
//! A node knows the topics whose partitions it holds a replica of (each replica has the log and
//! the cursors) and every subscription (modules are replicated to every node). So the answer
//! merges what every node knows: each is asked for its own view (`?local=true`, which is also
//! how to see one node's view), and of the entries for one topic the one with the highest
//! `last` wins (the most up-to-date replica). A node that cannot be asked leaves its part out;
//! the answer still comes, naming it in `"unreachable"`.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use cella_core::{Journal, RowTable, decode};
use cella_host::Subscription;
use hyper::{Method, Request, Response, StatusCode, body::Incoming};
use serde_json::{Value, json};

use super::{
    Params,
    body::{Body, encode_segment, json_response, query_param},
};
use crate::{
    entities::TOPIC_TYPE,
    error::{Error, Result},
    node::Node,
    topics::{Cursor, cursor_row, subscriptions, topic_entity},
};

/// How long another node may take to give its view.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);
/// Topic names read from the store at once.
const PAGE: usize = 1000;

/// `GET /v1/topics[?local=true]`: every topic, sorted by name.
pub(super) async fn list(node: &Arc<Node>, req: Request<Incoming>) -> Result<Response<Body>> {
    let mut view = local_view(node, None).await?;
    let mut unreachable = Vec::new();
    if !local(&req) {
        unreachable = merge_peers(node, "/v1/topics?local=true", &mut view).await;
    }
    let topics: Vec<Value> = view.into_values().collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "topics": topics, "unreachable": unreachable }),
    ))
}

/// `GET /v1/topics/{topic}[?local=true]`: one topic; 404 if it has neither messages nor
/// subscribers.
pub(super) async fn one(
    node: &Arc<Node>,
    params: &Params<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let topic = params.decoded("topic")?;
    cella_core::validate_name("topic", &topic)?;
    let mut view = local_view(node, Some(&topic)).await?;
    let mut unreachable = Vec::new();
    if !local(&req) {
        let path = format!("/v1/topics/{}?local=true", encode_segment(&topic));
        unreachable = merge_peers(node, &path, &mut view).await;
    }
    match view.remove(&topic) {
        Some(mut entry) if known(&entry) => {
            entry["unreachable"] = json!(unreachable);
            Ok(json_response(StatusCode::OK, &entry))
        }
        _ => Err(Error::NotFound(format!(
            "topic `{topic}` has no messages and no subscribers{}",
            if unreachable.is_empty() {
                String::new()
            } else {
                format!(" on the nodes that answered (unreachable: {unreachable:?})")
            }
        ))),
    }
}

/// Whether the request asks for this node's view only.
fn local<B>(req: &Request<B>) -> bool {
    query_param(req, "local").is_some_and(|v| v == "true" || v == "1")
}

/// Whether an entry names a topic that exists: it has messages or subscribers.
fn known(entry: &Value) -> bool {
    entry["last"].as_u64().is_some_and(|last| last > 0)
        || entry["subscribers"]
            .as_array()
            .is_some_and(|subscribers| !subscribers.is_empty())
}

/// What this node knows: the topics with a log here and those subscribed to (or only `only`),
/// by name.
async fn local_view(node: &Node, only: Option<&str>) -> Result<BTreeMap<String, Value>> {
    // What this node acknowledged (as a partition's leader) or knows to be committed is
    // applied to its store first, so a client sees its own publications.
    if let Some(cluster) = &node.cluster {
        let groups: Vec<_> = match only {
            Some(topic) => vec![cluster.partition_of(&topic_entity(topic))],
            None => cluster.placement().groups().collect(),
        };
        // One bound for all of them: a lagging replica delays the answer at most that long.
        let deadline = tokio::time::Instant::now() + super::follow::CATCH_UP;
        for group in groups.into_iter().filter_map(|g| cluster.group(g)) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            cluster.caught_up(group, left).await;
        }
    }
    let subscriptions = subscriptions(node).await;
    let mut names = BTreeSet::new();
    match only {
        Some(topic) => {
            names.insert(topic.to_string());
        }
        None => {
            let mut after: Option<String> = None;
            loop {
                let page = node.store.entity_keys(TOPIC_TYPE, after.as_deref(), PAGE)?;
                let Some(last) = page.last().cloned() else {
                    break;
                };
                names.extend(page);
                after = Some(last);
            }
            names.extend(subscriptions.iter().map(|(_, s)| s.topic.clone()));
        }
    }
    let mut view = BTreeMap::new();
    for name in names {
        let entry = topic_entry(node, &name, &subscriptions)?;
        view.insert(name, entry);
    }
    Ok(view)
}

/// One topic's entry as this node's store has it.
fn topic_entry(
    node: &Node,
    topic: &str,
    subscriptions: &[(String, Subscription)],
) -> Result<Value> {
    let id = topic_entity(topic);
    let first = node
        .store
        .read_journal(&id, 0, 1)?
        .first()
        .map_or(0, |e| e.seq);
    // The newest message is never trimmed; a topic without entries has had no message.
    let last = if first == 0 {
        0
    } else {
        node.store.load(&id)?.last_seq().max(first)
    };
    let length = if first == 0 { 0 } else { last - first + 1 };
    let mut subscribers = Vec::new();
    for (subscriber, s) in subscriptions.iter().filter(|(_, s)| s.topic == topic) {
        let row = cursor_row(subscriber, &s.command);
        let cursor: Cursor = match node.store.entity_row(&id, RowTable::Effects, &row)? {
            Some(bytes) => decode(&bytes)?,
            None => Cursor::default(),
        };
        // Trimmed messages are never delivered (the consumer counts them as failures).
        let lag = last.saturating_sub(cursor.delivered.max(first.saturating_sub(1)));
        let last_failure = cursor
            .last_failure
            .as_ref()
            .map(|(offset, key, reason)| json!({ "offset": offset, "key": key, "reason": reason }));
        subscribers.push(json!({
            "type": subscriber,
            "command": s.command,
            "key": serde_json::to_value(&s.key).map_err(|e| Error::Internal(e.to_string()))?,
            "delivered": cursor.delivered,
            "failures": cursor.failures,
            "lag": lag,
            "lastFailure": last_failure,
        }));
    }
    Ok(json!({
        "topic": topic,
        "first": first,
        "last": last,
        "length": length,
        "subscribers": subscribers,
    }))
}

/// Asks every other node for its view at `path` and merges it into `view`; the ids of the
/// nodes that could not be asked.
async fn merge_peers(node: &Node, path: &str, view: &mut BTreeMap<String, Value>) -> Vec<u64> {
    let Some(cluster) = &node.cluster else {
        return Vec::new();
    };
    let me = cluster.node_id();
    let asked: Vec<_> = cluster
        .nodes()
        .into_iter()
        .filter(|(id, _)| *id != me)
        .map(|(id, addr)| {
            let client = cluster.client().clone();
            let path = path.to_string();
            let reply = tokio::spawn(async move {
                client
                    .send(&addr, Method::GET, &path, &[], Bytes::new(), PEER_TIMEOUT)
                    .await
            });
            (id, reply)
        })
        .collect();
    let mut unreachable = Vec::new();
    for (id, reply) in asked {
        let reply = match reply.await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                tracing::debug!("asking node {id} for its topics: {e}");
                unreachable.push(id);
                continue;
            }
            Err(e) => {
                tracing::warn!("asking node {id} for its topics: {e}");
                unreachable.push(id);
                continue;
            }
        };
        // 404: the node knows nothing of the one topic asked for.
        if reply.status == StatusCode::NOT_FOUND {
            continue;
        }
        let parsed: Option<Value> = (reply.status == StatusCode::OK)
            .then(|| serde_json::from_slice(&reply.body).ok())
            .flatten();
        let Some(answer) = parsed else {
            tracing::debug!("node {id} answered {} for its topics", reply.status);
            unreachable.push(id);
            continue;
        };
        let entries = match answer.get("topics").and_then(Value::as_array) {
            Some(list) => list.clone(),
            None => vec![answer],
        };
        for entry in entries {
            merge(view, entry);
        }
    }
    unreachable
}

/// Keeps the more up-to-date of `entry` and the entry of the same topic in `view`: the one
/// with the higher `last`, then with more delivered.
fn merge(view: &mut BTreeMap<String, Value>, mut entry: Value) {
    let Some(topic) = entry["topic"].as_str().map(String::from) else {
        return;
    };
    if let Some(map) = entry.as_object_mut() {
        map.remove("unreachable");
    }
    let rank = |e: &Value| {
        let delivered: u64 = e["subscribers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["delivered"].as_u64())
            .sum();
        (e["last"].as_u64().unwrap_or(0), delivered)
    };
    match view.get(&topic) {
        Some(have) if rank(have) >= rank(&entry) => {}
        _ => {
            view.insert(topic, entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_up_to_date_entry_wins() {
        let entry = |last: u64, delivered: u64| {
            json!({"topic": "t", "first": 1, "last": last, "length": last,
                   "subscribers": [{"type": "s", "delivered": delivered}]})
        };
        let mut view = BTreeMap::new();
        merge(&mut view, entry(3, 1));
        merge(&mut view, entry(5, 0));
        merge(&mut view, entry(4, 4));
        assert_eq!(view["t"]["last"], 5);
        merge(&mut view, entry(5, 2));
        assert_eq!(view["t"]["subscribers"][0]["delivered"], 2);
        merge(&mut view, json!({"no": "topic"}));
        assert_eq!(view.len(), 1);
    }

    #[test]
    fn a_topic_is_known_by_messages_or_subscribers() {
        assert!(!known(&json!({"topic": "t", "last": 0, "subscribers": []})));
        assert!(known(&json!({"topic": "t", "last": 2, "subscribers": []})));
        assert!(known(
            &json!({"topic": "t", "last": 0, "subscribers": [{"type": "s"}]})
        ));
    }
}
