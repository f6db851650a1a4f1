//! The commands that talk to a running node over HTTP — `deploy` (and `deploy --check`),
//! `rollback`, `call`, `inspect`, `modules` and `cluster add-node|remove-node|status` — and the
//! output they make of its answers: on a terminal, tables and summaries ([`super::views`]),
//! otherwise pretty JSON; a check report; the node's JSON errors as errors; and a spinner on
//! stderr while a deploy or a check runs (on a terminal).

use std::path::Path;

use anyhow::{Context, bail};
use hyper::Method;

use super::{EXIT_CHECK_FAILED, ExitWith, output, views};
use crate::client::{self, encode_segment};

/// The scheduling limits `cella deploy` sets for the type (kept across versions; a limit not
/// given keeps its value, else the node's default).
#[derive(clap::Args, Debug, Default)]
pub(super) struct LimitArgs {
    /// Longest one guest call of the type may run, in milliseconds (at most the node's
    /// `--deadline-ms`); also how long a command waits for a slot before a 429.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    deadline_ms: Option<u64>,
    /// Most guest calls of the type running at once on a node.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrent: Option<u32>,
    /// The type's weight in the fair sharing of a node's guest execution (default 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    cpu_share: Option<u32>,
}

/// The path of `PUT /v1/modules/{name}` with `check` and the limits as query parameters.
pub(super) fn deploy_path(name: &str, check: bool, limits: &LimitArgs) -> String {
    let mut query = Vec::new();
    if check {
        query.push("check=true".to_string());
    }
    for (key, value) in [
        ("deadline-ms", limits.deadline_ms),
        ("max-concurrent", limits.max_concurrent.map(u64::from)),
        ("cpu-share", limits.cpu_share.map(u64::from)),
    ] {
        if let Some(v) = value {
            query.push(format!("{key}={v}"));
        }
    }
    let mut path = format!("/v1/modules/{}", encode_segment(name));
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    path
}

/// `cella deploy FILE --name TYPE [--check] [limits]`: uploads a component to `path` (from
/// [`deploy_path`]), or with `check=true` only replays the existing entities through it.
pub(super) async fn deploy(
    server: &str,
    file: &Path,
    name: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let check = path.contains("check=true");
    let bytes = std::fs::read(file).with_context(|| {
        format!(
            "cannot read {}\nhint: build the component first (`cella build` in the entity crate)",
            file.display()
        )
    })?;
    let size = bytes.len();
    let spinner = output::spinner(if check {
        format!(
            "replaying the entities of `{name}` through {}",
            file.display()
        )
    } else {
        format!("deploying {} ({size} bytes) as `{name}`", file.display())
    });
    let reply = client::send(server, Method::PUT, path, bytes, token).await;
    output::done(spinner);
    let reply = reply?;
    if check && (200..300).contains(&reply.status) {
        return check_summary(name, &reply.body);
    }
    print_warnings(&reply.body);
    finish(reply)
}

/// `cella rollback TYPE [--to VERSION]`.
pub(super) async fn rollback(
    server: &str,
    entity_type: &str,
    to: Option<u32>,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let body = match to {
        Some(version) => serde_json::json!({ "version": version }).to_string(),
        None => String::new(),
    };
    let path = format!("/v1/modules/{}/rollback", encode_segment(entity_type));
    finish(client::send(server, Method::POST, &path, body.into_bytes(), token).await?)
}

/// `cella call TYPE/KEY COMMAND [JSON]`.
pub(super) async fn call(
    server: &str,
    entity: &str,
    command: &str,
    payload: Option<String>,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let (ty, key) = split_entity(entity)?;
    let body = payload.unwrap_or_default().into_bytes();
    let path = format!(
        "/v1/entities/{}/{}/{}",
        encode_segment(ty),
        encode_segment(key),
        encode_segment(command)
    );
    finish(client::send(server, Method::POST, &path, body, token).await?)
}

/// `cella inspect TYPE/KEY [--journal]`: a summary and tables on a terminal, else the JSON.
pub(super) async fn inspect(
    server: &str,
    entity: &str,
    journal: bool,
    format: Format,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let (ty, key) = split_entity(entity)?;
    let mut path = format!(
        "/v1/entities/{}/{}",
        encode_segment(ty),
        encode_segment(key)
    );
    if journal {
        path.push_str("/journal");
    }
    let reply = client::send(server, Method::GET, &path, Vec::new(), token).await?;
    let view = if journal {
        views::journal
    } else {
        views::entity
    };
    show(reply, format, view)
}

