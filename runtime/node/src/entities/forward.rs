//! `forward` effects: once a command is committed, the command it forwards runs here when this
//! node leads the target entity, or goes through the [`Forwarder`] to the node that does, at
//! most [`EntityOptions::max_forward_depth`](super::EntityOptions::max_forward_depth) deep.

use cella_core::EntityId;
use cella_host::Call;

use super::{Entities, effects::Invocation};
use crate::error::{Error, Result};

/// Sends a command to the node that owns its entity (a `forward` effect in a cluster).
pub trait Forwarder: Send + Sync {
    fn forward(
        &self,
        owner: String,
        id: EntityId,
        command: String,
        payload: String,
        request_id: Option<String>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String>> + Send>>;
}

impl Entities {
    /// Runs the command a committed command forwarded (`depth` counts the forwards so far).
    pub(super) async fn forward_effect(
        &self,
        call: Call,
        request_id: Option<String>,
        depth: u32,
    ) -> Result<String> {
        if depth >= self.options.max_forward_depth {
            return Err(Error::EntityFailed(format!(
                "forwarded more than {} times",
                self.options.max_forward_depth
            )));
        }
        // The command above is committed: whatever happens to the forward must not look
        // like "not run here" (`NotLeader`), which the HTTP layer would retry elsewhere.
        let target = EntityId::new(&call.entity_type, &call.key);
        let unowned = |leader: Option<String>| {
            Error::Unavailable(format!(
                "forwarding to {target}: its partition {}",
                match leader {
                    Some(addr) => format!("is led by {addr}, which is not reachable from here"),
                    None => "has no leader right now".to_string(),
                }
            ))
        };
        match (self.lease(&target), &self.forwarder) {
            (
                Err(Error::NotLeader {
                    leader: Some(owner),
                }),
                Some(forwarder),
            ) => {
                return forwarder
                    .forward(owner, target, call.command, call.payload, request_id)
                    .await;
            }
            (Err(Error::NotLeader { leader }), _) => return Err(unowned(leader)),
            _ => {}
        }
        let invocation = Invocation {
            request_id,
            ..Invocation::default()
        };
        Box::pin(self.command_at_depth(
            &call.entity_type,
            &call.key,
            &call.command,
            call.payload,
            &invocation,
            depth + 1,
        ))
        .await
        .map_err(|e| match e {
            Error::NotLeader { leader } => unowned(leader),
            other => other,
        })
    }
}
