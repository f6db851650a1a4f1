//! Ordered submission of journal appends to one group's raft log.
//!
//! The entity layer relies on appends being durable in submission order, and hands an append
//! to the journal under the entity's lock but awaits it after releasing the lock (pipelining).
//! `Raft::write` only enqueues when polled, so appends are first put on a per-group queue, in
//! call order, and one pump task per group hands them to raft in that order. Each append carries
//! the leader id its entity was loaded under: raft refuses it if leadership changed since, so a
//! state cached under an old leadership never writes.
//!
//! Appends queued together under the same leader condition are proposed as one raft entry
//! (their writes concatenated, in order), so a busy partition pays raft's per-entry costs once
//! per batch. An append resolves once committed, which is before the state machine has applied it: the
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

/// Appends queued together that share a leader condition go to raft as one entry.
const MAX_BATCH: usize = 256;

async fn pump(
    raft: Raft<C, StateMachine>,
    mut rx: mpsc::UnboundedReceiver<Item>,
    finished: Arc<watch::Sender<u64>>,
) {
    let mut held: Option<Item> = None;
    loop {
        let first = match held.take() {
            Some(item) => item,
            None => match rx.recv().await {
                Some(item) => item,
                None => break,
            },
        };
        // Everything already queued under the same leader condition joins this entry: one
        // raft entry (one log write, one replication message) for many appends.
        let leader = first.leader;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) if item.leader == leader => batch.push(item),
                Ok(item) => {
                    held = Some(item);
                    break;
                }
                Err(_) => break,
            }
        }
        let ticket = batch.iter().map(|i| i.ticket).max().unwrap_or(0);
        let mut writes = Vec::new();
        let mut dones = Vec::with_capacity(batch.len());
        for item in batch {
            writes.extend(item.writes);
            dones.push(item.done);
        }
        let (responder, committed, applied) = ProgressResponder::<C, _>::new();
        let mut request = raft.write(Command::Journal(writes)).responder(responder);
        if let Some(leader) = leader {
            request = request.with_leader(leader);
        }
        if let Err(fatal) = request.await {
            for done in dones {
                let _ = done.send(Err(cella_core::Error::Unconfirmed(fatal.to_string())));
            }
            finished.send_modify(|f| *f = (*f).max(ticket));
            continue;
        }
        let finished = finished.clone();
        tokio::spawn(async move {
            // Committed means durable on a quorum: the appends' answer. Without a commit, the
            // completion says why.
            if committed.await.is_ok() {
                for done in dones {
                    let _ = done.send(Ok(()));
                }
                finished.send_modify(|f| *f = (*f).max(ticket));
                // Raft answers the completion too; someone has to take it.
                drop(applied.await);
                return;
            }
            let message = match applied.await {
                Ok(Ok(_)) => None,
                Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
                    Some(format!("this node no longer leads: {f}"))
                }
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("the group stopped before committing the append".into()),
            };
            for done in dones {
                let outcome = match &message {
                    None => Ok(()),
                    Some(m) => Err(cella_core::Error::Unconfirmed(m.clone())),
                };
                let _ = done.send(outcome);
            }
            finished.send_modify(|f| *f = (*f).max(ticket));
        });
    }
}
