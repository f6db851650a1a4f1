//! The endpoints of crdt entities: `GET /v1/entities/{type}/{key}/watch` (the entity's value as
//! Server-Sent Events, each time it changes on this node) and the peer endpoint
//! `POST /v1/peer/crdt/{kind}` that carries their replication between nodes (`crate::crdt`).
//!
//! A watch stream starts with the current value, then sends `data: <value JSON>` each time a
//! local command or a merged delta changes it (a slow reader skips to the latest value), with
//! a comment line every [`super::follow::KEEP_ALIVE`] while nothing changes. It ends when the
//! client goes away or the node shuts down.

use std::sync::Arc;

use bytes::Bytes;
use hyper::{
    Request, Response,
    body::Incoming,
    header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue},
};
use tokio::sync::mpsc;

use super::{
    Params,
    body::{Body, channel, full, read_body},
    follow::KEEP_ALIVE,
    peer::certified,
};
use crate::{
    auth::Action,
    error::{Error, Result},
    node::Node,
};

/// `GET /v1/entities/{type}/{key}/watch`.
pub(super) async fn watch(
    node: &Arc<Node>,
    params: &Params<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let (ty, key) = (params.decoded("type")?, params.decoded("key")?);
    node.authorize(&req, Action::Read(&ty))?;
    cella_core::validate_name("key", &key)?;
    let active = node.registry.get_loaded(&ty).await?;
    let Some(crdt) = active.module.descriptor().crdt else {
        return Err(Error::BadRequest(format!(
            "`{ty}` is a {} entity: only crdt entities can be watched (read the state with GET /v1/entities/{ty}/{{key}}, or publish changes to a topic and follow it)",
            active.kind().as_str()
        )));
    };
    let mut values = node.crdts.watch(&ty, &key, crate::crdt::kind_of(crdt));
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let mut stopping = node.cluster.as_ref().map(|c| c.stopping());
    tokio::spawn(async move {
        let mut id: u64 = 0;
        loop {
            let value = values.borrow_and_update().clone();
            id += 1;
            if tx
                .send(Bytes::from(format!("id: {id}\ndata: {value}\n\n")))
                .await
                .is_err()
            {
                return;
            }
            loop {
                let stop = async {
                    match &mut stopping {
                        Some(s) => {
                            let _ = s.changed().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    changed = values.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        break;
                    }
                    _ = tokio::time::sleep(KEEP_ALIVE) => {
                        if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                            return;
                        }
                    }
                    _ = tx.closed() => return,
                    _ = stop => return,
                }
            }
        }
    });
    let mut response = Response::new(channel(rx));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// `POST /v1/peer/crdt/{kind}`: a crdt replication message from another node.
pub(super) async fn peer(node: &Node, req: Request<Incoming>) -> Result<Response<Body>> {
    let cluster = node
        .cluster
        .as_ref()
        .ok_or_else(|| Error::NotFound("this node is not in a cluster".into()))?;
    let auth = cluster.peer_auth();
    let claim = auth
        .admit(req.headers(), certified(&req))
        .map_err(super::peer::unauthorized)?;
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    auth.verify_head(&claim, &method, &path, false)
        .map_err(super::peer::unauthorized)?;
    let body = read_body(req, 256 << 20, "a crdt peer message").await?;
    auth.verify_body(&claim, &body)
        .map_err(super::peer::unauthorized)?;
    let answer = crate::crdt::serve_peer(&node.crdts, &body).await?;
    let mut response = Response::new(full(answer));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}
