//! `GET /v1/entities/{type}?after=KEY&limit=N&prefix=P`: the entities of a type, in key order
//! (bytewise), each with its sequence, module version and last change, a page at a time.
//!
//! The entities of a type live in every partition. The node asked reads the page of each
//! partition from its leader — the partitions it leads in one scan of its store, those another
//! node leads in one request to that node (`?partition=G1,G2,…`, through [`dispatch`]) — and
//! merges them in key order, so every node answers the same. A node asked for partitions reads
//! those it leads and names the others in `unserved` (leadership moved meanwhile); these are
//! then asked for one by one, each routed to its leader on the retry path of [`dispatch`]
//! (asked for one partition it does not lead, a node answers "not leader"). A partition is read
//! once its leader has applied everything committed before it confirmed it leads
//! (`Cluster::ready`), so a listing shows every acknowledged write. Every partition's
//! page holds at most `limit` entities past `after`, so the first `limit` of the merge are the
//! page, and `next` is its last key when any partition may have more.
//!
//! A crdt type is listed from the replicas of the node asked (every node holds every crdt
//! entity it has heard of), with sequence 0 and no last change.
//!
//! ```text
//! 200 {"type": "counter",
//!      "entities": [{"key": "k1", "sequence": 3, "moduleVersion": 1, "lastChangeMs": 1796441243278}],
//!      "next": "k1" | null}
//! ```

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
};

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

    /// The path and query that asks the leader of the partitions `groups` for their page.
    fn partition_path(&self, groups: &[u64]) -> String {
        let groups: Vec<String> = groups.iter().map(u64::to_string).collect();
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("partition", &groups.join(","));
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
    /// In the answer to `?partition=…`: the partitions asked for that the node does not lead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    unserved: Vec<u64>,
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
            unserved: Vec::new(),
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

/// `GET /v1/entities/{type}` (with `?partition=G1,G2,…` from another node: the page of those
/// partitions).
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
    let partitions = match query_param(&req, "partition") {
        None => None,
        Some(raw) => Some(
            raw.split(',')
                .map(str::parse::<u64>)
                .collect::<std::result::Result<Vec<u64>, _>>()
                .ok()
                .filter(|groups| !groups.is_empty())
                .ok_or_else(|| {
                    Error::BadRequest(format!(
                        "query parameter `partition` must be partition numbers separated by \
                         commas, got `{raw}`"
                    ))
                })?,
        ),
    };
    if is_system_type(&listing.entity_type) {
        return Err(Error::UnknownType(listing.entity_type));
    }
    node.registry.info(&listing.entity_type)?;
    if let Ok(active) = node.registry.get(&listing.entity_type)
        && active.module.descriptor().crdt.is_some()
    {
        // Every node holds every crdt entity: this node's replicas are the listing.
        let (keys, more) = node.crdts.keys(
            &listing.entity_type,
            listing.after.as_deref(),
            &listing.prefix,
            listing.limit,
        );
        let entries = keys
            .into_iter()
            .map(|key| Entry {
                key,
                sequence: 0,
                module_version: active.version,
                last_change_ms: None,
            })
            .collect();
        return Page::of(&listing.entity_type, entries, more, listing.limit).response();
    }
    let origin = Origin::of(&req, Via::Request);
    let page = match partitions {
        Some(groups) => partitions_page(node, &listing, &groups, &origin).await?,
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
/// their leaders (one request per leader, then one per partition it no longer led).
async fn merged_page(node: &Arc<Node>, listing: &Listing, origin: &Origin) -> Result<Page> {
    let Some(cluster) = node.cluster.as_ref() else {
        let page = node.store.list_entities(listing.query(), |_| true)?;
        return Ok(local(listing, page));
    };
    let mut here = HashSet::new();
    let mut elsewhere: BTreeMap<Option<String>, Vec<u64>> = BTreeMap::new();
    for group in cluster.placement().groups() {
        match node.leader(Target::Entity(&partition_entity(node, group)))? {
            Leader::Here => {
                here.insert(group);
            }
            Leader::At(addr) => elsewhere.entry(Some(addr)).or_default().push(group),
            // No leader known: asked for alone, on the retry path.
            Leader::Unknown => elsewhere.entry(None).or_default().push(group),
        }
    }
    let mut asked = tokio::task::JoinSet::new();
    let ask = |asked: &mut tokio::task::JoinSet<Result<Page>>, groups: Vec<u64>| {
        let (node, listing) = (node.clone(), listing.clone());
        let origin = Origin {
            forwarded: origin.forwarded,
            method: Method::GET,
            path_and_query: listing.partition_path(&groups),
            authorization: origin.authorization.clone(),
            via: Via::Request,
        };
        asked.spawn(async move { partitions_page(&node, &listing, &groups, &origin).await });
    };
    for (leader, groups) in elsewhere {
        match leader {
            Some(_) => ask(&mut asked, groups),
            None => groups.into_iter().for_each(|g| ask(&mut asked, vec![g])),
        }
    }
    let mut entries = Vec::new();
    let mut more = false;
    let (here, unconfirmed) = applied(node, here).await?;
    for group in unconfirmed {
        ask(&mut asked, vec![group]);
    }
    if !here.is_empty() {
        let page = scan(node, listing, &here)?;
        more |= page.more;
        entries.extend(page.entities.into_iter().map(entry));
    }
    while let Some(joined) = asked.join_next().await {
        let page = joined.map_err(|e| Error::Internal(format!("reading a partition: {e}")))??;
        more |= page.next.is_some();
        entries.extend(page.entities);
        for group in page.unserved {
            ask(&mut asked, vec![group]);
        }
    }
    Ok(Page::of(&listing.entity_type, entries, more, listing.limit))
}

/// The page of the partitions `groups`, read at the leader of the first (here, or forwarded
/// there), which names those it does not lead in `unserved`.
async fn partitions_page(
    node: &Arc<Node>,
    listing: &Listing,
    groups: &[u64],
    origin: &Origin,
) -> Result<Page> {
    let first = groups.first().copied().unwrap_or_default();
    let target = partition_entity(node, first);
    let response = dispatch(
        node,
        Target::Entity(&target),
        origin,
        Bytes::new(),
        || async { led_page(node, listing, groups).await?.response() },
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
            "the leader of partitions {groups:?} answered an unreadable page: {e}"
        ))
    })
}

