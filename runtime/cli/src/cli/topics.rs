//! The topic commands: `cella topics` (the cluster's topics and their subscribers as a table),
//! `cella publish TOPIC JSON` (prints the message's offset) and `cella follow TOPIC` (prints
//! each message as it arrives, `offset<TAB>json`, from a node's Server-Sent Events stream,
//! reconnecting after the last offset printed when the connection drops, until Ctrl-C).

use std::{fmt::Write as _, io::Write as _, time::Duration};

use anyhow::{Context, bail};
use hyper::Method;
use serde_json::Value;

use super::admin::finish;
use crate::client::{self, EventStream, Opened, encode_segment};

/// The pause before reconnecting a dropped stream grows to this.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// `cella topics [--json]`.
pub(super) async fn list(server: &str, json: bool) -> anyhow::Result<()> {
    let reply = client::send(server, Method::GET, "/v1/topics", Vec::new(), None).await?;
    if json || reply.status != 200 {
        return finish(reply);
    }
    let listing: Value = serde_json::from_str(&reply.body).context("the topic list is not JSON")?;
    print!("{}", table(&listing));
    let unreachable: Vec<String> = listing["unreachable"]
        .as_array()
        .into_iter()
        .flatten()
        .map(Value::to_string)
        .collect();
    if !unreachable.is_empty() {
        eprintln!(
            "warning: node(s) {} did not answer: the topics only they hold are missing, and the \
             others may be behind",
            unreachable.join(", ")
        );
    }
    Ok(())
}

