//! Starting and stopping this node's groups: [`Cluster::start`] checks the placement the
//! store was created with, opens every group on the store, initializes the groups this node
//! is the lowest initial replica of, settles a node alone (it elects itself at once) and starts
//! the leader balancer and the placement loop; [`Cluster::shutdown`] stops them.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use cella_store::Store;
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};

use crate::{
    Error, GroupId, LogStore, Placement, StateMachine,
    cluster::{Cluster, ClusterOptions, Group, META_GROUP, layout},
    network::{GroupNetwork, PeerClient},
    submit::Submitter,
};

/// Where a node's store records the placement it was created with.
const PLACEMENT_GROUP: GroupId = u64::MAX;

/// Records the placement on first start; refuses a different one later (entities would be
/// looked up in the wrong partitions).
async fn check_placement(store: &Store, placement: Placement) -> Result<(), Error> {
    match store.group_state(PLACEMENT_GROUP, "placement")? {
        Some(bytes) => {
            let stored: Placement = crate::types::decode("the placement", &bytes)?;
            if stored != placement {
                return Err(Error::Config(format!(
                    "this data directory belongs to a cluster of {} partitions over {} shards, not \
                     {} over {}; start with --partitions {}",
                    stored.partitions,
                    stored.shards,
                    placement.partitions,
                    placement.shards,
                    stored.partitions
                )));
            }
            Ok(())
        }
        None => store
            .write_group(vec![cella_store::GroupWrite::State {
                group: PLACEMENT_GROUP,
                name: "placement".into(),
                value: Some(crate::types::encode("the placement", &placement)?),
            }])
            .await
            .map_err(Error::from),
    }
}

/// The heartbeat suppression window: the heartbeat interval, or less if the election timeout
/// leaves less room (a suppressed heartbeat goes at most this window, an interval and one
/// tick late, which must stay under the least election timeout); `None` if it leaves none.
fn heartbeat_min_interval(options: &ClusterOptions) -> Option<u64> {
    let tick = (options.heartbeat_ms * 13 / 64).max(1);
    let room = options
        .election_timeout_ms
        .0
        .saturating_sub(options.heartbeat_ms + tick + 1);
    Some(room.min(options.heartbeat_ms)).filter(|w| *w > 0)
}

