//! What this node answers its peers: raft RPCs, append streams and forwarding exchanges, each
//! for the group its path names, and the end of the streams when the node stops.

use crate::{
    Error, GroupId,
    cluster::{Cluster, Group},
    mux, network,
    stream::{self, StreamingBody},
};

impl Cluster {
    /// Answers a raft RPC addressed to `path` (`{group}/{kind}`, after
    /// [`network::RAFT_PATH`]).
    pub async fn serve_peer(&self, path: &str, body: &[u8]) -> Result<Vec<u8>, Error> {
        let (group, kind) = path.split_once('/').ok_or_else(|| Error::Malformed {
            what: "a raft RPC path",
            message: format!("`{path}` is not GROUP/KIND"),
        })?;
        network::serve_rpc(&self.peer_group(group)?.raft, kind, body).await
    }

    /// Answers the append stream of `group` (see [`crate::stream`]).
    pub fn serve_append_stream(
        &self,
        group: &str,
        body: hyper::body::Incoming,
    ) -> Result<StreamingBody, Error> {
        Ok(stream::serve(
            self.peer_group(group)?.raft.clone(),
            body,
            self.stopping.subscribe(),
        ))
    }

    /// Answers a peer's request for a forwarding exchange: the answer, and the exchange to run
    /// once it is sent, in which `handler` runs each command (see [`mux::accept`]).
    pub fn serve_mux(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
        handler: mux::Handler,
    ) -> (
        hyper::Response<StreamingBody>,
        Option<futures_util::future::BoxFuture<'static, ()>>,
    ) {
        mux::accept(request, handler, self.stopping.subscribe())
    }

    /// The group named by the `group` segment of a raft RPC path.
    fn peer_group(&self, group: &str) -> Result<&Group, Error> {
        let bad = |message: String| Error::Malformed {
            what: "a raft RPC path",
            message,
        };
        let id: GroupId = group
            .parse()
            .map_err(|_| bad(format!("`{group}` is not a group number")))?;
        self.groups
            .get(&id)
            .ok_or_else(|| bad(format!("there is no group {id}")))
    }

    /// Ends the append streams this node answers (they would hold a graceful shutdown of its
    /// connections until the leaders close them); leaders open new ones when they can.
    pub fn stop_streams(&self) {
        self.stopping.send_replace(true);
    }
}
