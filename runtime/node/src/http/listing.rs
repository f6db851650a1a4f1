//! `GET /v1/entities/{type}?after=KEY&limit=N&prefix=P`: the entities of a type, in key order
//! (bytewise), each with its sequence, module version and last change, a page at a time.
//!
//! The entities of a type live in every partition. The node asked reads the page of each
//! partition from its leader — the partitions it leads in one scan of its store, each of the
//! others at its leader through [`dispatch`] (as `?partition=G`, a request of its own) — and
//! merges them in key order, so every node answers the same. Every partition's page holds at
//! most `limit` entities past `after`, so the first `limit` of the merge are the page, and
//! `next` is its last key when any partition may have more.
//!
//! ```text
//! 200 {"type": "counter",
//!      "entities": [{"key": "k1", "sequence": 3, "moduleVersion": 1, "lastChangeMs": 1796441243278}],
//!      "next": "k1" | null}
//! ```

use std::{collections::HashSet, sync::Arc};

use bytes::Bytes;
use cella_core::EntityId;
use cella_store::{EntityHead, EntityPage, ListQuery};
use http_body_util::BodyExt;
use hyper::{Method, Request, Response, StatusCode, body::Incoming};
use serde::{Deserialize, Serialize};

use super::{
    Params,
    body::{Body, json_response, query_param},
};
use crate::{
    auth::Action,
    entities::{PARTITION_TYPE, is_system_type, partition_key},
    error::{Error, Result},
    node::Node,
    routing::{Leader, Origin, Target, Via, dispatch},
};

/// Entities per page when the request names no `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit`.
pub const MAX_LIMIT: usize = 1000;

/// The parameters of a listing.
#[derive(Clone, Debug)]
struct Listing {
    entity_type: String,
    after: Option<String>,
    prefix: String,
    limit: usize,
}

impl Listing {
    fn query(&self) -> ListQuery<'_> {
        ListQuery {
            entity_type: &self.entity_type,
            after: self.after.as_deref(),
            prefix: &self.prefix,
            limit: self.limit,
        }
    }

    /// The path and query that asks partition `group`'s leader for its page.
    fn partition_path(&self, group: u64) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("partition", &group.to_string());
        query.append_pair("limit", &self.limit.to_string());
        if let Some(after) = &self.after {
            query.append_pair("after", after);
        }
        if !self.prefix.is_empty() {
            query.append_pair("prefix", &self.prefix);
        }
        format!(
            "/v1/entities/{}?{}",
            super::encode_segment(&self.entity_type),
            query.finish()
        )
    }
}

/// One entity of the answer, as JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    key: String,
    sequence: u64,
    module_version: u32,
    last_change_ms: Option<u64>,
}

/// The answer, as JSON (a partition's page has the same shape).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Page {
    #[serde(rename = "type")]
    entity_type: String,
    entities: Vec<Entry>,
    next: Option<String>,
}

impl Page {
    /// The first `limit` of `entries` (in any order), and `next` when `more` or past the limit.
    fn of(entity_type: &str, mut entries: Vec<Entry>, more: bool, limit: usize) -> Page {
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        let more = more || entries.len() > limit;
        entries.truncate(limit);
        let next = if more {
            entries.last().map(|e| e.key.clone())
        } else {
            None
        };
        Page {
            entity_type: entity_type.to_string(),
            entities: entries,
            next,
        }
    }

    fn response(&self) -> Result<Response<Body>> {
        let value = serde_json::to_value(self)
            .map_err(|e| Error::Internal(format!("encoding a listing: {e}")))?;
        Ok(json_response(StatusCode::OK, &value))
    }
}

fn entry(head: EntityHead) -> Entry {
    Entry {
        key: head.key,
        sequence: head.seq,
        module_version: head.module_version,
        last_change_ms: Some(head.changed_ms),
    }
}

