//! The node's OpenAPI document against a real node: `GET /v1/openapi.json` is OpenAPI 3.1
//! shaped (every component schema a valid JSON Schema 2020-12), and real answers — a command's
//! reply, a state, a journal, an entity listing, the modules, a deploy, errors (404 unknown type,
//! 400 bad body, 400 invalid component, 404 unknown topic), the cluster's status, the topics, a
//! publish, the audit trail, health and an event stream's head — carry a status and content type
//! the document declares for their operation, and validate against its schema for them. A
//! wrong answer is refused by the same check, so the validation is not vacuous.

use std::time::Duration;

use bytes::Bytes;
use cella_tests::{TestNode, component};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use serde_json::{Value, json};

/// How long one request may take.
const WAIT: Duration = Duration::from_secs(30);

/// An answer with its content type.
struct Answer {
    status: u16,
    content_type: String,
    json: Value,
}

/// Sends one request and reads the answer's head; the body too unless
/// it is an event stream, which never ends.
async fn send(node: &TestNode, method: Method, path: &str, body: &[u8]) -> Answer {
    let run = async {
        let stream = tokio::net::TcpStream::connect(node.addr()).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        let connection = tokio::spawn(conn);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", node.addr())
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let json = if content_type.starts_with("text/event-stream") {
            Value::Null
        } else {
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        connection.abort();
        Answer {
            status,
            content_type,
            json,
        }
    };
    tokio::time::timeout(WAIT, run)
        .await
        .unwrap_or_else(|_| panic!("{path}: no answer within {WAIT:?}"))
}

/// The document, and checks of answers against it.
struct Api {
    doc: Value,
}

impl Api {
    /// Follows a local `$ref`.
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(r) => self
                .doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("`{r}` does not resolve")),
            None => value,
        }
    }

    /// A validator for `schema`, a schema inside the document: its `$ref`s resolve against the
    /// document's components, carried along in the root.
    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("{schema}: {e}"))
    }

    /// The schema the document gives for `status` of `method template`, for `content_type`.
    fn schema(&self, method: &str, template: &str, status: u16, content_type: &str) -> &Value {
        let operation = &self.doc["paths"][template][method];
        assert!(
            operation.is_object(),
            "{method} {template} is not in the document"
        );
        let response = self.resolve(&operation["responses"][status.to_string()]);
        assert!(
            response.is_object(),
            "{method} {template} answered {status}, which the document does not declare"
        );
        let media = content_type.split(';').next().unwrap_or_default().trim();
        let content = response["content"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {template} {status} declares no content"));
        let (_, declared) = content
            .iter()
            .find(|(m, _)| m.split(';').next().unwrap_or_default().trim() == media)
            .unwrap_or_else(|| {
                panic!("{method} {template} {status}: content type {content_type} not declared")
            });
        &declared["schema"]
    }

    /// Checks an answer to `method template` against the document.
    fn check(&self, method: &str, template: &str, answer: &Answer) {
        let schema = self.schema(method, template, answer.status, &answer.content_type);
        if !answer.content_type.starts_with("application/json") {
            return;
        }
        let validator = self.validator(schema);
        let errors: Vec<String> = validator
            .iter_errors(&answer.json)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {template} {}: {} does not match the document: {errors:#?}",
            answer.status,
            answer.json
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_the_nodes_answers() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]).unwrap();

    // The document itself: OpenAPI 3.1, paths with operations, schemas of JSON Schema 2020-12.
    let served = send(&node, Method::GET, "/v1/openapi.json", b"").await;
    assert_eq!(served.status, 200);
    assert!(served.content_type.starts_with("application/json"));
    let doc = served.json;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() > 20, "{} paths", paths.len());
    for (path, item) in paths {
        assert!(path.starts_with('/'), "{path}");
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path}");
            for (status, response) in responses {
                assert!(
                    status.len() == 3 || status == "default",
                    "{method} {path} {status}"
                );
                assert!(response.is_object(), "{method} {path} {status}");
            }
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let parameter = match parameter.get("$ref").and_then(Value::as_str) {
                    Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap(),
                    None => parameter,
                };
                let place = parameter["in"].as_str().unwrap();
                assert!(
                    ["path", "query", "header"].contains(&place),
                    "{method} {path}"
                );
                assert!(parameter["name"].is_string() && parameter["schema"].is_object());
                if place == "path" {
                    assert_eq!(parameter["required"], true, "{method} {path}");
                }
            }
        }
    }
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        let mut schema = schema.clone();
        schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        if let Err(e) = jsonschema::meta::validate(&schema) {
            panic!("components/schemas/{name} is not JSON Schema 2020-12: {e}");
        }
    }
    let api = Api { doc };

    // Health, and the modules before and after a deploy.
    let health = send(&node, Method::GET, "/healthz", b"").await;
    api.check("get", "/healthz", &health);
    let none = send(&node, Method::GET, "/v1/modules", b"").await;
    api.check("get", "/v1/modules", &none);
    let wasm = std::fs::read(component("counter")).unwrap();
    let deployed = send(&node, Method::PUT, "/v1/modules/counter", &wasm).await;
    assert_eq!(deployed.status, 201, "{}", deployed.json);
    api.check("put", "/v1/modules/{type}", &deployed);
    let invalid = send(&node, Method::PUT, "/v1/modules/broken", b"not wasm").await;
    assert_eq!(invalid.status, 400);
    assert_eq!(invalid.json["error"]["code"], "invalid_component");
    api.check("put", "/v1/modules/{type}", &invalid);
    let modules = send(&node, Method::GET, "/v1/modules", b"").await;
    assert_eq!(modules.json["modules"][0]["type"], "counter");
    api.check("get", "/v1/modules", &modules);
    let module = send(&node, Method::GET, "/v1/modules/counter", b"").await;
    api.check("get", "/v1/modules/{type}", &module);

    // Entities: a command's reply, the state, the journal, the listing, and errors.
    let command = "/v1/entities/{type}/{key}/{command}";
    let reply = send(&node, Method::POST, "/v1/entities/counter/alice/add", b"5").await;
    assert_eq!((reply.status, &reply.json), (200, &json!(5)));
    api.check("post", command, &reply);
    let state = send(&node, Method::GET, "/v1/entities/counter/alice", b"").await;
    assert_eq!(state.json["sequence"], 1);
    api.check("get", "/v1/entities/{type}/{key}", &state);
    let journal = send(
        &node,
        Method::GET,
        "/v1/entities/counter/alice/journal",
        b"",
    )
    .await;
    assert_eq!(journal.json["entries"].as_array().unwrap().len(), 1);
    api.check("get", "/v1/entities/{type}/{key}/journal", &journal);
    let listing = send(&node, Method::GET, "/v1/entities/counter?limit=10", b"").await;
    assert_eq!(
        listing.json["entities"][0]["key"], "alice",
        "{}",
        listing.json
    );
    api.check("get", "/v1/entities/{type}", &listing);
    let bad_limit = send(&node, Method::GET, "/v1/entities/counter?limit=0", b"").await;
    assert_eq!(bad_limit.status, 400);
    api.check("get", "/v1/entities/{type}", &bad_limit);
    let unknown = send(&node, Method::POST, "/v1/entities/nope/k/add", b"1").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json["error"]["code"], "unknown_type");
    api.check("post", command, &unknown);
    let bad_body = send(
        &node,
        Method::POST,
        "/v1/entities/counter/alice/add",
        b"{nope",
    )
    .await;
    assert_eq!(bad_body.status, 400);
    assert_eq!(bad_body.json["error"]["code"], "bad_request");
    api.check("post", command, &bad_body);

    // Cluster, topics and the audit trail.
    let cluster = send(&node, Method::GET, "/v1/cluster", b"").await;
    assert_eq!(cluster.status, 200);
    api.check("get", "/v1/cluster", &cluster);
    let loads = send(&node, Method::GET, "/v1/cluster?load=true", b"").await;
    assert_eq!(loads.json["loads"][0]["node"], 1, "{}", loads.json);
    api.check("get", "/v1/cluster", &loads);
    let plan = send(
        &node,
        Method::POST,
        "/v1/cluster/rebalance?dry-run=true",
        b"",
    )
    .await;
    assert_eq!(plan.status, 200, "{}", plan.json);
    assert_eq!(plan.json["plan"]["move"], serde_json::Value::Null);
    api.check("post", "/v1/cluster/rebalance", &plan);
    let bad = send(
        &node,
        Method::POST,
        "/v1/cluster/rebalance",
        br#"{"partition": 99, "node": 1}"#,
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.json);
    api.check("post", "/v1/cluster/rebalance", &bad);
    let published = send(&node, Method::POST, "/v1/topics/news", br#"{"n": 1}"#).await;
    assert_eq!(published.json["offset"], 1, "{}", published.json);
    api.check("post", "/v1/topics/{topic}", &published);
    let topics = send(&node, Method::GET, "/v1/topics", b"").await;
    assert_eq!(topics.json["topics"][0]["topic"], "news");
    api.check("get", "/v1/topics", &topics);
    let topic = send(&node, Method::GET, "/v1/topics/news", b"").await;
    api.check("get", "/v1/topics/{topic}", &topic);
    let no_topic = send(&node, Method::GET, "/v1/topics/quiet", b"").await;
    assert_eq!(no_topic.status, 404);
    api.check("get", "/v1/topics/{topic}", &no_topic);
    let events = send(&node, Method::GET, "/v1/topics/news/events?after=0", b"").await;
    assert_eq!(events.status, 200);
    api.check("get", "/v1/topics/{topic}/events", &events);
    let audit = send(&node, Method::GET, "/v1/audit", b"").await;
    assert_eq!(audit.json["records"][0]["action"], "deploy");
    api.check("get", "/v1/audit", &audit);

    // The same check refuses what the document does not describe.
    let schema = api.schema("get", "/v1/entities/{type}/{key}", 200, "application/json");
    let mut wrong = state.json.clone();
    wrong["sequence"] = json!("one");
    assert!(!api.validator(schema).is_valid(&wrong));
    let schema = api.schema("post", command, 404, "application/json");
    let other_code = json!({"error": {"code": "rejected", "message": "no"}});
    assert!(!api.validator(schema).is_valid(&other_code));
}
