//! Moving a shard between partitions (`impl Cluster`), as docs/placement.md describes it: on
//! the metadata leader, [`Cluster::move_shard`] begins the move in the routes (its generation),
//! has the source partition's leader freeze the shard and hand over its data
//! ([`Cluster::export_shard`]), commits the data into the target partition (`MoveIn`), and
//! finishes the move in the routes. The steps on other nodes' leaders go over two signed peer
//! requests ([`SHARD_EXPORT_PATH`], [`SHARD_SUBMIT_PATH`]).

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{
    Cluster, Command, Error, GroupId, META_GROUP,
    shards::{RouteOp, ShardData, ShardMove, ShardOp},
    types::{AuditRecord, decode, encode},
};

/// `POST {SHARD_EXPORT_PATH}/{group}/{shard}`: the source leader freezes the shard and answers
/// its data.
pub const SHARD_EXPORT_PATH: &str = "/v1/peer/shard/export";
/// `POST {SHARD_SUBMIT_PATH}/{group}`: a partition's leader commits a shard change.
pub const SHARD_SUBMIT_PATH: &str = "/v1/peer/shard/submit";
/// The most data a move carries (in one log entry, under the peer transport's frame limit).
const MAX_SHARD_BYTES: usize = 64 << 20;
/// How long a step on another node may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A move of a shard under way on this node, forgotten when dropped.
struct Running<'a> {
    cluster: &'a Cluster,
    shard: u32,
}

impl<'a> Running<'a> {
    fn start(cluster: &'a Cluster, shard: u32) -> Result<Running<'a>, Error> {
        let mut running = cluster
            .moves_running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !running.insert(shard) {
            return Err(Error::Membership(format!(
                "shard {shard} is being moved already"
            )));
        }
        Ok(Running { cluster, shard })
    }
}

impl Cluster {
    /// Whether this node is moving `shard` now.
    pub(crate) fn moving_here(&self, shard: u32) -> bool {
        self.moves_running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&shard)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.cluster
            .moves_running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.shard);
    }
}

/// What an operator asks of `POST /v1/cluster/shards/{shard}/move`.
#[derive(Clone, Debug)]
pub struct ShardMoveRequest {
    pub shard: u32,
    pub to: GroupId,
    /// Who asks (for the audit record).
    pub actor: String,
    /// Why, if not because an operator asked (the placement loop's reason).
    pub reason: Option<String>,
}

/// What a move did.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardMoveOutcome {
    #[serde(rename = "move")]
    pub made: ShardMove,
    /// Entities the shard held.
    pub entities: usize,
    pub took_ms: u64,
}

