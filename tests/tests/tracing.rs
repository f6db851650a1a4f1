//! Traces and logs: a command sent with a W3C `traceparent` to a node that does not lead its
//! entity is one trace across the nodes (the receiving node's request and forward spans, the
//! leader's forwarded-command, guest-call and raft-commit spans) and into the call it makes
//! (the effect delivery's span), and a timer firing and a topic message's delivery each trace
//! the command they run, exported over OTLP/HTTP to a collector the test runs on 127.0.0.1;
//! `--log-format json` writes only JSON lines; a fresh node's start says where it listens and
//! warns of nothing, and a node stopped as it starts stops cleanly.

use std::{
    collections::HashMap,
    convert::Infallible,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use cella_tests::{
    cella_bin,
    cluster::{groups, has_modules, leaders, start_cluster},
    component, post_with_headers, wait_until,
};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value,
};
use prost::Message;
use serde_json::{Value, json};

/// One span as a collector received it.
#[derive(Clone, Debug)]
struct Received {
    node: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    /// The `http.route` attribute, if any.
    route: String,
}

/// An OTLP/HTTP (protobuf) trace receiver on 127.0.0.1 that keeps every span it is sent.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| receive(req, kept.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Collector { url, spans, task }
    }

    /// Every span received so far.
    fn all(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of trace `trace_id` received so far.
    fn trace(&self, trace_id: &str) -> Vec<Received> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `POST /v1/traces`: decodes the export request and keeps its spans.
async fn receive(
    req: Request<Incoming>,
    spans: Arc<Mutex<Vec<Received>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let status = match (path.as_str(), body) {
        ("/v1/traces", Ok(body)) => match ExportTraceServiceRequest::decode(body) {
            Ok(export) => {
                keep(export, &spans);
                200
            }
            Err(_) => 400,
        },
        _ => 404,
    };
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    Ok(response)
}

fn keep(export: ExportTraceServiceRequest, spans: &Mutex<Vec<Received>>) {
    let mut spans = spans.lock().unwrap();
    for resource_spans in export.resource_spans {
        let node = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.instance.id")
            .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            spans.push(Received {
                node: node.clone(),
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent: hex(&span.parent_span_id),
                route: span
                    .attributes
                    .iter()
                    .find(|a| a.key == "http.route")
                    .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                        any_value::Value::StringValue(s) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_default(),
            });
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The span named `name` from `node` among `spans`, if any.
fn find<'a>(spans: &'a [Received], node: &str, name: &str) -> Option<&'a Received> {
    spans.iter().find(|s| s.node == node && s.name == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_command_and_its_call_are_one_trace_across_nodes() {
    let collector = Collector::start().await;
    let root = tempfile::tempdir().unwrap();
    const PARTITIONS: u32 = 2;
    let nodes = start_cluster(
        root.path(),
        3,
        PARTITIONS,
        &["--otlp-endpoint", &collector.url],
    )
    .await;
    let r = nodes[0].deploy("tck-value", &component("tck-value")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    for node in &nodes {
        let loaded = wait_until(Duration::from_secs(30), || {
            has_modules(node, &["tck-value"])
        });
        assert!(loaded.await, "tck-value did not reach {}", node.url);
    }
    // A key whose partition node 1 does not lead: node 1 forwards the command.
    let led = leaders(&nodes[0]).await;
    let placement = cella_cluster::Placement {
        partitions: PARTITIONS,
        ..Default::default()
    };
    let (key, leader) = (0..1000)
        .map(|k| format!("source{k}"))
        .find_map(|k| {
            let group = placement.partition(&cella_core::EntityId::new("tck-value", &k));
            let leader = *led.get(&group)?;
            (leader != 1).then_some((k, leader))
        })
        .expect("a partition led by node 2 or 3");
    let leader = leader.to_string();
    // The command calls another entity: an effect, delivered after the reply.
    let body = json!({"actions": [
        {"append": "ran,"},
        {"call": {"type": "tck-value", "key": "target", "command": "process",
            "payload": {"actions": [{"append": "called;"}]}}},
        {"schedule": {"name": "soon", "delayMs": 0, "command": "process",
            "payload": {"actions": [{"append": "fired;"}]}}},
    ]})
    .to_string();
    let traceparent = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let (status, answer) = post_with_headers(
        &nodes[0].addr(),
        &format!("/v1/entities/tck-value/{key}/process"),
        &body,
        &[("traceparent", &traceparent)],
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    // Spans arrive in batches: wait until the whole path, the delivery included, has come.
    let complete = wait_until(Duration::from_secs(60), || async {
        let spans = collector.trace(TRACE);
        let delivered = spans
            .iter()
            .find(|s| s.name == "effect.deliver")
            .is_some_and(|d| spans.iter().any(|s| s.parent == d.span_id));
        find(&spans, "1", "forward").is_some()
            && find(&spans, &leader, "raft.commit").is_some()
            && delivered
    })
    .await;
    let spans = collector.trace(TRACE);
    let shown = format!("{spans:#?}");
    assert!(complete, "the trace did not arrive whole: {shown}");

    // Node 1: the request continues the client's span, and forwards.
    let request = find(&spans, "1", "http.request").expect(&shown);
    assert_eq!(request.parent, CLIENT_SPAN, "{shown}");
    assert_eq!(
        request.route, "/v1/entities/{type}/{key}/{command}",
        "{shown}"
    );
    let forward = find(&spans, "1", "forward").expect(&shown);
    assert_eq!(forward.parent, request.span_id, "{shown}");
    // The leader: the forwarded command, a child of node 1's forward; the guest call and the
    // raft commit within it.
    let command = find(&spans, &leader, "forwarded.command").expect(&shown);
    assert_eq!(command.parent, forward.span_id, "{shown}");
    let guest = spans
        .iter()
        .find(|s| s.node == leader && s.name == "guest.call" && s.parent == command.span_id)
        .expect(&shown);
    assert_eq!(guest.trace_id, TRACE);
    let commit = find(&spans, &leader, "raft.commit").expect(&shown);
    assert_eq!(commit.parent, command.span_id, "{shown}");
    // The call it made is delivered later, in the same trace, from the command's span.
    let deliver = find(&spans, &leader, "effect.deliver").expect(&shown);
    assert_eq!(deliver.parent, command.span_id, "{shown}");
    // Its target's command runs in it: here (a guest call) or on the target's leader (a
    // forwarded command, parented across nodes again).
    assert!(
        spans.iter().any(|s| s.parent == deliver.span_id
            && (s.name == "guest.call" || s.name == "forwarded.command")),
        "the delivery ran the target's command or forwarded it: {shown}"
    );

    // A timer firing and a topic message's delivery each start a trace of their own, in which
    // the command they run is traced.
    let (status, answer) = post_with_headers(
        &nodes[2].addr(),
        "/v1/topics/tck-news",
        r#"{"to": "reader", "text": "hello"}"#,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let ran_in = |spans: &[Received], name: &str| {
        spans.iter().any(|root| {
            root.name == name
                && root.parent.chars().all(|c| c == '0')
                && spans.iter().any(|s| {
                    s.parent == root.span_id
                        && (s.name == "guest.call" || s.name == "forwarded.command")
                })
        })
    };
    let both = wait_until(Duration::from_secs(60), || async {
        let spans = collector.all();
        ran_in(&spans, "timer.fire") && ran_in(&spans, "topic.deliver")
    })
    .await;
    assert!(
        both,
        "no timer firing or topic delivery ran its command in a trace: {:#?}",
        collector.all()
    );
}

/// Spawns `cella serve` on a fresh data directory with `extra` flags, stderr piped; returns
/// the child and its address once it says where it listens.
fn spawn_node(data_dir: &std::path::Path, extra: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(cella_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env_remove("CELLA_LOG")
        .env_remove("CELLA_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cella serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        for _ in lines {}
    });
    let first = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the node reports its address");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("an address")
        .to_string();
    (child, url)
}

/// Waits until every raft group of the node at `url` has a leader (openraft's start-up
/// messages come before), then stops it with SIGTERM and returns its stderr.
async fn settle_and_stop(mut child: std::process::Child, url: &str) -> String {
    let elected = wait_until(Duration::from_secs(30), || async {
        let Ok(reply) =
            cella_cli::client::send(url, Method::GET, "/v1/cluster", Vec::new(), None).await
        else {
            return false;
        };
        let status: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        let groups = groups(&status);
        !groups.is_empty() && groups.values().all(|g| g["leader"].as_u64().is_some())
    })
    .await;
    assert!(elected, "the node's groups did not elect leaders");
    terminate(&mut child).0
}

/// SIGTERMs the node and returns its stderr and how it exited.
fn terminate(child: &mut std::process::Child) -> (String, std::process::ExitStatus) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let _ = child.kill();
    (stderr, child.wait().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_writes_only_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (child, url) = spawn_node(dir.path(), &["--log-format", "json"]);
    let stderr = settle_and_stop(child, &url).await;
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log line at all");
    let mut messages = Vec::new();
    for line in &lines {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a stderr line is not JSON ({e}): {line}\n{stderr}"));
        let level = event["level"].as_str().unwrap_or_default();
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&level),
            "no level: {line}"
        );
        let message = event["message"].as_str().expect(line);
        messages.push(message.to_string());
    }
    assert!(
        messages.iter().any(|m| m == &format!("listening on {url}")),
        "{messages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_node_starts_quietly_and_says_where_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let (child, url) = spawn_node(dir.path(), &[]);
    let stderr = settle_and_stop(child, &url).await;
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert!(warnings.is_empty(), "warnings at start: {warnings:#?}");
    let facts: HashMap<&str, &str> = stderr
        .lines()
        .filter_map(|l| l.split_once("cella::serve: "))
        .filter_map(|(_, fact)| fact.split_once(": ").or(Some((fact, ""))))
        .collect();
    assert!(
        stderr.contains(&format!("listening on {url}")),
        "no address line: {stderr}"
    );
    for fact in [
        "data directory",
        "partitions",
        "modules",
        "security",
        "console",
    ] {
        assert!(facts.contains_key(fact), "no `{fact}` line: {stderr}");
    }
}

/// A node stopped the moment it prints its address (before it has logged its start) still
/// stops cleanly and says so: its signal handlers are installed before the address is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_as_it_prints_its_address_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _url) = spawn_node(dir.path(), &[]);
    let (stderr, status) = terminate(&mut child);
    assert!(status.success(), "exit {status}: {stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
}