impl Cluster {
    /// Opens every group on `store` and starts them; initializes the groups of which this node
    /// is the lowest initial replica and that are not initialized yet.
    pub async fn start(store: Store, options: ClusterOptions) -> Result<Arc<Cluster>, Error> {
        let placement = options.placement;
        check_placement(&store, placement).await?;
        let client = PeerClient::with_auth(options.peers.clone(), options.node_id);
        let every = options.snapshot_every.max(1);
        let config = Config {
            cluster_name: "cella".into(),
            heartbeat_interval: options.heartbeat_ms,
            // No heartbeat to a follower that acknowledged an append this recently: under
            // sustained writes, replication already proves liveness and extends the lease.
            heartbeat_min_interval: heartbeat_min_interval(&options),
            election_timeout_min: options.election_timeout_ms.0,
            election_timeout_max: options.election_timeout_ms.1,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(every),
            // Keep a tail so that a briefly lagging replica catches up from the log.
            max_in_snapshot_log_to_keep: (every / 10).min(1_000),
            // An entry carries at most about `MAX_BATCH_BYTES` of appends (one large append
            // more): this many stay well under the peer transport's body limit.
            max_payload_entries: 64,
            ..Default::default()
        };
        // The metadata group keeps its whole log (its snapshot would not carry the modules):
        // a new node replays it.
        // Its entries may each carry a whole module: one per message.
        let meta_config = Config {
            snapshot_policy: SnapshotPolicy::Never,
            max_payload_entries: 1,
            ..config.clone()
        };
        let validate = |c: Config| c.validate().map_err(|e| Error::Config(e.to_string()));
        let (config, meta_config) = (
            Arc::new(validate(config)?),
            Arc::new(validate(meta_config)?),
        );
        let mut groups = BTreeMap::new();
        let (module_tx, module_rx) = tokio::sync::mpsc::unbounded_channel();
        let meter = Arc::new(crate::load::LoadMeter::new(
            placement.groups(),
            placement.shards,
        ));
        let leaders = Arc::new(std::sync::RwLock::default());
        let placement_changed = Arc::new(tokio::sync::Notify::new());
        let owners = Arc::new(crate::state_machine::load_owners(&store, placement)?);
        let routes = Arc::new(std::sync::RwLock::default());
        let (moved_in_tx, moved_in_rx) = tokio::sync::mpsc::unbounded_channel();
        for group in std::iter::once(META_GROUP).chain(placement.groups()) {
            let log = LogStore::open(store.clone(), group)?;
            let mut state_machine =
                StateMachine::open(store.clone(), group, placement, owners.clone())?;
            if group == META_GROUP {
                state_machine = state_machine
                    .with_module_events(module_tx.clone())
                    .with_leaders(leaders.clone(), placement_changed.clone())?
                    .with_routes(routes.clone())?;
            } else {
                state_machine = state_machine.with_moved_in(moved_in_tx.clone());
            }
            let network = GroupNetwork {
                group,
                client: client.clone(),
            };
            let raft = Raft::new(
                options.node_id,
                if group == META_GROUP {
                    meta_config.clone()
                } else {
                    config.clone()
                },
                network,
                log,
                state_machine.clone(),
            )
            .await
            .map_err(|e| Error::raft(format!("starting group {group}"), e))?;
            let submitter = Submitter::start(raft.clone(), meter.group(group));
            groups.insert(
                group,
                Group {
                    id: group,
                    raft,
                    state_machine,
                    submitter,
                    handing_over: Default::default(),
                },
            );
        }
        let cluster = Arc::new(Cluster {
            module_events: std::sync::Mutex::new(Some(module_rx)),
            reconciling: Arc::default(),
            stopping: tokio::sync::watch::Sender::new(false),
            options,
            placement,
            client,
            groups,
            meter,
            leaders,
            routes,
            owners,
            moved_in: std::sync::Mutex::new(Some(moved_in_rx)),
            moves_running: Default::default(),
        });
        cluster.initialize().await?;
        cluster.settle_alone().await?;
        let balancer = Arc::downgrade(&cluster);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1000));
            loop {
                // Every second, and at once when the leader placement changes.
                tokio::select! {
                    _ = tick.tick() => {}
                    () = placement_changed.notified() => {}
                }
                let Some(cluster) = balancer.upgrade() else {
                    break;
                };
                cluster.balance().await;
            }
        });
        let placer = Arc::downgrade(&cluster);
        let interval = cluster
            .options
            .rebalance
            .interval
            .max(Duration::from_millis(50));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut state = crate::placing::PlacementState::default();
            loop {
                tick.tick().await;
                let Some(cluster) = placer.upgrade() else {
                    break;
                };
                cluster.placement_round(&mut state).await;
            }
        });
        Ok(cluster)
    }

    async fn initialize(&self) -> Result<(), Error> {
        if self.options.initial.is_empty() {
            return Err(Error::Config("the initial cluster is empty".into()));
        }
        if self.options.join {
            return Ok(());
        }
        let nodes: Vec<u64> = self.options.initial.keys().copied().collect();
        for group in self.groups.values() {
            // The lowest id among a group's initial replicas initializes it.
            let replicas = layout(group.id, &nodes, self.options.replicas);
            if replicas.iter().min() != Some(&self.options.node_id) {
                continue;
            }
            let initialized = group.raft.is_initialized().await.map_err(|e| {
                Error::raft(
                    format!("checking whether group {} is initialized", group.id),
                    e,
                )
            })?;
            if initialized {
                continue;
            }
            let members: BTreeMap<u64, BasicNode> = replicas
                .into_iter()
                .map(|id| (id, BasicNode::new(self.options.initial[&id].clone())))
                .collect();
            group
                .raft
                .initialize(members)
                .await
                .map_err(|e| Error::raft(format!("initializing group {}", group.id), e))?;
        }
        Ok(())
    }

    /// A node alone in its cluster (the single-node default) elects itself in every group at
    /// once instead of after an election timeout, waits until it leads them all (so that the
    /// first requests find leaders), and records its current address if it moved (a restart
    /// on another port), for nodes that join later.
    async fn settle_alone(&self) -> Result<(), Error> {
        if self.options.join {
            return Ok(());
        }
        let me = self.options.node_id;
        for group in self.groups.values() {
            let initialized = group.raft.is_initialized().await.map_err(|e| {
                Error::raft(
                    format!("checking whether group {} is initialized", group.id),
                    e,
                )
            })?;
            if !initialized {
                continue;
            }
            // Metrics follow initialization asynchronously: wait until they show the members.
            let metrics = group
                .raft
                .wait(Some(Duration::from_secs(10)))
                .metrics(
                    |m| {
                        m.membership_config
                            .membership()
                            .voter_ids()
                            .next()
                            .is_some()
                    },
                    "the group's membership is known",
                )
                .await
                .map_err(|e| Error::raft(format!("group {}'s membership", group.id), e))?;
            let membership = metrics.membership_config.membership();
            if membership.voter_ids().collect::<Vec<_>>() != [me] {
                continue;
            }
            let recorded = membership.get_node(&me).map(|n| n.addr.clone());
            if metrics.state != ServerState::Leader {
                let _ = group.raft.trigger().elect(false).await;
            }
            group
                .raft
                .wait(Some(Duration::from_secs(10)))
                .state(ServerState::Leader, "a node alone leads its groups")
                .await
                .map_err(|e| Error::raft(format!("group {} elected no leader", group.id), e))?;
            if recorded.as_deref() != Some(self.options.addr.as_str()) {
                let node = BTreeMap::from([(me, BasicNode::new(&self.options.addr))]);
                group
                    .raft
                    .change_membership(openraft::ChangeMembers::SetNodes(node), false)
                    .await
                    .map_err(|e| Error::raft("recording this node's address", e))?;
            }
        }
        Ok(())
    }

    /// Stops every group.
    pub async fn shutdown(&self) {
        self.stop_streams();
        for group in self.groups.values() {
            let _ = group.raft.shutdown().await;
        }
    }
}