/// The page of those of `groups` this node leads, read from its store, naming the others in
/// `unserved`; "not leader" when asked for one partition it does not lead.
async fn led_page(node: &Arc<Node>, listing: &Listing, groups: &[u64]) -> Result<Page> {
    let mut led = HashSet::new();
    let mut unserved = Vec::new();
    for &group in groups {
        match node.leader(Target::Entity(&partition_entity(node, group)))? {
            Leader::Here => {
                led.insert(group);
            }
            Leader::At(addr) if groups.len() == 1 => {
                return Err(Error::NotLeader { leader: Some(addr) });
            }
            Leader::Unknown if groups.len() == 1 => return Err(Error::NotLeader { leader: None }),
            Leader::At(_) | Leader::Unknown => unserved.push(group),
        }
    }
    let (led, unconfirmed) = applied(node, led).await?;
    if !unconfirmed.is_empty() && groups.len() == 1 {
        return Err(Error::NotLeader { leader: None });
    }
    unserved.extend(unconfirmed);
    let page = if led.is_empty() {
        EntityPage::default()
    } else {
        scan(node, listing, &led)?
    };
    let mut page = local(listing, page);
    page.unserved = unserved;
    Ok(page)
}

/// Splits `groups`, led here, into those whose state machine has applied everything committed
/// before this node confirmed it leads them (`Cluster::ready`, concurrently), so a listing shows
/// every acknowledged write, and those it could not confirm.
async fn applied(node: &Arc<Node>, groups: HashSet<u64>) -> Result<(HashSet<u64>, Vec<u64>)> {
    let Some(cluster) = node.cluster.clone() else {
        return Ok((groups, Vec::new()));
    };
    let mut confirming = tokio::task::JoinSet::new();
    for group in groups {
        let cluster = cluster.clone();
        confirming.spawn(async move {
            let ready = match cluster.group(group) {
                Some(g) => cluster.ready(g).await.is_ok(),
                None => false,
            };
            (group, ready)
        });
    }
    let (mut ready, mut unconfirmed) = (HashSet::new(), Vec::new());
    while let Some(joined) = confirming.join_next().await {
        match joined {
            Ok((group, true)) => {
                ready.insert(group);
            }
            Ok((group, false)) => unconfirmed.push(group),
            Err(e) => return Err(Error::Internal(format!("confirming a partition: {e}"))),
        }
    }
    Ok((ready, unconfirmed))
}

/// One scan of the store for the entities of the partitions `groups`.
fn scan(node: &Node, listing: &Listing, groups: &HashSet<u64>) -> Result<EntityPage> {
    let ty = listing.entity_type.as_str();
    Ok(node.store.list_entities(listing.query(), |k| {
        groups.contains(&node.entities.partition_of(&EntityId::new(ty, k)))
    })?)
}

fn local(listing: &Listing, page: EntityPage) -> Page {
    let entries = page.entities.into_iter().map(entry).collect();
    Page::of(&listing.entity_type, entries, page.more, listing.limit)
}
