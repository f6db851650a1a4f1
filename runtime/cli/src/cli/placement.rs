//! Placement in the terminal: the load part of `cella cluster status` (every node's CPU and
//! the partitions it leads, the leader moves made) and `cella cluster rebalance` (what the
//! loads suggest, `--dry-run` to only show it, `--partition P --to N` to move one partition's
//! leadership).

use std::fmt::Write as _;

use anyhow::bail;
use hyper::Method;
use serde_json::Value;

use super::{
    admin::{Format, show},
    output::{align_right, render, table, utc},
};
use crate::client;

/// A cores figure with two decimals, or `-`.
fn cores(value: &Value) -> String {
    value
        .as_f64()
        .map_or("-".to_string(), |v| format!("{v:.2}"))
}

/// The load part of `cella cluster status`: a table of the nodes' load and the moves made.
pub(super) fn load_view(status: &Value) -> String {
    let mut out = String::new();
    let loads = status["loads"].as_array().cloned().unwrap_or_default();
    if !loads.is_empty() {
        let mut t = table(&[
            "NODE",
            "CPUS",
            "CPU",
            "BUSY",
            "WAITING",
            "PRESSURE",
            "LEADS (WRITES/S)",
        ]);
        for load in &loads {
            let leads: Vec<String> = load["led"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|g| {
                    format!(
                        "{} ({:.0})",
                        g["load"]["group"],
                        g["load"]["commands"].as_f64().unwrap_or(0.0)
                    )
                })
                .collect();
            t.add_row(vec![
                load["node"].to_string(),
                load["cpus"].to_string(),
                cores(&load["cpu"]),
                load["busy"]
                    .as_f64()
                    .map_or("-".to_string(), |b| format!("{:.0}%", b * 100.0)),
                cores(&load["waiting"]),
                cores(&load["pressure"]),
                if leads.is_empty() {
                    "-".into()
                } else {
                    leads.join(" ")
                },
            ]);
        }
        align_right(&mut t, &[1, 2, 3, 4, 5]);
        out.push_str("load\n");
        out.push_str(&render(&t));
        out.push_str(&hot_shards_view(&loads));
    }
    if let Some(missing) = status["unreachable"].as_array().filter(|m| !m.is_empty()) {
        let ids: Vec<String> = missing.iter().map(Value::to_string).collect();
        let _ = writeln!(out, "no load report from node {}", ids.join(", "));
    }
    out.push_str(&recent_moves(
        "leader moves",
        &status["placement"]["moves"],
        |m| {
            format!(
                "partition {}: node {} → node {}  {}",
                m["group"],
                m["from"],
                m["to"],
                m["reason"].as_str().unwrap_or("")
            )
        },
    ));
    out
}

/// The last 10 of `moves`, a line each (its time, then `line`), under `title`; nothing when
/// there are none.
fn recent_moves(title: &str, moves: &Value, line: impl Fn(&Value) -> String) -> String {
    let moves = moves.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = String::new();
    if !moves.is_empty() {
        let _ = writeln!(out, "{title} (newest last)");
        for m in &moves[moves.len().saturating_sub(10)..] {
            let at = m["atMs"].as_u64().map_or("-".to_string(), utc);
            let _ = writeln!(out, "  {at}  {}", line(m));
        }
    }
    out
}

/// `cella cluster rebalance`'s answer, readably.
fn outcome_view(answer: &Value) -> String {
    let mut out = String::new();
    let planned = &answer["plan"]["move"];
    if planned.is_null() {
        let _ = writeln!(
            out,
            "no move: {}",
            answer["plan"]["note"].as_str().unwrap_or("")
        );
    } else {
        let verb = match (answer["applied"].as_bool(), answer["moved"].as_bool()) {
            (Some(true), Some(true)) => "moved",
            (Some(true), _) => "moving (the new leader is not leading yet)",
            _ => "would move",
        };
        let _ = writeln!(
            out,
            "{verb}: partition {} leadership node {} → node {}\n  {}",
            planned["group"],
            planned["from"],
            planned["to"],
            planned["reason"].as_str().unwrap_or("")
        );
    }
    out.push_str(&shard_plan_view(answer));
    out.push_str(&load_view(answer));
    out
}

