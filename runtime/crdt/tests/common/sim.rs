//! The simulated cluster of `gossip_sim.rs`: nodes holding [`Replicas`], a network that drops,
//! duplicates, delays and reorders messages, crashes and restarts, all drawn from one seed; and
//! beside every replica and message, the operations it carries (the model the checks use).

use std::collections::{BTreeMap, BTreeSet};

use cella_crdt::{Address, BUCKETS, Crdt, Kind, Op, Replicas, Write};

/// Entities per kind; each kind has its own entity type, so that kinds never clash.
pub const KEYS: usize = 2;
/// Entities in all.
pub const ENTITIES: usize = Kind::ALL.len() * KEYS;

/// Entity `e`: its kind and address.
pub fn entity(e: usize) -> (Kind, Address) {
    let kind = Kind::ALL[e / KEYS];
    let address = (format!("{kind:?}").to_lowercase(), format!("k{}", e % KEYS));
    (kind, address)
}

/// Node `i`'s replica id after `epoch` ephemeral restarts.
pub fn replica_id(i: usize, epoch: u32) -> String {
    format!("n{i}e{epoch}")
}

pub fn all_buckets() -> Vec<usize> {
    (0..BUCKETS).collect()
}

/// The operations a message or a replica carries: indices into the log of operations.
pub type Ghost = BTreeSet<usize>;

/// xorshift64*, seeded by proptest: the schedule, the network's faults, the crashes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng((seed ^ 0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick(&mut self, from: &[usize]) -> usize {
        from[self.below(from.len())]
    }
}

/// The network's faults while the nodes are disturbed (quiescence loses nothing).
#[derive(Clone, Copy, Debug)]
pub struct Net {
    /// Percent of messages lost.
    pub drop: u64,
    /// Percent of deliveries that leave a copy in flight, delivered again later.
    pub dup: u64,
    /// Every delta and confirmation is lost, quiescence included: only anti-entropy repairs.
    pub deltas_lost: bool,
}

/// One entity's delta or state in a message, with the operations it carries.
#[derive(Clone, Debug)]
pub struct Item {
    pub address: Address,
    pub state: Crdt,
    pub ghost: Ghost,
}

#[derive(Clone, Debug)]
pub enum Body {
    /// Queued deltas, to merge and confirm.
    Deltas { batch: u64, items: Vec<Item> },
    /// The deltas of `batch` were merged by the sender, in its `epoch`.
    Confirm { batch: u64, epoch: u32 },
    /// The sender's digest: answer with the states of the buckets that differ.
    Digest(Vec<u64>),
    /// States to merge; with `reply_with`, answer with ours in those buckets.
    States {
        reply_with: Option<Vec<usize>>,
        items: Vec<Item>,
    },
}

#[derive(Clone, Debug)]
pub struct Msg {
    pub from: usize,
    pub to: usize,
    pub body: Body,
}

pub struct Node {
    pub replicas: Replicas,
    pub up: bool,
    /// Ephemeral restarts so far: a new epoch is a new replica id.
    pub epoch: u32,
    /// What a durable node had stored when it crashed.
    pub saved: Option<Vec<Item>>,
    /// The operations each replica carries.
    pub knows: BTreeMap<Address, Ghost>,
    /// The operations of the deltas queued per (peer, entity).
    pub queued: BTreeMap<(usize, Address), Ghost>,
    /// Batches sent and not yet confirmed: peer and deltas.
    pub sent: BTreeMap<u64, (usize, Vec<Item>)>,
}

/// An operation that a node applied.
pub struct Done {
    pub node: usize,
    pub epoch: u32,
    pub replica: String,
    pub entity: usize,
    pub op: Op,
    /// A register's write, with the timestamp the register gave it.
    pub write: Option<Write>,
    /// Whether its delta was empty (a `Clear` of a map key never written adds nothing).
    pub empty: bool,
}

/// What a run went through, to check that the schedules exercise every fault.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub applied: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub durable_restarts: usize,
    pub ephemeral_restarts: usize,
    pub late_copies: usize,
    pub forgotten: usize,
}

/// Late copies of delivered deltas and states, and their own randomness, which also orders
/// quiescence: nothing the main schedule draws depends on them.
pub struct Late {
    pub rng: Rng,
    pub copies: Vec<(usize, u32, Vec<Item>)>,
}