/// `cella modules`: a table on a terminal, else the JSON.
pub(super) async fn modules(server: &str, format: Format) -> anyhow::Result<()> {
    let reply = client::send(server, Method::GET, "/v1/modules", Vec::new(), None).await?;
    show(reply, format, views::modules)
}

/// How a command was asked to print (`--json`, `--table`).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Format {
    pub json: bool,
    pub table: bool,
}

/// Prints a successful answer with `view` when it is for people ([`output::for_people`]),
/// otherwise as [`finish`] does.
pub(super) fn show(
    reply: client::Reply,
    format: Format,
    view: fn(&serde_json::Value) -> String,
) -> anyhow::Result<()> {
    if reply.status != 200 || !output::for_people(format.json, format.table) {
        return finish(reply);
    }
    let answer: serde_json::Value = serde_json::from_str(&reply.body)
        .with_context(|| format!("the server's answer is not JSON: {}", reply.body))?;
    print!("{}", view(&answer));
    Ok(())
}

/// `cella cluster add-node ID HOST:PORT`.
pub(super) async fn add_node(
    server: &str,
    id: u64,
    addr: &str,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let body = serde_json::to_vec(&serde_json::json!({ "id": id, "addr": addr }))?;
    finish(client::send(server, Method::POST, "/v1/cluster/nodes", body, token).await?)
}

/// `cella cluster remove-node ID`.
pub(super) async fn remove_node(server: &str, id: u64, token: Option<&str>) -> anyhow::Result<()> {
    let path = format!("/v1/cluster/nodes/{id}");
    finish(client::send(server, Method::DELETE, &path, Vec::new(), token).await?)
}

/// `cella cluster status`: the nodes and a table of the groups on a terminal, else the JSON.
pub(super) async fn cluster_status(server: &str, format: Format) -> anyhow::Result<()> {
    let reply = client::send(
        server,
        Method::GET,
        "/v1/cluster?load=true",
        Vec::new(),
        None,
    )
    .await?;
    show(reply, format, views::cluster)
}

/// Splits `TYPE/KEY`.
fn split_entity(entity: &str) -> anyhow::Result<(&str, &str)> {
    match entity.split_once('/') {
        Some((t, k)) if !t.is_empty() && !k.is_empty() => Ok((t, k)),
        _ => bail!("`{entity}` is not an entity address\nhint: write TYPE/KEY, e.g. counter/alice"),
    }
}

