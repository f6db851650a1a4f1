//! `cella audit`: the audit trail of admin actions (`GET /v1/audit`, admin) as a table —
//! index, time (UTC), token id, action, and what it was about.

use anyhow::Context;
use hyper::Method;

use super::admin::finish;
use crate::client;

/// `cella audit [--limit N] [--after N] [--json]`: the records after `after`, up to `limit`.
pub(super) async fn audit(
    server: &str,
    after: u64,
    limit: u64,
    json: bool,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let path = format!("/v1/audit?after={after}&limit={limit}");
    let reply = client::send(server, Method::GET, &path, Vec::new(), token).await?;
    if json || reply.status != 200 {
        return finish(reply);
    }
    let body: serde_json::Value =
        serde_json::from_str(&reply.body).context("the audit trail is not JSON")?;
    print!("{}", table(&body));
    Ok(())
}

/// The records of `GET /v1/audit` as a table.
fn table(body: &serde_json::Value) -> String {
    let mut rows = vec![[
        "INDEX".to_string(),
        "TIME (UTC)".to_string(),
        "TOKEN".to_string(),
        "ACTION".to_string(),
        "WHAT".to_string(),
    ]];
    for r in body["records"].as_array().into_iter().flatten() {
        let mut what = Vec::new();
        if let Some(ty) = r["type"].as_str() {
            what.push(ty.to_string());
        }
        if let Some(v) = r["version"].as_u64() {
            what.push(format!("v{v}"));
        }
        if let Some(d) = r["digest"].as_str() {
            what.push(d.chars().take(19).collect());
        }
        if let Some(n) = r["node"].as_u64() {
            what.push(format!("node {n}"));
        }
        if let Some(d) = r["detail"].as_str() {
            what.push(d.to_string());
        }
        rows.push([
            r["index"].to_string(),
            super::output::utc(r["atMs"].as_u64().unwrap_or(0)),
            r["actor"].as_str().unwrap_or("").to_string(),
            r["action"].as_str().unwrap_or("").to_string(),
            what.join(" "),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_rows() {
        let body = serde_json::json!({"records": [{"index": 4, "atMs": 0, "actor": "ci",
            "action": "deploy", "type": "counter", "version": 2, "digest": "sha256:abc",
            "node": null, "detail": null}]});
        let t = table(&body);
        assert!(t.contains("1970-01-01 00:00:00 UTC  ci"), "{t}");
        assert!(t.contains("counter v2 sha256:abc"), "{t}");
    }
}