pub struct Sim {
    pub net: Net,
    /// Quiescence: no loss, no duplicates.
    pub calm: bool,
    pub nodes: Vec<Node>,
    pub flight: Vec<Msg>,
    pub rng: Rng,
    pub late: Option<Late>,
    pub log: Vec<Done>,
    /// (operation, node, epoch): the node confirmed a delta carrying the operation.
    pub acked: BTreeSet<(usize, usize, u32)>,
    pub next_batch: u64,
    pub stats: Stats,
}

impl Sim {
    /// `nodes` nodes up with empty replicas; with `late`, late copies of deliveries are kept.
    pub fn new(nodes: usize, seed: u64, net: Net, late: bool) -> Sim {
        let mut sim = Sim {
            net,
            calm: false,
            nodes: Vec::new(),
            flight: Vec::new(),
            rng: Rng::new(seed),
            late: late.then(|| Late {
                rng: Rng::new(!seed),
                copies: Vec::new(),
            }),
            log: Vec::new(),
            acked: BTreeSet::new(),
            next_batch: 0,
            stats: Stats::default(),
        };
        for i in 0..nodes {
            let mut replicas = Replicas::new(replica_id(i, 0));
            replicas.set_peers((0..nodes).filter(|&p| p != i).map(|p| p as u64));
            sim.nodes.push(Node {
                replicas,
                up: true,
                epoch: 0,
                saved: None,
                knows: BTreeMap::new(),
                queued: BTreeMap::new(),
                sent: BTreeMap::new(),
            });
        }
        sim
    }