/// `GET /v1/entities/{type}` (with `?partition=G` from another node: that partition's page).
pub(super) async fn list(
    node: &Arc<Node>,
    params: &Params<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let entity_type = params.decoded("type")?;
    node.authorize(&req, Action::Read(&entity_type))?;
    let listing = Listing {
        limit: limit_param(&req)?,
        after: query_param(&req, "after"),
        prefix: query_param(&req, "prefix").unwrap_or_default(),
        entity_type,
    };
    let partition = match query_param(&req, "partition") {
        None => None,
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
            Error::BadRequest(format!(
                "query parameter `partition` must be a partition number, got `{raw}`"
            ))
        })?),
    };
    if is_system_type(&listing.entity_type) {
        return Err(Error::UnknownType(listing.entity_type));
    }
    node.registry.info(&listing.entity_type)?;
    let origin = Origin::of(&req, Via::Request);
    let page = match partition {
        Some(group) => partition_page(node, &listing, group, &origin).await?,
        None => merged_page(node, &listing, &origin).await?,
    };
    page.response()
}

/// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
fn limit_param<B>(req: &Request<B>) -> Result<usize> {
    let Some(raw) = query_param(req, "limit") else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(Error::BadRequest(format!(
            "query parameter `limit` must be a number from 1 to {MAX_LIMIT}, got `{raw}`"
        ))),
    }
}

/// The entity that stands for partition `group` in routing (its leader serves it).
fn partition_entity(node: &Node, group: u64) -> EntityId {
    EntityId::new(
        PARTITION_TYPE,
        partition_key(group, &|id| node.entities.partition_of(id)),
    )
}

/// The page of every partition, merged: the partitions led here from one scan, the others from
/// their leaders.
async fn merged_page(node: &Arc<Node>, listing: &Listing, origin: &Origin) -> Result<Page> {
    let Some(cluster) = node.cluster.as_ref() else {
        let page = node.store.list_entities(listing.query(), |_| true)?;
        return Ok(local(listing, page));
    };
    let mut here = HashSet::new();
    let mut elsewhere = Vec::new();
    for group in cluster.placement().groups() {
        match node.leader(Target::Entity(&partition_entity(node, group)))? {
            Leader::Here => {
                here.insert(group);
            }
            Leader::At(_) | Leader::Unknown => elsewhere.push(group),
        }
    }
    let mut entries = Vec::new();
    let mut more = false;
    let mut pages = tokio::task::JoinSet::new();
    for group in elsewhere {
        let (node, listing) = (node.clone(), listing.clone());
        let origin = Origin {
            forwarded: origin.forwarded,
            method: Method::GET,
            path_and_query: listing.partition_path(group),
            authorization: origin.authorization.clone(),
            via: Via::Request,
        };
        pages.spawn(async move { partition_page(&node, &listing, group, &origin).await });
    }
    if !here.is_empty() {
        let ty = listing.entity_type.as_str();
        let page = node.store.list_entities(listing.query(), |k| {
            here.contains(&node.entities.partition_of(&EntityId::new(ty, k)))
        })?;
        more |= page.more;
        entries.extend(page.entities.into_iter().map(entry));
    }
    while let Some(joined) = pages.join_next().await {
        let page = joined.map_err(|e| Error::Internal(format!("reading a partition: {e}")))??;
        more |= page.next.is_some();
        entries.extend(page.entities);
    }
    Ok(Page::of(&listing.entity_type, entries, more, listing.limit))
}

/// The page of partition `group`, read at its leader (here, or forwarded there).
async fn partition_page(
    node: &Arc<Node>,
    listing: &Listing,
    group: u64,
    origin: &Origin,
) -> Result<Page> {
    let target = partition_entity(node, group);
    let response = dispatch(
        node,
        Target::Entity(&target),
        origin,
        Bytes::new(),
        || async {
            let ty = listing.entity_type.as_str();
            let page = node.store.list_entities(listing.query(), |k| {
                node.entities.partition_of(&EntityId::new(ty, k)) == group
            })?;
            local(listing, page).response()
        },
    )
    .await?;
    let status = response.status();
    let body = match response.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    if status != StatusCode::OK {
        return Err(Error::Remote {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    serde_json::from_slice(&body).map_err(|e| {
        Error::Internal(format!(
            "partition {group} answered an unreadable page: {e}"
        ))
    })
}

fn local(listing: &Listing, page: EntityPage) -> Page {
    let entries = page.entities.into_iter().map(entry).collect();
    Page::of(&listing.entity_type, entries, page.more, listing.limit)
}