/// The shard part of `cella cluster rebalance`'s answer: the moves planned or made.
fn shard_plan_view(answer: &Value) -> String {
    let mut out = String::new();
    let plan = &answer["shardPlan"];
    let planned = plan["moves"].as_array().cloned().unwrap_or_default();
    let made: Vec<u64> = answer["shardMoves"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["move"]["shard"].as_u64())
        .collect();
    let applied = answer["dryRun"] == false;
    if let Some(note) = plan["note"].as_str().filter(|_| planned.is_empty()) {
        let _ = writeln!(out, "no shard move: {note}");
    }
    for m in &planned {
        let verb = match (applied, m["shard"].as_u64()) {
            (false, _) => "would move",
            (true, Some(s)) if made.contains(&s) => "moved",
            (true, _) => "did not move",
        };
        let _ = writeln!(
            out,
            "{verb}: shard {} partition {} → {} ({:.0} writes/s)",
            m["shard"],
            m["from"],
            m["to"],
            m["writes"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(note) = plan["note"].as_str().filter(|_| !planned.is_empty()) {
        let _ = writeln!(out, "  {note}");
    }
    for e in answer["shardErrors"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  {}", e.as_str().unwrap_or(""));
    }
    out
}

/// `cella cluster rebalance [--dry-run] [--partition P --to N]`.
pub(super) async fn rebalance(
    server: &str,
    dry_run: bool,
    explicit: Option<(u64, u64)>,
    admin_token: Option<&str>,
    format: Format,
) -> anyhow::Result<()> {
    let path = if dry_run {
        "/v1/cluster/rebalance?dry-run=true"
    } else {
        "/v1/cluster/rebalance"
    };
    let body = match explicit {
        Some((partition, node)) => {
            serde_json::json!({ "partition": partition, "node": node }).to_string()
        }
        None => String::new(),
    };
    let reply = client::send(server, Method::POST, path, body.into_bytes(), admin_token).await?;
    if reply.status == 400 {
        let parsed: Value = serde_json::from_str(&reply.body).unwrap_or_default();
        bail!(
            "the server answered 400: {}\nhint: `cella cluster status` lists the partitions \
             and their voters",
            parsed["error"]["message"].as_str().unwrap_or(&reply.body)
        );
    }
    show(reply, format, outcome_view)
}

/// Which shard `cella cluster move-shard` moves: by number, or an entity's (`TYPE/KEY`).
pub(super) enum ShardOf {
    Number(u32),
    Entity(String),
}

/// The shard of `entity` (`TYPE/KEY`) in a cluster of `shards` shards.
fn shard_of_entity(entity: &str, shards: u32) -> anyhow::Result<u32> {
    let Some((entity_type, key)) = entity.split_once('/') else {
        bail!("--entity `{entity}` must be TYPE/KEY, e.g. counter/alice");
    };
    let placement = cella_cluster::Placement {
        shards,
        partitions: 1,
    };
    Ok(placement.shard_of(entity_type, key))
}

/// `cella cluster move-shard (SHARD | --entity TYPE/KEY) --to P`.
pub(super) async fn move_shard(
    server: &str,
    shard: ShardOf,
    to: u64,
    admin_token: Option<&str>,
    format: Format,
) -> anyhow::Result<()> {
    let shard = match shard {
        ShardOf::Number(shard) => shard,
        ShardOf::Entity(entity) => {
            // The shard count is the cluster's, fixed when it was created.
            let reply = client::send(server, Method::GET, "/v1/cluster", Vec::new(), None).await?;
            let status: Value = serde_json::from_str(&reply.body).unwrap_or_default();
            let Some(shards) = status["shards"]
                .as_u64()
                .and_then(|s| u32::try_from(s).ok())
            else {
                bail!(
                    "{server} did not say how many shards the cluster has ({}): {}",
                    reply.status,
                    reply.body.trim()
                );
            };
            shard_of_entity(&entity, shards)?
        }
    };
    let body = serde_json::json!({ "partition": to }).to_string();
    let path = format!("/v1/cluster/shards/{shard}/move");
    let reply = client::send(server, Method::POST, &path, body.into_bytes(), admin_token).await?;
    if reply.status == 400 {
        let parsed: Value = serde_json::from_str(&reply.body).unwrap_or_default();
        bail!(
            "the server answered 400: {}\nhint: `cella cluster status` lists the partitions and \
             the shards moved so far",
            parsed["error"]["message"].as_str().unwrap_or(&reply.body)
        );
    }
    show(reply, format, move_view)
}

/// The shards moved and moving, in `cella cluster status` (nothing when none ever moved).
pub(super) fn shards_view(status: &Value) -> String {
    let shards = &status["shardMoves"];
    let moved: Vec<String> = shards["moved"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(shard, to)| format!("{shard} → {to}"))
        .collect();
    let moving: Vec<String> = shards["moving"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| format!("{} ({} → {})", m["shard"], m["from"], m["to"]))
        .collect();
    let mut out = String::new();
    if !moved.is_empty() {
        let _ = writeln!(
            out,
            "\nshards moved (shard → partition): {}",
            moved.join(", ")
        );
    }
    if !moving.is_empty() {
        let _ = writeln!(out, "shards moving: {}", moving.join(", "));
    }
    out.push_str(&recent_moves("shard moves", &shards["moves"], |m| {
        m["reason"].as_str().unwrap_or("").to_string()
    }));
    out
}

/// The hottest shards of the partitions in `loads` (a few each), a line per partition.
fn hot_shards_view(loads: &[Value]) -> String {
    let mut out = String::new();
    for led in loads
        .iter()
        .flat_map(|l| l["led"].as_array().cloned().unwrap_or_default())
    {
        let shards: Vec<String> = led["load"]["shards"]
            .as_array()
            .into_iter()
            .flatten()
            .take(4)
            .map(|s| {
                format!(
                    "{} ({:.0})",
                    s["shard"],
                    s["commands"].as_f64().unwrap_or(0.0)
                )
            })
            .collect();
        if !shards.is_empty() {
            let _ = writeln!(
                out,
                "  partition {}: {}",
                led["load"]["group"],
                shards.join(" ")
            );
        }
    }
    if out.is_empty() {
        return out;
    }
    format!("hottest shards (writes/s)\n{out}")
}

/// `cella cluster move-shard`'s answer, readably.
fn move_view(answer: &Value) -> String {
    let m = &answer["move"];
    format!(
        "moved shard {} from partition {} to {} ({} entities, {} ms)\n",
        m["shard"], m["from"], m["to"], answer["entities"], answer["tookMs"]
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_entity_names_its_shard() {
        let placement = cella_cluster::Placement::default();
        // The key may hold slashes: the type ends at the first.
        assert_eq!(
            shard_of_entity("counter/alice/1", placement.shards).unwrap(),
            placement.shard_of("counter", "alice/1")
        );
        assert_ne!(
            shard_of_entity("counter/alice/1", placement.shards).unwrap(),
            placement.shard_of("counter/alice", "1")
        );
        let problem = shard_of_entity("counter", 4096).unwrap_err().to_string();
        assert!(problem.contains("must be TYPE/KEY"), "{problem}");
    }

    #[test]
    fn a_shard_move_reads_as_a_line() {
        let answer = json!({"move": {"shard": 7, "from": 1, "to": 3, "generation": 9},
            "entities": 12, "tookMs": 40});
        assert_eq!(
            move_view(&answer),
            "moved shard 7 from partition 1 to 3 (12 entities, 40 ms)\n"
        );
        let status = json!({"shardMoves": {"moved": {"7": 3, "9": 1}, "moving": [
            {"shard": 11, "from": 2, "to": 4}], "moves": [
            {"atMs": 0, "shard": 7, "reason": "shard 7: partition 2 -> 3 (hot)"}]}});
        assert_eq!(
            shards_view(&status),
            "\nshards moved (shard → partition): 7 → 3, 9 → 1\nshards moving: 11 (2 → 4)\n\
             shard moves (newest last)\n  1970-01-01 00:00:00 UTC  shard 7: partition 2 -> 3 (hot)\n"
        );
        assert_eq!(
            shards_view(&json!({"shardMoves": {"moved": {}, "moving": []}})),
            ""
        );
    }

    #[test]
    fn loads_and_moves_read_as_tables_and_lines() {
        let status = json!({
            "loads": [
                {"node": 1, "cpus": 1, "cpu": 0.9, "busy": 1.0, "waiting": 0.6, "pressure": 1.0,
                 "led": [{"load": {"group": 1, "commands": 812.4, "bytes": 1.0}, "term": 2, "voters": [1, 2, 3]}]},
                {"node": 2, "cpus": 2, "cpu": 0.2, "waiting": 0.0, "led": []}
            ],
            "unreachable": [3],
            "placement": {"preferred": {"4": 2}, "moves": [
                {"atMs": 0, "group": 4, "from": 1, "to": 2, "reason": "node 1 uses 0.90 cores"}
            ]}
        });
        let view = load_view(&status);
        let lines: Vec<&str> = view.lines().collect();
        assert_eq!(lines[0], "load");
        let node1: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            node1,
            ["1", "1", "0.90", "100%", "0.60", "1.00", "1", "(812)"],
            "{view}"
        );
        assert!(lines[3].split_whitespace().last() == Some("-"), "{view}");
        assert!(view.contains("no load report from node 3"), "{view}");
        assert!(
            view.contains("partition 4: node 1 → node 2  node 1 uses 0.90 cores"),
            "{view}"
        );
    }

    #[test]
    fn an_outcome_says_what_was_or_would_be_done() {
        let planned = json!({"group": 4, "from": 1, "to": 2, "reason": "r"});
        let dry = json!({"plan": {"move": planned, "note": ""}, "applied": false, "moved": false, "loads": []});
        assert!(
            outcome_view(&dry).starts_with("would move: partition 4 leadership node 1 → node 2")
        );
        let done = json!({"plan": {"move": planned, "note": ""}, "applied": true, "moved": true, "loads": []});
        assert!(outcome_view(&done).starts_with("moved: partition 4"));
        let none =
            json!({"plan": {"move": null, "note": "idle: quiet"}, "applied": false, "loads": []});
        assert_eq!(outcome_view(&none), "no move: idle: quiet\n");
    }

    #[test]
    fn shard_moves_show_as_planned_made_or_failed() {
        let plan = json!({"moves": [
            {"shard": 8, "from": 1, "to": 3, "writes": 800.4, "reason": "r"},
            {"shard": 24, "from": 1, "to": 2, "writes": 400.0, "reason": "r"}
        ], "note": "2 shard(s) move; then even"});
        let dry = json!({"dryRun": true, "shardPlan": plan});
        let view = shard_plan_view(&dry);
        assert!(
            view.starts_with(
                "would move: shard 8 partition 1 → 3 (800 writes/s)\nwould move: shard 24"
            ),
            "{view}"
        );
        assert!(view.contains("  2 shard(s) move; then even\n"), "{view}");
        let made = json!({"dryRun": false, "shardPlan": plan,
            "shardMoves": [{"move": {"shard": 8}}], "shardErrors": ["shard 24 could not move"]});
        let view = shard_plan_view(&made);
        assert!(view.starts_with("moved: shard 8"), "{view}");
        assert!(view.contains("did not move: shard 24"), "{view}");
        assert!(view.contains("  shard 24 could not move"), "{view}");
        let none = json!({"dryRun": true, "shardPlan": {"moves": [], "note": "even: x"}});
        assert_eq!(shard_plan_view(&none), "no shard move: even: x\n");
        let loads = [json!({"led": [{"load": {"group": 1, "shards": [
            {"shard": 8, "commands": 800.0}, {"shard": 16, "commands": 12.4}]}}]})];
        assert_eq!(
            hot_shards_view(&loads),
            "hottest shards (writes/s)\n  partition 1: 8 (800) 16 (12)\n"
        );
    }
}
