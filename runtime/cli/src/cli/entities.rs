//! `cella entities TYPE [--prefix P] [--after K] [--limit N] [--all] [--json]`: the entities of
//! a type in key order (`GET /v1/entities/{type}`), as a table of key, sequence, module version
//! and last change, or the node's JSON.

use anyhow::Context;
use hyper::Method;
use serde_json::Value;

use super::{admin::finish, output};
use crate::client::{self, encode_segment};

/// What `cella entities` lists.
pub(super) struct Listing<'a> {
    pub entity_type: &'a str,
    pub prefix: Option<&'a str>,
    pub after: Option<&'a str>,
    pub limit: u32,
    /// Every page, following `next`.
    pub all: bool,
    pub json: bool,
}

/// `cella entities`.
pub(super) async fn list(
    server: &str,
    listing: Listing<'_>,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let mut after = listing.after.map(str::to_string);
    let mut entities: Vec<Value> = Vec::new();
    let next = loop {
        let path = page_path(&listing, after.as_deref());
        let reply = client::send(server, Method::GET, &path, Vec::new(), token).await?;
        if reply.status != 200 {
            return finish(reply);
        }
        let page: Value =
            serde_json::from_str(&reply.body).context("the entity listing is not JSON")?;
        entities.extend(page["entities"].as_array().cloned().unwrap_or_default());
        let next = page["next"].as_str().map(str::to_string);
        match next {
            Some(next) if listing.all => after = Some(next),
            next => break next,
        }
    };
    if listing.json {
        let answer = serde_json::json!({
            "type": listing.entity_type,
            "entities": entities,
            "next": next,
        });
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    print!("{}", table(&entities));
    if let Some(next) = next {
        eprintln!(
            "more entities follow: cella entities {} --after {next} (or --all)",
            listing.entity_type
        );
    }
    Ok(())
}

/// `/v1/entities/{type}?limit=N[&prefix=P][&after=K]`.
fn page_path(listing: &Listing<'_>, after: Option<&str>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &listing.limit.to_string());
    if let Some(prefix) = listing.prefix {
        query.append_pair("prefix", prefix);
    }
    if let Some(after) = after {
        query.append_pair("after", after);
    }
    format!(
        "/v1/entities/{}?{}",
        encode_segment(listing.entity_type),
        query.finish()
    )
}

/// The entities as a table: key, sequence, version, last change.
fn table(entities: &[Value]) -> String {
    if entities.is_empty() {
        return "no entities\n".to_string();
    }
    let mut table = output::table(&["KEY", "SEQUENCE", "VERSION", "LAST CHANGE"]);
    for e in entities {
        let changed = e["lastChangeMs"]
            .as_u64()
            .map_or("-".to_string(), output::utc);
        table.add_row(vec![
            e["key"].as_str().unwrap_or("?").to_string(),
            e["sequence"].to_string(),
            e["moduleVersion"].to_string(),
            changed,
        ]);
    }
    output::align_right(&mut table, &[1, 2]);
    output::render(&table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_row_per_entity() {
        let entities = serde_json::json!([
            {"key": "alice", "sequence": 3, "moduleVersion": 1, "lastChangeMs": 0},
            {"key": "b c", "sequence": 12, "moduleVersion": 2, "lastChangeMs": null},
        ]);
        let text = table(entities.as_array().unwrap());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("KEY") && lines[0].contains("LAST CHANGE"));
        assert!(lines[1].contains("alice") && lines[1].contains("1970-01-01 00:00:00 UTC"));
        assert!(lines[2].contains("b c") && lines[2].trim_end().ends_with('-'));
        assert_eq!(table(&[]), "no entities\n");
    }

    #[test]
    fn page_paths_escape_their_parameters() {
        let listing = Listing {
            entity_type: "a b",
            prefix: Some("x&y"),
            after: None,
            limit: 5,
            all: false,
            json: false,
        };
        assert_eq!(
            page_path(&listing, Some("k/1")),
            "/v1/entities/a%20b?limit=5&prefix=x%26y&after=k%2F1"
        );
    }
}