    pub fn peers(&self, i: usize) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&p| p != i).collect()
    }

    /// Puts `msg` in flight, encoded and decoded as on the wire, unless the network loses it.
    pub fn send(&mut self, mut msg: Msg) {
        let delta = matches!(msg.body, Body::Deltas { .. } | Body::Confirm { .. });
        if (self.net.deltas_lost && delta) || (!self.calm && self.rng.chance(self.net.drop)) {
            self.stats.lost += 1;
            return;
        }
        if let Body::Deltas { items, .. } | Body::States { items, .. } = &mut msg.body {
            for item in items {
                // Over the wire, in the stored and sent form.
                let bytes = item.state.encode().expect("encodes");
                item.state = Crdt::decode(&bytes).expect("decodes");
            }
        }
        self.flight.push(msg);
    }

    /// Delivers the message in flight at `index`, maybe leaving a copy in flight.
    pub fn deliver(&mut self, index: usize) {
        let msg = self.flight.remove(index);
        if !self.calm && self.rng.chance(self.net.dup) {
            self.stats.duplicated += 1;
            self.flight.push(msg.clone());
        }
        self.handle(msg);
    }

    /// What the receiving node does: merge and confirm deltas, answer a digest with the states
    /// of the buckets that differ, merge states (and answer with its own when asked).
    pub fn handle(&mut self, msg: Msg) {
        let Msg { from, to, body } = msg;
        if !self.nodes[to].up {
            self.stats.lost += 1;
            return;
        }
        let epoch = self.nodes[to].epoch;
        match body {
            Body::Deltas { batch, items } => {
                self.merge_all(to, items);
                let body = Body::Confirm { batch, epoch };
                self.send(Msg {
                    from: to,
                    to: from,
                    body,
                });
            }
            Body::Confirm { batch, epoch } => {
                if let Some((_, items)) = self.nodes[to].sent.remove(&batch) {
                    for item in items {
                        self.acked
                            .extend(item.ghost.iter().map(|&op| (op, from, epoch)));
                    }
                }
            }
            Body::Digest(theirs) => {
                let buckets = self.nodes[to].replicas.differing(&theirs);
                if !buckets.is_empty() {
                    let items = self.states(to, &buckets);
                    let reply_with = Some(buckets);
                    let body = Body::States { reply_with, items };
                    self.send(Msg {
                        from: to,
                        to: from,
                        body,
                    });
                }
            }
            Body::States { reply_with, items } => {
                self.merge_all(to, items);
                if let Some(buckets) = reply_with {
                    let items = self.states(to, &buckets);
                    let body = Body::States {
                        reply_with: None,
                        items,
                    };
                    self.send(Msg {
                        from: to,
                        to: from,
                        body,
                    });
                }
            }
        }
    }

    /// Node `i` merges `items`, learning the operations they carry.
    pub fn merge_all(&mut self, i: usize, items: Vec<Item>) {
        let node = &mut self.nodes[i];
        for item in &items {
            let (t, k) = &item.address;
            node.replicas
                .merge(t, k, &item.state)
                .expect("one kind per entity type");
            node.knows
                .entry(item.address.clone())
                .or_default()
                .extend(&item.ghost);
        }
        if let Some(late) = &mut self.late {
            late.copies.push((i, node.epoch, items));
        }
    }

    /// A late copy of what node `to` merged in `epoch`: a replica that has merged something
    /// keeps it (durable restarts included), so merging it again must change nothing.
    pub fn redeliver(&mut self, to: usize, epoch: u32, items: &[Item]) {
        let node = &mut self.nodes[to];
        if !node.up || node.epoch != epoch {
            return;
        }
        for item in items {
            let (t, k) = &item.address;
            let changed = node.replicas.merge(t, k, &item.state).expect("merges");
            assert!(
                changed.is_none(),
                "a late copy changed {t}/{k} on node {to}"
            );
        }
        self.stats.late_copies += 1;
    }

    /// Maybe delivers a late copy (drawn from the copies' own randomness).
    pub fn late_delivery(&mut self) {
        let Some(late) = &mut self.late else { return };
        if late.copies.is_empty() || !late.rng.chance(40) {
            return;
        }
        let index = late.rng.below(late.copies.len());
        let (to, epoch, items) = if late.rng.chance(30) {
            late.copies[index].clone()
        } else {
            late.copies.swap_remove(index)
        };
        self.redeliver(to, epoch, &items);
    }

    /// Node `i`'s replicas in `buckets`, in a fixed order, with the operations they carry.
    pub fn states(&self, i: usize, buckets: &[usize]) -> Vec<Item> {
        let node = &self.nodes[i];
        let mut items: Vec<Item> = node
            .replicas
            .states_in(buckets)
            .into_iter()
            .map(|(address, state)| {
                let ghost = node.knows.get(&address).cloned().unwrap_or_default();
                Item {
                    address,
                    state,
                    ghost,
                }
            })
            .collect();
        items.sort_by(|a, b| a.address.cmp(&b.address));
        items
    }

    /// Node `i` applies `op` to entity `e`, as the node runs a command's operations.
    pub fn apply(&mut self, i: usize, e: usize, op: &Op) {
        let (kind, address) = entity(e);
        let peers = self.peers(i);
        let node = &mut self.nodes[i];
        let (t, k) = &address;
        let applied = match node.replicas.apply(t, k, kind, std::slice::from_ref(op)) {
            Ok(applied) => applied,
            Err(error) => {
                // Only a map key given another kind elsewhere is refused, as the host would.
                assert_eq!(kind, Kind::ORMap, "{op:?} on {t}/{k}: {error}");
                return;
            }
        };
        let id = self.log.len();
        let write = match &applied.delta {
            Crdt::LWWRegister(register) => register.current().cloned(),
            _ => None,
        };
        self.log.push(Done {
            node: i,
            epoch: node.epoch,
            replica: node.replicas.replica_id().to_string(),
            entity: e,
            op: op.clone(),
            write,
            empty: applied.delta == Crdt::new(kind),
        });
        node.knows.entry(address.clone()).or_default().insert(id);
        if applied.changed {
            for p in peers {
                node.queued
                    .entry((p, address.clone()))
                    .or_default()
                    .insert(id);
            }
        }
        self.stats.applied += 1;
    }

    /// A gossip round of node `i`: each peer's queued deltas, at most a random batch of them
    /// while disturbed (the rest is requeued), sent as one message.
    pub fn gossip(&mut self, i: usize) {
        for peer in self.peers(i) {
            let node = &mut self.nodes[i];
            let mut taken = node.replicas.take_pending(peer as u64, usize::MAX);
            taken.sort_by(|a, b| a.0.cmp(&b.0));
            let mut items = Vec::new();
            for (address, state) in taken {
                let ghost = node.queued.remove(&(peer, address.clone()));
                let ghost = ghost.expect("a delta taken for a peer was queued for it");
                items.push(Item {
                    address,
                    state,
                    ghost,
                });
            }
            let left = node.queued.keys().any(|(p, _)| *p == peer);
            assert!(
                !left,
                "node {i} kept queued deltas for {peer} after taking them all"
            );
            if items.is_empty() {
                continue;
            }
            if !self.calm {
                let rest = items.split_off(1 + self.rng.below(items.len()));
                self.requeue(i, peer, rest);
            }
            let batch = self.next_batch;
            self.next_batch += 1;
            self.nodes[i].sent.insert(batch, (peer, items.clone()));
            let body = Body::Deltas { batch, items };
            self.send(Msg {
                from: i,
                to: peer,
                body,
            });
        }
    }

    /// Node `i` puts `items` back in `peer`'s queue.
    pub fn requeue(&mut self, i: usize, peer: usize, items: Vec<Item>) {
        let node = &mut self.nodes[i];
        for item in &items {
            let queued = node.queued.entry((peer, item.address.clone()));
            queued.or_default().extend(&item.ghost);
        }
        let deltas = items.into_iter().map(|item| (item.address, item.state));
        node.replicas.requeue(peer as u64, deltas.collect());
    }

    /// Node `i` gives up waiting for confirmations: every unconfirmed batch is requeued.
    pub fn time_out(&mut self, i: usize) {
        for (_, (peer, items)) in std::mem::take(&mut self.nodes[i].sent) {
            self.requeue(i, peer, items);
        }
    }

    /// Node `from` starts anti-entropy with `to`: its digest.
    pub fn anti_entropy(&mut self, from: usize, to: usize) {
        let digest = self.nodes[from].replicas.digest();
        let body = Body::Digest(digest);
        self.send(Msg { from, to, body });
    }

    /// Node `i` stops; a durable node keeps what it stored (every change, written through), an
    /// ephemeral one loses its replicas. Queues and unconfirmed batches are in memory: lost.
    pub fn crash(&mut self, i: usize) {
        let durable = self.rng.chance(50);
        let saved = durable.then(|| self.states(i, &all_buckets()));
        let node = &mut self.nodes[i];
        node.up = false;
        node.saved = saved;
        node.replicas = Replicas::new("down");
        node.queued.clear();
        node.sent.clear();
        if !durable {
            node.knows.clear();
        }
    }

    pub fn restart(&mut self, i: usize) {
        let peers: Vec<u64> = self.peers(i).into_iter().map(|p| p as u64).collect();
        let node = &mut self.nodes[i];
        node.up = true;
        if let Some(saved) = node.saved.take() {
            node.replicas = Replicas::new(replica_id(i, node.epoch));
            for item in saved {
                let (t, k) = &item.address;
                node.replicas.insert(t, k, item.state).expect("inserts");
            }
            self.stats.durable_restarts += 1;
        } else {
            node.epoch += 1;
            node.replicas = Replicas::new(replica_id(i, node.epoch));
            self.stats.ephemeral_restarts += 1;
        }
        node.replicas.set_peers(peers);
    }

    /// One random event while disturbed; `ops[*next]` is the next operation to apply.
    pub fn step(&mut self, ops: &[(usize, Op)], next: &mut usize) {
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up)
            .collect();
        let down: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].up)
            .collect();
        match self.rng.below(100) {
            0..35 if *next < ops.len() => {
                let (e, op) = &ops[*next];
                *next += 1;
                let i = self.rng.pick(&up);
                self.apply(i, *e, op);
            }
            0..60 if !self.flight.is_empty() => {
                let index = self.rng.below(self.flight.len());
                self.deliver(index);
            }
            60..75 => {
                let i = self.rng.pick(&up);
                self.gossip(i);
            }
            75..82 => {
                let i = self.rng.pick(&up);
                self.time_out(i);
            }
            82..90 => {
                let from = self.rng.pick(&up);
                let to = self.rng.pick(&self.peers(from));
                self.anti_entropy(from, to);
            }
            90..94 if up.len() > 1 => {
                let i = self.rng.pick(&up);
                self.crash(i);
            }
            94.. if !down.is_empty() => {
                let i = self.rng.pick(&down);
                self.restart(i);
            }
            _ => {}
        }
        self.late_delivery();
    }
}
