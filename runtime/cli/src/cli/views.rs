//! The terminal views of the node's answers (see [`super::output`] for when they are used):
//! `cella modules` and `cella inspect --journal` as tables, `cella inspect` as a summary line,
//! the state as pretty JSON and the pending calls and timers as tables, and `cella cluster
//! status` as the nodes, then a table of the raft groups, then the load (`placement.rs`).

use std::fmt::Write as _;

use serde_json::Value;

use super::output::{align_right, render, table, utc};

/// At most this many characters of a JSON value in a table cell.
const CELL_MAX: usize = 60;

/// A JSON value in one line, cut to [`CELL_MAX`] characters.
fn compact(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() <= CELL_MAX {
        return text;
    }
    let cut: String = text.chars().take(CELL_MAX - 1).collect();
    format!("{cut}…")
}

/// A number field, or `-`.
fn number(value: &Value) -> String {
    value.as_u64().map_or("-".to_string(), |n| n.to_string())
}

/// A time field in milliseconds, as a UTC date, or `-`.
fn time(value: &Value) -> String {
    value.as_u64().map_or("-".to_string(), utc)
}

/// `GET /v1/modules` as a table: one row per type.
pub(super) fn modules(answer: &Value) -> String {
    let modules = answer["modules"].as_array().cloned().unwrap_or_default();
    if modules.is_empty() {
        return "no modules deployed\n".to_string();
    }
    let mut t = table(&[
        "TYPE",
        "VERSION",
        "KIND",
        "CONSISTENCY",
        "DURABILITY",
        "VERSIONS",
        "DEPLOYED",
        "LIMITS",
        "COMMANDS",
    ]);
    for m in &modules {
        let versions = m["versions"].as_array().cloned().unwrap_or_default();
        let active = versions.iter().find(|v| v["version"] == m["version"]);
        let commands: Vec<&str> = m["commands"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        t.add_row(vec![
            m["type"].as_str().unwrap_or("?").to_string(),
            number(&m["version"]),
            match m["crdt"].as_str() {
                Some(crdt) => format!("crdt:{crdt}"),
                None => m["kind"].as_str().unwrap_or("-").to_string(),
            },
            m["consistency"].as_str().unwrap_or("-").to_string(),
            m["durability"].as_str().unwrap_or("-").to_string(),
            versions.len().to_string(),
            active.map_or("-".to_string(), |v| time(&v["createdMs"])),
            limits(&m["limits"]),
            commands.join(", "),
        ]);
    }
    align_right(&mut t, &[1, 5]);
    let mut out = render(&t);
    for m in &modules {
        if let Some(error) = m["loadError"].as_str() {
            let _ = writeln!(
                out,
                "\n{} v{} is not loaded on this node: {error}\n  hint: deploy a version that \
                 loads (`cella deploy`) or roll back (`cella rollback`)",
                m["type"].as_str().unwrap_or("?"),
                number(&m["version"]),
            );
        }
    }
    out
}

/// A type's limits set at deploy, `deadline-ms=… max-concurrent=… cpu-share=…` (`-`: none).
fn limits(limits: &Value) -> String {
    let set: Vec<String> = [
        ("deadline-ms", "deadlineMs"),
        ("max-concurrent", "maxConcurrent"),
        ("cpu-share", "cpuShare"),
    ]
    .iter()
    .filter_map(|(name, key)| limits[*key].as_u64().map(|v| format!("{name}={v}")))
    .collect();
    if set.is_empty() {
        "-".to_string()
    } else {
        set.join(" ")
    }
}

/// `GET /v1/entities/{type}/{key}`: a summary line, the state as pretty JSON, then its
/// pending calls and timers as tables.
pub(super) fn entity(answer: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}/{} · sequence {} · module v{}",
        answer["type"].as_str().unwrap_or("?"),
        answer["key"].as_str().unwrap_or("?"),
        number(&answer["sequence"]),
        number(&answer["moduleVersion"]),
    );
    let state = serde_json::to_string_pretty(&answer["state"]).unwrap_or_default();
    let _ = writeln!(out, "{state}");
    let effects = answer["effects"].as_array().cloned().unwrap_or_default();
    if !effects.is_empty() {
        let mut t = table(&["CALL", "TARGET", "COMMAND", "CREATED"]);
        for e in &effects {
            t.add_row(vec![
                e["id"].as_str().unwrap_or("?").to_string(),
                format!(
                    "{}/{}",
                    e["target"]["type"].as_str().unwrap_or("?"),
                    e["target"]["key"].as_str().unwrap_or("?")
                ),
                e["command"].as_str().unwrap_or("?").to_string(),
                time(&e["createdMs"]),
            ]);
        }
        let _ = write!(out, "\ncalls awaiting delivery:\n{}", render(&t));
    }
    let timers = answer["timers"].as_array().cloned().unwrap_or_default();
    if !timers.is_empty() {
        let mut t = table(&["TIMER", "COMMAND", "DUE", "EVERY (ms)", "FIRED"]);
        for timer in &timers {
            t.add_row(vec![
                timer["name"].as_str().unwrap_or("?").to_string(),
                timer["command"].as_str().unwrap_or("?").to_string(),
                time(&timer["dueMs"]),
                number(&timer["everyMs"]),
                compact(&timer["fired"]),
            ]);
        }
        let _ = write!(out, "\ntimers:\n{}", render(&t));
    }
    out
}