impl Cluster {
    /// Moves a shard to another partition (this node must lead the metadata group).
    pub async fn move_shard(&self, request: ShardMoveRequest) -> Result<ShardMoveOutcome, Error> {
        let started = Instant::now();
        self.meta_leadership()
            .map_err(|_| Error::NotLeader("this node does not lead the metadata group".into()))?;
        let ShardMoveRequest {
            shard,
            to,
            actor,
            reason,
        } = request;
        let placement = self.placement;
        if shard >= placement.shards {
            return Err(Error::Membership(format!(
                "there is no shard {shard}: the cluster has shards 0 to {}",
                placement.shards.saturating_sub(1)
            )));
        }
        if !placement.groups().any(|g| g == to) {
            return Err(Error::Membership(format!(
                "there is no partition {to}: the cluster has partitions 1 to {}",
                placement.partitions
            )));
        }
        // One move of a shard at a time here (a move begun elsewhere and left unfinished, by a
        // metadata leader that failed, is taken over: asking again finishes it).
        let _running = Running::start(self, shard)?;
        let from = self.routes_now().partition(&placement, shard);
        if from == to {
            return Err(Error::Membership(format!(
                "shard {shard} is already in partition {to}"
            )));
        }
        let mut record = AuditRecord::new(&actor, "move-shard");
        record.detail = Some(match reason {
            Some(why) => format!("shard {shard}: partition {from} -> {to} ({why})"),
            None => format!("shard {shard}: partition {from} -> {to}"),
        });
        // A move left unfinished is resumed, never undone: its data may have reached the
        // target already, whose replicas then ignore the source's writes of the shard.
        let resumed = self.routes_now().moving.contains_key(&shard);
        let unfinished = |e: Error| {
            Error::Membership(format!(
                "the move of shard {shard} to partition {to} did not finish ({e}); its commands \
                 wait until it does: ask for the same move again"
            ))
        };
        let generation = self
            .commit(
                META_GROUP,
                Command::Route {
                    record: record.clone(),
                    op: RouteOp::Begin { shard, from, to },
                },
            )
            .await?;
        let exported = async {
            let data = self.export_from(from, shard).await?;
            let bytes = encode("a shard's data", &data)?.len();
            if bytes > MAX_SHARD_BYTES {
                return Err(Error::Membership(format!(
                    "shard {shard} holds {bytes} bytes; a move carries at most {MAX_SHARD_BYTES} \
                     in one log entry"
                )));
            }
            Ok(data)
        }
        .await;
        let data = match exported {
            Ok(data) => data,
            Err(e) if resumed => return Err(unfinished(e)),
            Err(e) => {
                // No data left the source: lift the freeze and forget the move.
                let _ = self
                    .commit_on_leader(from, Command::Shard(ShardOp::Unfreeze { shard }))
                    .await;
                let _ = self
                    .commit(
                        META_GROUP,
                        Command::Route {
                            record: record.clone(),
                            op: RouteOp::Abort { shard },
                        },
                    )
                    .await;
                return Err(e);
            }
        };
        let entities = data.entities.len();
        // From here the shard stays frozen at its source until the move finishes: its data may
        // have reached the target, whose replicas then ignore the source's writes of it.
        self.commit_on_leader(
            to,
            Command::Shard(ShardOp::MoveIn {
                shard,
                generation,
                data,
            }),
        )
        .await
        .map_err(unfinished)?;
        self.commit(
            META_GROUP,
            Command::Route {
                record,
                op: RouteOp::Finish { shard },
            },
        )
        .await
        .map_err(unfinished)?;
        let made = self
            .routes_now()
            .moves
            .iter()
            .rev()
            .find(|m| m.shard == shard && m.generation == generation)
            .cloned()
            .ok_or_else(|| {
                Error::Membership(format!("the move of shard {shard} is not recorded"))
            })?;
        Ok(ShardMoveOutcome {
            made,
            entities,
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// As the leader of `group`: freezes `shard`, lets the appends under way commit, and
    /// answers the shard's data as of the partition's last write of it.
    pub async fn export_shard(&self, group: GroupId, shard: u32) -> Result<ShardData, Error> {
        let g = self.led(group)?;
        // Applied here once committed: from then on no append of the shard is submitted here
        // (`ClusterJournal` refuses them), and a new leader applies it before it serves.
        self.commit(group, Command::Shard(ShardOp::Freeze { shard }))
            .await?;
        // The appends submitted before it resolve; then everything committed is applied here,
        // so the store holds the shard as of its last write.
        self.barrier(g)
            .await
            .map_err(|e| Error::Membership(format!("waiting for the appends under way: {e}")))?;
        self.ready(g).await?;
        g.state_machine.read_shard(shard)
    }

    /// Partition `group`, which this node must lead.
    fn led(&self, group: GroupId) -> Result<&crate::cluster::Group, Error> {
        let g = self
            .group(group)
            .ok_or_else(|| Error::Membership(format!("there is no partition {group}")))?;
        if self.leadership(g).is_none() {
            return Err(Error::NotLeader(format!(
                "this node does not lead partition {group}"
            )));
        }
        Ok(g)
    }

    /// The routes as applied here.
    pub fn routes_now(&self) -> crate::shards::Routes {
        self.routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Commits `command` to `group` here, as its leader; answers the entry's log index.
    pub async fn commit(&self, group: GroupId, command: Command) -> Result<u64, Error> {
        let g = self
            .group(group)
            .ok_or_else(|| Error::Membership(format!("there is no group {group}")))?;
        g.raft
            .client_write(command)
            .await
            .map(|r| r.log_id.index())
            .map_err(|e| Error::raft(format!("committing to group {group}"), e))
    }

    /// Commits a shard change to `group` through its leader, here or on another node.
    async fn commit_on_leader(&self, group: GroupId, command: Command) -> Result<u64, Error> {
        let body = encode("a shard change", &command)?;
        let reply = self
            .on_leader(group, &format!("{SHARD_SUBMIT_PATH}/{group}"), body, || {
                self.commit(group, command.clone())
            })
            .await?;
        decode("a log index", &reply)
    }

    /// Has the leader of `from` freeze `shard` and hand over its data, here or on another
    /// node.
    async fn export_from(&self, from: GroupId, shard: u32) -> Result<ShardData, Error> {
        let reply = self
            .on_leader(
                from,
                &format!("{SHARD_EXPORT_PATH}/{from}/{shard}"),
                Vec::new(),
                || self.export_shard(from, shard),
            )
            .await?;
        decode("a shard's data", &reply)
    }

    /// Runs `here` if this node leads `group`, else sends `body` to `path` on its leader;
    /// answers the bytes either gives.
    async fn on_leader<T, F, Fut>(
        &self,
        group: GroupId,
        path: &str,
        body: Vec<u8>,
        here: F,
    ) -> Result<Vec<u8>, Error>
    where
        T: serde::Serialize,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let g = self
            .group(group)
            .ok_or_else(|| Error::Membership(format!("there is no group {group}")))?;
        if self.leadership(g).is_some() {
            let value = here().await?;
            return encode("a shard step's answer", &value);
        }
        let (_, addr) = self
            .leader(g)
            .ok_or_else(|| Error::NotLeader(format!("partition {group} has no leader now")))?;
        let reply = self
            .client
            .send(
                &addr,
                hyper::Method::POST,
                path,
                &[],
                Bytes::from(body),
                STEP_TIMEOUT,
            )
            .await
            .map_err(|e| Error::NotLeader(format!("partition {group}'s leader at {addr}: {e}")))?;
        if !reply.status.is_success() {
            return Err(Error::Membership(format!(
                "partition {group}'s leader at {addr} answered {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            )));
        }
        Ok(reply.body.to_vec())
    }

    /// Answers a peer's shard step (its signature already checked): `export` of `shard`, or
    /// `submit` of a shard change (only those) to `group`, which this node must lead.
    pub async fn serve_shard_step(
        &self,
        group: GroupId,
        shard: Option<u32>,
        body: &[u8],
    ) -> Result<Vec<u8>, Error> {
        match shard {
            Some(shard) => encode("a shard's data", &self.export_shard(group, shard).await?),
            None => {
                let command: Command = decode("a shard change", body)?;
                if !matches!(command, Command::Shard(_)) || group == META_GROUP {
                    return Err(Error::Membership(
                        "a peer may submit only shard changes to a partition".into(),
                    ));
                }
                self.led(group)?;
                encode("a log index", &self.commit(group, command).await?)
            }
        }
    }
}
