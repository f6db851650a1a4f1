//! Ordered submission of journal appends to one group's raft log.
//!
//! The entity layer relies on appends being durable in submission order, and hands an append
//! to the journal under the entity's lock but awaits it after releasing the lock (pipelining).
//! `Raft::write` only enqueues when polled, so appends are first put on a per-group queue, in
//! call order, and one pump task per group hands them to raft in that order. Each append carries
//! the leader id its entity was loaded under: raft refuses it if leadership changed since, so a
//! state cached under an old leadership never writes.
//!
//! An append resolves once committed, which is before the state machine has applied it: the
//! leader's entity cache already holds the new state, and a reader of the store first waits for
//! the apply (`Cluster::ready`). A barrier resolves once every append submitted before it has
//! resolved (each append gets a ticket; completions advance a watermark).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use cella_core::{AppendFuture, Write};
use openraft::{
    Raft, alias::CommittedLeaderIdOf, error::ClientWriteError, impls::ProgressResponder,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{Command, StateMachine, TypeConfig};

type C = TypeConfig;

struct Item {
    writes: Vec<Write>,
    leader: Option<CommittedLeaderIdOf<C>>,
    ticket: u64,
    done: oneshot::Sender<cella_core::Result<()>>,
}

/// The submission queue of one group.
pub struct Submitter {
    queue: mpsc::UnboundedSender<Item>,
    issued: AtomicU64,
    finished: Arc<watch::Sender<u64>>,
}

impl Submitter {
    /// Starts the pump task of `raft`'s group.
    pub fn start(raft: Raft<C, StateMachine>) -> Submitter {
        let (queue, rx) = mpsc::unbounded_channel();
        let finished = Arc::new(watch::Sender::new(0u64));
        tokio::spawn(pump(raft, rx, finished.clone()));
        Submitter {
            queue,
            issued: AtomicU64::new(0),
            finished,
        }
    }

    /// Queues an append, to commit only under `leader` (if given). Resolves once committed
    /// (durable on a quorum); applying it to the store may still be under way.
    pub fn submit(
        &self,
        writes: Vec<Write>,
        leader: Option<CommittedLeaderIdOf<C>>,
    ) -> AppendFuture {
        let (done, rx) = oneshot::channel();
        let ticket = self.issued.fetch_add(1, Ordering::AcqRel) + 1;
        let sent = self.queue.send(Item {
            writes,
            leader,
            ticket,
            done,
        });
        let finished = self.finished.clone();
        Box::pin(async move {
            if sent.is_err() {
                finished.send_modify(|f| *f = (*f).max(ticket));
                return Err(cella_core::Error::Unconfirmed(
                    "the group is shut down".into(),
                ));
            }
            rx.await.unwrap_or_else(|_| {
                Err(cella_core::Error::Unconfirmed(
                    "the group stopped before answering".into(),
                ))
            })
        })
    }

    /// Resolves once every append submitted before this call has resolved.
    pub fn barrier(&self) -> AppendFuture {
        let ticket = self.issued.load(Ordering::Acquire);
        let mut finished = self.finished.subscribe();
        Box::pin(async move {
            finished
                .wait_for(|f| *f >= ticket)
                .await
                .map(drop)
                .map_err(|_| cella_core::Error::Unconfirmed("the group is shut down".into()))
        })
    }
}

async fn pump(
    raft: Raft<C, StateMachine>,
    mut rx: mpsc::UnboundedReceiver<Item>,
    finished: Arc<watch::Sender<u64>>,
) {
    while let Some(item) = rx.recv().await {
        let (responder, committed, applied) = ProgressResponder::<C, _>::new();
        let mut request = raft
            .write(Command::Journal(item.writes))
            .responder(responder);
        if let Some(leader) = item.leader {
            request = request.with_leader(leader);
        }
        let ticket = item.ticket;
        if let Err(fatal) = request.await {
            let _ = item
                .done
                .send(Err(cella_core::Error::Unconfirmed(fatal.to_string())));
            finished.send_modify(|f| *f = (*f).max(ticket));
            continue;
        }
        let finished = finished.clone();
        let done = item.done;
        tokio::spawn(async move {
            // Committed means durable on a quorum: the append's answer. Without a commit, the
            // completion says why.
            if committed.await.is_ok() {
                let _ = done.send(Ok(()));
                finished.send_modify(|f| *f = (*f).max(ticket));
                // Raft answers the completion too; someone has to take it.
                drop(applied.await);
                return;
            }
            let outcome = match applied.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(ClientWriteError::ForwardToLeader(f))) => Err(
                    cella_core::Error::Unconfirmed(format!("this node no longer leads: {f}")),
                ),
                Ok(Err(e)) => Err(cella_core::Error::Unconfirmed(e.to_string())),
                Err(_) => Err(cella_core::Error::Unconfirmed(
                    "the group stopped before committing the append".into(),
                )),
            };
            let _ = done.send(outcome);
            finished.send_modify(|f| *f = (*f).max(ticket));
        });
    }
}