/// `GET /v1/entities/{type}/{key}/journal` as a table: one row per entry, its state or events
/// in one line.
pub(super) fn journal(answer: &Value) -> String {
    let entries = answer["entries"].as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        return "no journal entries\n".to_string();
    }
    let mut t = table(&["SEQ", "TIME", "COMMAND", "VERSION", "CHANGE"]);
    for e in &entries {
        let change = match (e.get("events"), e.get("state")) {
            (Some(events), _) => compact(events),
            (None, Some(state)) => compact(state),
            (None, None) => "-".to_string(),
        };
        t.add_row(vec![
            number(&e["seq"]),
            time(&e["timestampMs"]),
            e["command"].as_str().unwrap_or("?").to_string(),
            number(&e["moduleVersion"]),
            change,
        ]);
    }
    align_right(&mut t, &[0, 3]);
    render(&t)
}

/// `GET /v1/cluster`: the node and its peers, then one row per raft group.
pub(super) fn cluster(status: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {} · {} partitions over {} shards",
        status["nodeId"], status["partitions"], status["shards"]
    );
    for node in status["nodes"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  node {:<4} {}",
            node["id"],
            node["addr"].as_str().unwrap_or("?")
        );
    }
    let mut t = table(&[
        "GROUP",
        "STATE",
        "LEADER",
        "TERM",
        "VOTERS",
        "LAST LOG",
        "COMMITTED",
        "APPLIED",
    ]);
    for g in status["groups"].as_array().into_iter().flatten() {
        let voters: Vec<String> = g["voters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(Value::to_string)
            .collect();
        let name = match g["group"].as_u64() {
            Some(0) => "meta".to_string(),
            Some(n) => n.to_string(),
            None => "?".to_string(),
        };
        t.add_row(vec![
            name,
            g["state"].as_str().unwrap_or("?").to_string(),
            number(&g["leader"]),
            number(&g["term"]),
            voters.join(","),
            number(&g["lastLogIndex"]),
            number(&g["committed"]),
            number(&g["applied"]),
        ]);
    }
    align_right(&mut t, &[3, 5, 6, 7]);
    out.push_str(&render(&t));
    out.push_str(&super::placement::load_view(status));
    out.push_str(&super::placement::shards_view(status));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The words of a line (the columns of a table row).
    fn words(line: &str) -> Vec<&str> {
        line.split_whitespace().collect()
    }

    #[test]
    fn module_rows() {
        let answer = json!({"modules": [{
            "type": "counter", "version": 2, "kind": "value", "commands": ["add", "get"],
            "consistency": "strong", "durability": "durable", "crdt": null,
            "versions": [{"version": 1, "createdMs": 0}, {"version": 2, "createdMs": 86_400_000}],
            "limits": {"deadlineMs": null, "maxConcurrent": 2, "cpuShare": null},
        }]});
        let text = modules(&answer);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            words(lines[0]),
            [
                "TYPE",
                "VERSION",
                "KIND",
                "CONSISTENCY",
                "DURABILITY",
                "VERSIONS",
                "DEPLOYED",
                "LIMITS",
                "COMMANDS"
            ]
        );
        assert_eq!(
            words(lines[1]),
            [
                "counter",
                "2",
                "value",
                "strong",
                "durable",
                "2",
                "1970-01-02",
                "00:00:00",
                "UTC",
                "max-concurrent=2",
                "add,",
                "get"
            ]
        );
        assert_eq!(modules(&json!({"modules": []})), "no modules deployed\n");
        assert!(!text.contains("not loaded"), "{text}");
        let failed = json!({"modules": [{
            "type": "counter", "version": 1, "kind": "value", "commands": ["add"],
            "versions": [{"version": 1, "createdMs": 0}], "limits": {},
            "loadError": "invalid component: no export `cella:entity/entity@0.2.0`",
        }]});
        let text = modules(&failed);
        assert!(
            text.contains("counter v1 is not loaded on this node: invalid component: no export")
                && text.contains("hint: deploy a version that loads"),
            "{text}"
        );
    }

    #[test]
    fn an_entity_and_its_journal() {
        let answer = json!({
            "type": "counter", "key": "alice", "sequence": 2, "moduleVersion": 1,
            "state": {"total": 42}, "effects": [], "timers": [
                {"name": "tick", "command": "add", "dueMs": 0, "everyMs": 1000, "fired": false}
            ],
        });
        let text = entity(&answer);
        assert!(
            text.starts_with("counter/alice · sequence 2 · module v1\n{\n  \"total\": 42\n}\n")
        );
        assert!(text.contains("timers:\n"), "{text}");
        let row = ["tick", "add", "1970-01-01"];
        assert!(
            text.lines().any(|l| words(l).get(..3) == Some(&row[..])),
            "{text}"
        );
        assert!(!text.contains("calls awaiting delivery"), "{text}");

        let long = "x".repeat(100);
        let answer = json!({"entries": [
            {"seq": 1, "timestampMs": 0, "command": "add", "moduleVersion": 1, "state": {"total": 1}},
            {"seq": 2, "timestampMs": 0, "command": "set", "moduleVersion": 1, "state": long},
        ]});
        let text = journal(&answer);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            words(lines[0]),
            ["SEQ", "TIME", "COMMAND", "VERSION", "CHANGE"]
        );
        assert!(lines[1].ends_with(r#"{"total":1}"#), "{text}");
        assert!(
            lines[2].ends_with('…') && lines[2].chars().count() < 140,
            "{text}"
        );
    }

    #[test]
    fn cluster_rows() {
        let status = json!({
            "nodeId": 1, "partitions": 1, "shards": 4096,
            "nodes": [{"id": 1, "addr": "127.0.0.1:7001"}],
            "groups": [
                {"group": 0, "state": "leader", "leader": 1, "term": 2, "voters": [1],
                 "lastLogIndex": 5, "committed": 5, "applied": 5},
                {"group": 1, "state": "follower", "leader": null, "term": 1, "voters": [1, 2],
                 "lastLogIndex": 3, "committed": 3, "applied": 2},
            ],
        });
        let text = cluster(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "node 1 · 1 partitions over 4096 shards");
        assert!(lines[1].starts_with("  node 1 ") && lines[1].ends_with(" 127.0.0.1:7001"));
        assert_eq!(words(lines[2])[..3], ["GROUP", "STATE", "LEADER"]);
        assert_eq!(
            words(lines[3]),
            ["meta", "leader", "1", "2", "1", "5", "5", "5"]
        );
        assert_eq!(
            words(lines[4]),
            ["1", "follower", "-", "1", "1,2", "3", "3", "2"]
        );
    }
}