/// Prints a successful JSON body prettily (any other body as it is), or turns an error answer
/// into an error naming the status and the node's error code and message.
pub(super) fn finish(reply: client::Reply) -> anyhow::Result<()> {
    let parsed: Option<serde_json::Value> = serde_json::from_str(&reply.body).ok();
    if (200..300).contains(&reply.status) {
        match parsed {
            Some(v) => println!("{}", serde_json::to_string_pretty(&v)?),
            None => println!("{}", reply.body),
        }
        return Ok(());
    }
    let (code, message) = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .map(|e| {
            (
                e["code"].as_str().unwrap_or("error").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .unwrap_or_else(|| ("error".into(), reply.body.clone()));
    if reply.status == 429 {
        let retry = parsed
            .as_ref()
            .and_then(|v| v["error"]["retry_after"].as_u64())
            .unwrap_or(1);
        bail!(
            "the server answered 429 {code}: {message}\nhint: the entity type is over its \
             scheduling limits; retry in {retry} s, or raise them with `cella deploy \
             --max-concurrent/--cpu-share`"
        )
    }
    bail!("the server answered {} {code}: {message}", reply.status)
}

/// Prints the `warnings` of a deploy reply to stderr, one `warning:` line each.
fn print_warnings(body: &str) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        return;
    };
    for warning in value["warnings"].as_array().into_iter().flatten() {
        if let Some(w) = warning.as_str() {
            eprintln!("warning: {w}");
        }
    }
}

/// Prints the answer of `PUT /v1/modules/{type}?check=true` readably; an error (exit code 3)
/// if any entity diverged or failed.
fn check_summary(entity_type: &str, body: &str) -> anyhow::Result<()> {
    let report: serde_json::Value = serde_json::from_str(body)
        .with_context(|| format!("the server's answer is not JSON: {body}"))?;
    let list = |field: &str| report[field].as_array().cloned().unwrap_or_default();
    let (diverged, failed) = (list("diverged"), list("failed"));
    let checked = report["checked"].as_u64().unwrap_or(0);
    let against = match report.get("activeVersion") {
        Some(serde_json::Value::Null) => " (no version is active)".to_string(),
        Some(v) => format!(" against the active v{v}"),
        None => String::new(),
    };
    let entities = if checked == 1 { "entity" } else { "entities" };
    println!("checked {checked} {entities} of `{entity_type}`{against}");
    if let Some(candidate) = report.get("candidate") {
        let commands: Vec<&str> = candidate["commands"]
            .as_array()
            .map(|c| c.iter().filter_map(|c| c.as_str()).collect())
            .unwrap_or_default();
        println!(
            "  candidate: {}, {} entity, commands {}",
            candidate["digest"].as_str().unwrap_or("?"),
            candidate["kind"].as_str().unwrap_or("?"),
            commands.join(", ")
        );
    }
    if report["truncated"].as_bool() == Some(true) {
        println!("  (more entities exist than were checked)");
    }
    let key = |entry: &serde_json::Value| entry["key"].as_str().unwrap_or("?").to_string();
    if !diverged.is_empty() {
        println!("diverged: {}", diverged.len());
        for entry in &diverged {
            println!("  {entity_type}/{}", key(entry));
            println!("    current:   {}", entry["current"]);
            println!("    candidate: {}", entry["candidate"]);
        }
    }
    if !failed.is_empty() {
        println!("failed: {}", failed.len());
        for entry in &failed {
            let error = entry["error"].as_str().unwrap_or("?").trim_end();
            println!(
                "  {entity_type}/{}: {}",
                key(entry),
                error.replace('\n', "\n    ")
            );
        }
    }
    if diverged.is_empty() && failed.is_empty() {
        println!("ok: every checked entity replays to the same state");
        return Ok(());
    }
    let hint = if failed.is_empty() {
        "if the differences are intended, deploy without --check"
    } else {
        "a deploy of this candidate would be refused: it cannot replay the entities that failed"
    };
    Err(ExitWith {
        code: EXIT_CHECK_FAILED,
        message: format!(
            "the candidate does not take over `{entity_type}` unchanged: {} diverged, {} \
             failed\nhint: {hint}",
            diverged.len(),
            failed.len()
        ),
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_addresses() {
        assert_eq!(split_entity("counter/alice").unwrap(), ("counter", "alice"));
        assert_eq!(split_entity("a/b/c").unwrap(), ("a", "b/c"));
        for bad in ["counter", "/alice", "counter/"] {
            let error = split_entity(bad).unwrap_err().to_string();
            assert!(error.contains("hint: write TYPE/KEY"), "{error}");
        }
    }

    #[test]
    fn error_answers_become_errors() {
        let reply = |status, body: &str| client::Reply {
            status,
            body: body.to_string(),
        };
        assert!(finish(reply(200, r#"{"total": 1}"#)).is_ok());
        let error = finish(reply(
            400,
            r#"{"error": {"code": "bad_request", "message": "no"}}"#,
        ))
        .unwrap_err();
        assert_eq!(error.to_string(), "the server answered 400 bad_request: no");
        let error = finish(reply(502, "upstream down")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the server answered 502 error: upstream down"
        );
        let error = finish(reply(
            429,
            r#"{"error": {"code": "overloaded", "message": "busy", "retry_after": 3}}"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("the server answered 429 overloaded: busy"),
            "{error}"
        );
        assert!(
            error.contains("hint: the entity type is over its scheduling limits; retry in 3 s"),
            "{error}"
        );
    }

    #[test]
    fn deploy_limits_become_query_parameters() {
        let limits = LimitArgs {
            deadline_ms: Some(200),
            max_concurrent: None,
            cpu_share: Some(3),
        };
        assert_eq!(
            deploy_path("a b", false, &limits),
            "/v1/modules/a%20b?deadline-ms=200&cpu-share=3"
        );
        assert_eq!(
            deploy_path("t", true, &LimitArgs::default()),
            "/v1/modules/t?check=true"
        );
    }

    #[test]
    fn a_diverging_check_exits_3() {
        let body = serde_json::json!({
            "checked": 2,
            "activeVersion": 1,
            "diverged": [{"key": "a", "current": 1, "candidate": 2}],
            "failed": [],
        })
        .to_string();
        let error = check_summary("counter", &body).unwrap_err();
        let exit = error.downcast_ref::<ExitWith>().unwrap();
        assert_eq!(exit.code, EXIT_CHECK_FAILED);
        assert!(exit.message.contains("1 diverged, 0 failed"));
        let clean = serde_json::json!({"checked": 1, "diverged": [], "failed": []});
        assert!(check_summary("counter", &clean.to_string()).is_ok());
    }
}