/// The topic list as text: one line per topic, then one per further subscriber.
fn table(listing: &Value) -> String {
    let mut out = String::new();
    let topics = listing["topics"].as_array().cloned().unwrap_or_default();
    if topics.is_empty() {
        out.push_str("no topics\n");
        return out;
    }
    let width = topics
        .iter()
        .filter_map(|t| t["topic"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(0)
        .max(5);
    let _ = writeln!(
        out,
        "{:<width$}  {:>8} {:>8} {:>8}  SUBSCRIBERS",
        "TOPIC", "FIRST", "LAST", "LENGTH"
    );
    for topic in &topics {
        let subscribers: Vec<String> = topic["subscribers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(subscriber)
            .collect();
        let mut lines = subscribers.iter();
        let _ = writeln!(
            out,
            "{:<width$}  {:>8} {:>8} {:>8}  {}",
            topic["topic"].as_str().unwrap_or("?"),
            // A JSON value's Display ignores widths: format its text.
            topic["first"].to_string(),
            topic["last"].to_string(),
            topic["length"].to_string(),
            lines.next().map_or("-", String::as_str)
        );
        for more in lines {
            let _ = writeln!(out, "{:width$}  {:26}  {more}", "", "");
        }
    }
    out
}

/// One subscriber: `type.command (lag N, F failed)`, and its last failure if any.
fn subscriber(s: &Value) -> String {
    let mut text = format!(
        "{}.{} (lag {}, {} failed",
        s["type"].as_str().unwrap_or("?"),
        s["command"].as_str().unwrap_or("?"),
        s["lag"],
        s["failures"]
    );
    if let Some(failure) = s["lastFailure"].as_object() {
        let _ = write!(
            text,
            "; last at {}: {}",
            failure.get("offset").unwrap_or(&Value::Null),
            failure.get("reason").and_then(Value::as_str).unwrap_or("?")
        );
    }
    text.push(')');
    text
}

/// `cella publish TOPIC JSON [--idempotency-key K]`: prints the offset.
pub(super) async fn publish(
    server: &str,
    topic: &str,
    message: &str,
    idempotency_key: Option<&str>,
    token: Option<&str>,
) -> anyhow::Result<()> {
    if let Err(e) = serde_json::from_str::<Value>(message) {
        bail!(
            "the message is not JSON: {e}\nhint: quote it for the shell, e.g. \
             cella publish {topic} '{{\"id\": 1}}' (a string is '\"text\"')"
        );
    }
    let path = format!("/v1/topics/{}", encode_segment(topic));
    let headers: Vec<(&str, &str)> = idempotency_key
        .map(|k| ("idempotency-key", k))
        .into_iter()
        .collect();
    let reply = client::send_with_headers(
        server,
        Method::POST,
        &path,
        message.as_bytes().to_vec(),
        token,
        &headers,
    )
    .await?;
    if reply.status != 200 {
        return finish(reply);
    }
    let answer: Value = serde_json::from_str(&reply.body)
        .with_context(|| format!("the server's answer is not JSON: {}", reply.body))?;
    match answer["offset"].as_u64() {
        Some(offset) => println!("{offset}"),
        None => bail!("the server's answer names no offset: {}", reply.body),
    }
    Ok(())
}

/// `cella follow TOPIC [--from N]`: prints messages until Ctrl-C.
pub(super) async fn follow(server: &str, topic: &str, from: Option<u64>) -> anyhow::Result<()> {
    tokio::select! {
        followed = follow_until_error(server, topic, from) => followed,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Follows the topic, reconnecting after each dropped connection; ends only with an error the
/// server gave or a first connection that failed.
async fn follow_until_error(server: &str, topic: &str, from: Option<u64>) -> anyhow::Result<()> {
    let base = format!("/v1/topics/{}/events", encode_segment(topic));
    // The offset after which the next stream starts; `None`: from now on.
    let mut after: Option<u64> = from.map(|n| n.saturating_sub(1));
    let mut connected = false;
    let mut pause = Duration::from_millis(100);
    loop {
        let last = after.map(|a| a.to_string());
        let opened = match client::follow_events(server, &base, last.as_deref()).await {
            Ok(opened) => opened,
            Err(e) if connected => {
                eprintln!("reconnecting to {server}: {e}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut stream = match opened {
            Opened::Stream(stream) => stream,
            // No leader for the topic's partition right now: wait for one.
            Opened::Answer(reply) if reply.status == 503 && connected => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
                continue;
            }
            Opened::Answer(reply) => return finish(reply),
        };
        if after.is_none() {
            after = stream_start(&stream);
        }
        connected = true;
        pause = Duration::from_millis(100);
        match print_events(&mut stream, topic, &mut after).await {
            Ok(()) => eprintln!("the stream from {} ended; reconnecting", stream.server),
            Err(e) => eprintln!(
                "the stream from {} broke ({e}); reconnecting",
                stream.server
            ),
        }
    }
}

/// The offset a stream started after, from its `x-cella-after` header.
fn stream_start(stream: &EventStream) -> Option<u64> {
    stream
        .headers
        .get("x-cella-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Prints a stream's messages as `offset<TAB>json` until it ends, keeping `after` at the last
/// offset printed.
async fn print_events(
    stream: &mut EventStream,
    topic: &str,
    after: &mut Option<u64>,
) -> Result<(), client::Error> {
    let mut stdout = std::io::stdout();
    while let Some(event) = stream.next().await? {
        if event.event == "gap" {
            let gap: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            eprintln!(
                "warning: messages {} to {} of `{topic}` were removed by retention before they \
                 could be read",
                gap["from"], gap["to"]
            );
            if let Some(to) = gap["to"].as_u64() {
                *after = Some(to);
            }
            continue;
        }
        let Some(offset) = event.id.as_deref().and_then(|id| id.parse::<u64>().ok()) else {
            continue;
        };
        let _ = writeln!(stdout, "{offset}\t{}", event.data);
        let _ = stdout.flush();
        *after = Some(offset);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_table() {
        let listing = serde_json::json!({
            "topics": [
                {"topic": "orders", "first": 3, "last": 12, "length": 10, "subscribers": [
                    {"type": "audit", "command": "record", "key": {"fixed": "all"},
                     "delivered": 12, "failures": 0, "lag": 0, "lastFailure": null},
                    {"type": "shipping", "command": "on-order", "key": {"pointer": "/id"},
                     "delivered": 10, "failures": 1, "lag": 2,
                     "lastFailure": {"offset": 7, "key": "o7", "reason": "rejected: no"}},
                ]},
                {"topic": "t", "first": 0, "last": 0, "length": 0, "subscribers": []},
            ],
            "unreachable": [],
        });
        let text = table(&listing);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "TOPIC      FIRST     LAST   LENGTH  SUBSCRIBERS");
        assert_eq!(
            lines[1],
            "orders         3       12       10  audit.record (lag 0, 0 failed)"
        );
        assert!(
            lines[2].ends_with("shipping.on-order (lag 2, 1 failed; last at 7: rejected: no)"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("t  ") && lines[3].ends_with("  -"),
            "{text}"
        );
        assert_eq!(table(&serde_json::json!({"topics": []})), "no topics\n");
    }
}
