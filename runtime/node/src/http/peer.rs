//! The endpoints between nodes: raft RPCs and append streams
//! (`POST /v1/peer/raft/{group}/{kind}`) and the forwarding exchange (`POST /v1/peer/mux`,
//! upgraded to a byte stream that carries entity commands to this node). Every request is
//! authenticated (`cella_cluster::auth`) before its body is read or its upgrade accepted: one
//! without valid credentials (or, with peer certificates, on a connection without a verified
//! peer certificate) gets 401 and changes nothing.

use std::sync::Arc;

use hyper::{
    Request, Response,
    body::Incoming,
    header::{CONTENT_TYPE, HeaderValue},
};

use cella_cluster::auth::{PeerCertificate, Signed};

use super::{
    Params,
    body::{Body, full, read_body, streaming},
    entity::forwarded_command,
};
use crate::{
    error::{Error, Result},
    node::Node,
};

fn no_cluster() -> Error {
    Error::NotFound("this node is not in a cluster".into())
}

/// `POST /v1/peer/raft/{group}/{kind}`: one raft RPC, or a group's append stream (the answers
/// stream back as the requests are read).
pub(super) async fn raft(
    node: &Node,
    params: &Params<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let cluster = node.cluster.as_ref().ok_or_else(no_cluster)?;
    let auth = cluster.peer_auth();
    // Authenticated before anything of the body is read; the body read is the one signed.
    let claim = auth
        .admit(req.headers(), certified(&req))
        .map_err(unauthorized)?;
    let method = req.method().clone();
    let path = path_and_query(&req);
    let (group, kind) = (params.raw("group"), params.raw("kind"));
    if kind == cella_cluster::stream::STREAM_KIND {
        auth.verify(&claim, &method, &path, Signed::Stream)
            .map_err(unauthorized)?;
        let answers = cluster
            .serve_append_stream(group, req.into_body())
            .map_err(Error::Peer)?;
        return Ok(octet_stream(streaming(answers)));
    }
    auth.verify_head(&claim, &method, &path, false)
        .map_err(unauthorized)?;
    let rest = format!("{group}/{kind}");
    let body = read_body(req, node.options.max_module.max(256 << 20), "a raft RPC").await?;
    auth.verify_body(&claim, &body).map_err(unauthorized)?;
    let answer = cluster
        .serve_peer(&rest, &body)
        .await
        .map_err(Error::Peer)?;
    Ok(octet_stream(full(answer)))
}

/// `POST /v1/peer/mux`: accepts the forwarding exchange of another node. Shutdown waits for
/// the exchange as for a connection.
pub(super) fn mux(node: &Arc<Node>, req: Request<Incoming>) -> Result<Response<Body>> {
    let cluster = node.cluster.as_ref().ok_or_else(no_cluster)?;
    // Authenticated before the upgrade is accepted.
    cluster
        .peer_auth()
        .check(
            req.headers(),
            certified(&req),
            req.method(),
            &path_and_query(&req),
            Signed::Stream,
        )
        .map_err(unauthorized)?;
    let served = node.connections.track();
    let handler_node = node.clone();
    let handler: cella_cluster::mux::Handler = Arc::new(move |path, body, trace| {
        let node = handler_node.clone();
        // The command's span here continues the sender's trace.
        let span = tracing::debug_span!("forwarded.command", otel.kind = "server", path = %path);
        crate::trace::set_parent(&span, &trace);
        Box::pin(tracing::Instrument::instrument(
            async move { forwarded_command(&node, &path, body).await },
            span,
        ))
    });
    let (response, exchange) = cluster.serve_mux(req, handler);
    if let Some(exchange) = exchange {
        tokio::spawn(async move {
            exchange.await;
            drop(served);
        });
    }
    Ok(response.map(streaming))
}

/// A peer request without valid credentials: 401.
pub(super) fn unauthorized(e: cella_cluster::Error) -> Error {
    match e {
        cella_cluster::Error::Unauthorized(m) => Error::Unauthorized(m),
        other => Error::Peer(other),
    }
}

/// The body (at most `limit` bytes, `what` for errors) of a peer request with a signed body,
/// authenticated: its head before anything of the body is read, then the body read against
/// the signature. Without valid credentials: 401.
pub(super) async fn signed_body(
    cluster: &cella_cluster::Cluster,
    req: Request<Incoming>,
    limit: usize,
    what: &'static str,
) -> Result<bytes::Bytes> {
    let auth = cluster.peer_auth();
    let claim = auth
        .admit(req.headers(), certified(&req))
        .map_err(unauthorized)?;
    auth.verify_head(&claim, req.method(), &path_and_query(&req), false)
        .map_err(unauthorized)?;
    let body = read_body(req, limit, what).await?;
    auth.verify_body(&claim, &body).map_err(unauthorized)?;
    Ok(body)
}

/// A peer answer of postcard bytes.
pub(super) fn postcard_reply(bytes: Vec<u8>) -> Response<Body> {
    octet_stream(full(bytes::Bytes::from(bytes)))
}

/// Whether `req` came on a connection whose client certificate the peer CA signed (the edge's
/// mark).
pub(super) fn certified(req: &Request<Incoming>) -> bool {
    req.extensions().get::<PeerCertificate>().is_some()
}

/// The path and query a peer signed.
fn path_and_query(req: &Request<Incoming>) -> String {
    req.uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default()
}

/// A peer answer of postcard bytes.
fn octet_stream(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}
