//! Carrying out one call: running a command at its entity wherever that entity is led (here,
//! or on the leader through the forwarding exchange), under a request id so that a redelivery
//! is answered from the target's record instead of running twice; and classifying the answer
//! as final (a reply, or a failure that is the entity's own answer) or worth another try.

use bytes::Bytes;
use cella_core::{EntityId, Recorded, encode_segment};
use hyper::StatusCode;

use crate::{
    entities::{Invocation, recorded_failure},
    error::Error,
    node::Node,
    routing::{Leader, NOT_LEADER_STATUS, Target},
};

/// How long one forwarded delivery may take.
const DELIVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What one attempt gave.
pub(crate) enum Attempt {
    /// The command's final outcome.
    Done(Recorded),
    /// Try again later (no leader, unreachable, storage): why.
    Retry(String),
}

/// The path (and query) of a delivered command on the forwarding exchange.
pub(crate) fn delivery_path(target: &EntityId, command: &str, invocation: &Invocation) -> String {
    let mut path = format!(
        "/v1/entities/{}/{}/{}",
        encode_segment(&target.entity_type),
        encode_segment(&target.key),
        encode_segment(command)
    );
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(id) = &invocation.request_id {
        query.append_pair("request", id);
    }
    if let Some(c) = &invocation.correlation {
        query.append_pair("correlation", c);
    }
    if let Some(m) = &invocation.message {
        query.append_pair("topic", &m.topic);
        query.append_pair("offset", &m.offset.to_string());
    }
    let query = query.finish();
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query);
    }
    path
}

/// The invocation a forwarded command's query carries (see [`delivery_path`]).
pub(crate) fn invocation_of_query(query: &str) -> Invocation {
    let mut invocation = Invocation::default();
    let (mut topic, mut offset) = (None, None);
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "request" => invocation.request_id = Some(value.into_owned()),
            "correlation" => invocation.correlation = Some(value.into_owned()),
            "topic" => topic = Some(value.into_owned()),
            "offset" => offset = value.parse().ok(),
            _ => {}
        }
    }
    if let (Some(topic), Some(offset)) = (topic, offset) {
        invocation.message = Some(cella_host::TopicMessage { topic, offset });
    }
    invocation
}

/// Runs `command` at `target` once.
pub(crate) async fn attempt(
    node: &Node,
    target: &EntityId,
    command: &str,
    payload: &str,
    invocation: &Invocation,
) -> Attempt {
    let leader = match node.leader(Target::Entity(target)) {
        Ok(leader) => leader,
        Err(e) => return classify(e),
    };
    match leader {
        Leader::Here => match node
            .entities
            .invoke(
                &target.entity_type,
                &target.key,
                command,
                payload.to_string(),
                invocation,
            )
            .await
        {
            Ok(reply) => Attempt::Done(Recorded::Ok(reply)),
            Err(e) => classify(e),
        },
        Leader::Unknown => Attempt::Retry(format!("{target}'s partition has no leader")),
        Leader::At(addr) => {
            let Some(cluster) = &node.cluster else {
                return Attempt::Retry("no cluster to forward on".into());
            };
            let path = delivery_path(target, command, invocation);
            let sent = cluster
                .client()
                .forward_traced(
                    &addr,
                    &path,
                    Bytes::from(payload.to_string()),
                    crate::trace::current(),
                    DELIVERY_TIMEOUT,
                )
                .await;
            match sent {
                Ok(reply) if reply.status == StatusCode::OK => {
                    match String::from_utf8(reply.body.to_vec()) {
                        Ok(body) => Attempt::Done(Recorded::Ok(body)),
                        Err(_) => Attempt::Done(Recorded::Err {
                            code: "failed".into(),
                            message: "the reply is not UTF-8".into(),
                        }),
                    }
                }
                Ok(reply) if reply.status == NOT_LEADER_STATUS => {
                    Attempt::Retry(format!("{addr} no longer leads {target}'s partition"))
                }
                Ok(reply) => remote_failure(reply.status.as_u16(), &reply.body),
                Err(e) => Attempt::Retry(format!("forwarding to {addr}: {e}")),
            }
        }
    }
}

/// A local error as an attempt's outcome.
fn classify(error: Error) -> Attempt {
    match recorded_failure(&error) {
        Some(recorded) => Attempt::Done(recorded),
        None => Attempt::Retry(error.to_string()),
    }
}

/// A remote node's error answer as an attempt's outcome.
fn remote_failure(status: u16, body: &[u8]) -> Attempt {
    let parsed: Option<(String, String)> = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            Some((
                e.get("code")?.as_str()?.to_string(),
                e.get("message")?.as_str()?.to_string(),
            ))
        });
    let Some((code, message)) = parsed else {
        return Attempt::Retry(format!("answered {status}"));
    };
    let code = match code.as_str() {
        "rejected" | "bad_request" | "unknown_command" | "unknown_type" => code,
        "entity_failed" | "deadline_exceeded" => "failed".to_string(),
        _ => return Attempt::Retry(format!("answered {status} {code}: {message}")),
    };
    Attempt::Done(Recorded::Err { code, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_round_trip() {
        let invocation = Invocation {
            request_id: Some("e/a/b c/1.0".into()),
            correlation: Some("x&y=z".into()),
            timer: None,
            message: Some(cella_host::TopicMessage {
                topic: "news/&".into(),
                offset: 7,
            }),
            consistency: cella_host::Consistency::Local,
        };
        let path = delivery_path(&EntityId::new("t", "k/1"), "go", &invocation);
        let (path, query) = path.split_once('?').unwrap();
        assert_eq!(path, "/v1/entities/t/k%2F1/go");
        assert_eq!(invocation_of_query(query), invocation);
    }

    #[test]
    fn remote_failures_are_final_only_when_the_entity_answered() {
        let body = br#"{"error":{"code":"rejected","message":"no"}}"#;
        assert!(matches!(
            remote_failure(400, body),
            Attempt::Done(Recorded::Err { code, .. }) if code == "rejected"
        ));
        let body = br#"{"error":{"code":"unavailable","message":"later"}}"#;
        assert!(matches!(remote_failure(503, body), Attempt::Retry(_)));
        assert!(matches!(remote_failure(502, b"junk"), Attempt::Retry(_)));
    }
}
