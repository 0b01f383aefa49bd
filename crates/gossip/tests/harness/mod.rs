//! An in-memory network of gossip nodes under a virtual clock.
//!
//! Every message is encoded and decoded with `voidmesh-proto` (so the wire format is
//! exercised too) and delivered after a seeded random latency. API clients are simulated:
//! each registers some data types and answers every notification with a fixed verdict
//! after a millisecond. `step()` jumps the clock to the earliest of the next delivery and
//! the nodes' `poll_timeout`s, like quinn's `Pair`; the drive loops are bounded, so a
//! livelock fails the test instead of hanging it.

#![allow(dead_code)]

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use voidmesh_gossip::{
    item_id, solve_pow, ClientId, Config, Event, Gossip, ItemId, Proof, Transmit,
};
use voidmesh_proto::{Contact, GossipPeerMessage, NodeId, PublicKey};

/// Unix time at the start of every simulation.
pub const UNIX_START: u64 = 1_800_000_000;

/// A simulated API client.
pub struct Client {
    /// Its id at its node.
    pub id: ClientId,
    /// The verdict it gives every notification (`None`: it never answers).
    pub verdict: Option<bool>,
    /// Notifications received: (data type, data, arrival time).
    pub received: Vec<(u16, Bytes, Instant)>,
}

/// One gossip node and its clients.
pub struct Node {
    /// The state machine.
    pub gossip: Gossip,
    /// Its clients.
    pub clients: Vec<Client>,
    /// Seconds its wall clock is off by (to test stale proofs).
    pub clock_offset: i64,
    /// When set, the node hands in this proof instead of solving one.
    pub forged_proof: Option<Proof>,
}

enum Delivery {
    Message {
        from: Contact,
        to: usize,
        bytes: Bytes,
    },
    Failed {
        node: usize,
        peer: NodeId,
    },
    Validation {
        node: usize,
        client: ClientId,
        message_id: u16,
        valid: bool,
    },
}

/// The network.
pub struct Net {
    /// Virtual now.
    pub time: Instant,
    /// Nodes by index; `None` once stopped.
    pub nodes: Vec<Option<Node>>,
    /// Node index by id.
    index: HashMap<NodeId, usize>,
    /// Pending deliveries by (time, sequence number).
    queue: BTreeMap<(Instant, u64), Delivery>,
    seq: u64,
    rng: StdRng,
    /// Smallest one-way latency.
    pub latency: Duration,
    /// Extra random latency, up to this much.
    pub jitter: Duration,
    /// Template for every node's config (its seed is replaced per node).
    pub config: Config,
    /// Peer messages sent, by message type.
    pub sent_by_type: BTreeMap<u16, u64>,
    /// PEER ANNOUNCE messages sent, by item id.
    pub announces_by_item: HashMap<ItemId, u64>,
    /// Steps taken (for the livelock bound).
    pub steps: u64,
    /// Virtual time since the start (Unix time is `UNIX_START` plus this).
    pub elapsed: Duration,
}

impl Net {
    /// An empty network.
    pub fn new(config: Config, seed: u64) -> Net {
        Net {
            time: Instant::now(),
            nodes: Vec::new(),
            index: HashMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            rng: StdRng::seed_from_u64(seed),
            latency: Duration::from_millis(10),
            jitter: Duration::from_millis(10),
            config,
            sent_by_type: BTreeMap::new(),
            announces_by_item: HashMap::new(),
            steps: 0,
            elapsed: Duration::ZERO,
        }
    }

    /// Adds a node with `clients` (each: registered types and verdict).
    pub fn add_node(&mut self, clients: &[(&[u16], Option<bool>)]) -> usize {
        self.add_node_with(clients, 0, None)
    }

    /// Adds a node whose wall clock is off by `clock_offset` seconds and that hands in
    /// `forged_proof` (if set) instead of solving one.
    pub fn add_node_with(
        &mut self,
        clients: &[(&[u16], Option<bool>)],
        clock_offset: i64,
        forged_proof: Option<Proof>,
    ) -> usize {
        let i = self.nodes.len();
        // A key, as the wire carries it: the id is derived from it.
        let key = PublicKey(self.rng.gen());
        let addr = SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 6001));
        let config = Config {
            rng_seed: self.rng.gen(),
            ..self.config.clone()
        };
        let unix = (UNIX_START + self.elapsed.as_secs()).saturating_add_signed(clock_offset);
        let mut gossip = Gossip::new(Contact::new(key, addr), config, self.time, unix);
        let mut node_clients = Vec::new();
        for (c, (types, verdict)) in clients.iter().enumerate() {
            let client = ClientId(c as u64);
            for t in *types {
                gossip.client_notify(self.time, client, *t);
            }
            node_clients.push(Client {
                id: client,
                verdict: *verdict,
                received: Vec::new(),
            });
        }
        self.nodes.push(Some(Node {
            gossip,
            clients: node_clients,
            clock_offset,
            forged_proof,
        }));
        self.index.insert(key.node_id(), i);
        self.drain(i);
        i
    }

    /// The contact of node `i`.
    pub fn contact(&self, i: usize) -> Contact {
        self.node(i).gossip.local_contact()
    }

    /// Node `i` (panics if stopped).
    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node stopped")
    }

    /// Node `i`, mutable (panics if stopped).
    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        self.nodes[i].as_mut().expect("node stopped")
    }

    /// Indices of the nodes still running.
    pub fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect()
    }

    /// Node `i` learns the given nodes as known peers.
    pub fn know(&mut self, i: usize, peers: &[usize]) {
        let contacts: Vec<Contact> = peers.iter().map(|p| self.contact(*p)).collect();
        let now = self.time;
        self.node_mut(i).gossip.add_known_peers(now, &contacts);
        self.drain(i);
    }

    /// Client `client` of node `i` announces an item; returns its id.
    pub fn announce(
        &mut self,
        i: usize,
        client: u64,
        ttl: u8,
        data_type: u16,
        data: &[u8],
    ) -> ItemId {
        let now = self.time;
        let id = self
            .node_mut(i)
            .gossip
            .client_announce(
                now,
                ClientId(client),
                ttl,
                data_type,
                Bytes::copy_from_slice(data),
            )
            .expect("announce accepted");
        self.drain(i);
        id
    }

    /// Stops node `i`: it vanishes; its neighbours notice after `detect` (connection
    /// closed), and messages sent to it fail.
    pub fn stop(&mut self, i: usize, detect: Duration) {
        let Some(node) = self.nodes[i].take() else {
            return;
        };
        let id = node.gossip.local_id();
        for j in self.alive() {
            if self.node(j).gossip.is_neighbour(&id) {
                self.schedule(detect, Delivery::Failed { node: j, peer: id });
            }
        }
    }

    fn schedule(&mut self, after: Duration, delivery: Delivery) {
        self.seq += 1;
        self.queue.insert((self.time + after, self.seq), delivery);
    }

    fn one_way_latency(&mut self) -> Duration {
        let extra = self.rng.gen_range(0..=self.jitter.as_micros() as u64);
        self.latency + Duration::from_micros(extra)
    }

    /// Drains node `i`'s outputs into the queue and its clients.
    fn drain(&mut self, i: usize) {
        loop {
            let mut transmits: Vec<Transmit> = Vec::new();
            let mut events = Vec::new();
            {
                let Some(node) = self.nodes[i].as_mut() else {
                    return;
                };
                while let Some(t) = node.gossip.poll_transmit() {
                    transmits.push(t);
                }
                while let Some(e) = node.gossip.poll_event() {
                    events.push(e);
                }
            }
            if transmits.is_empty() && events.is_empty() {
                return;
            }
            let from = self.contact(i);
            for t in transmits {
                *self.sent_by_type.entry(t.message.msg_type()).or_default() += 1;
                if let GossipPeerMessage::Announce {
                    origin,
                    nonce,
                    data_type,
                    data,
                    ..
                } = &t.message
                {
                    let id = item_id(origin, *data_type, *nonce, data);
                    *self.announces_by_item.entry(id).or_default() += 1;
                }
                let latency = self.one_way_latency();
                match self.index.get(&t.to.id).copied() {
                    Some(to) if self.nodes[to].is_some() => self.schedule(
                        latency,
                        Delivery::Message {
                            from,
                            to,
                            bytes: t.message.encode(),
                        },
                    ),
                    _ => self.schedule(
                        2 * latency,
                        Delivery::Failed {
                            node: i,
                            peer: t.to.id,
                        },
                    ),
                }
            }
            for e in events {
                self.on_event(i, e);
            }
        }
    }

    fn on_event(&mut self, i: usize, event: Event) {
        let now = self.time;
        match event {
            Event::Deliver {
                client,
                message_id,
                data_type,
                data,
            } => {
                let node = self.node_mut(i);
                let c = node
                    .clients
                    .iter_mut()
                    .find(|c| c.id == client)
                    .expect("delivery to a known client");
                c.received.push((data_type, data, now));
                if let Some(valid) = c.verdict {
                    self.schedule(
                        Duration::from_millis(1),
                        Delivery::Validation {
                            node: i,
                            client,
                            message_id,
                            valid,
                        },
                    );
                }
            }
            Event::DisconnectPeer { peer, .. } => {
                // The connection closes: the other end notices.
                if let Some(j) = self.index.get(&peer).copied() {
                    let me = self.contact(i).id;
                    let latency = self.one_way_latency();
                    self.schedule(latency, Delivery::Failed { node: j, peer: me });
                }
            }
            Event::ProofNeeded { unix_secs } => {
                let node = self.node_mut(i);
                let proof = match node.forged_proof {
                    Some(p) => p,
                    None => solve_pow(
                        &node.gossip.local_id(),
                        unix_secs,
                        node.gossip.config().pow_difficulty,
                    ),
                };
                node.gossip.set_proof(now, proof);
            }
            Event::PeerJoined { .. } | Event::PeerLeft { .. } => {}
        }
    }

    /// Advances to the next thing that happens. Returns false if nothing ever will.
    pub fn step(&mut self) -> bool {
        self.steps += 1;
        let next_delivery = self.queue.keys().next().map(|(t, _)| *t);
        let next_timer = self
            .nodes
            .iter()
            .flatten()
            .filter_map(|n| n.gossip.poll_timeout())
            .min();
        let Some(next) = [next_delivery, next_timer].into_iter().flatten().min() else {
            return false;
        };
        if next > self.time {
            self.elapsed += next - self.time;
            self.time = next;
        }
        let now = self.time;
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let delivery = entry.remove();
            self.deliver(delivery);
        }
        for i in 0..self.nodes.len() {
            let due = match &self.nodes[i] {
                Some(n) => n.gossip.poll_timeout().is_some_and(|t| t <= now),
                None => false,
            };
            if due {
                self.node_mut(i).gossip.handle_timeout(now);
                self.drain(i);
            }
        }
        true
    }

    fn deliver(&mut self, delivery: Delivery) {
        let now = self.time;
        match delivery {
            Delivery::Message { from, to, bytes } => {
                if self.nodes[to].is_none() {
                    // The receiver is gone: the sender's send fails.
                    if let Some(sender) = self.index.get(&from.id).copied() {
                        let peer = self.index_id(to);
                        self.schedule(self.latency, Delivery::Failed { node: sender, peer });
                    }
                    return;
                }
                let msg = GossipPeerMessage::decode(&bytes).expect("valid wire bytes");
                self.node_mut(to).gossip.handle_message(now, from, msg);
                self.drain(to);
            }
            Delivery::Failed { node, peer } => {
                if self.nodes[node].is_some() {
                    self.node_mut(node).gossip.peer_failed(now, peer);
                    self.drain(node);
                }
            }
            Delivery::Validation {
                node,
                client,
                message_id,
                valid,
            } => {
                if self.nodes[node].is_some() {
                    self.node_mut(node)
                        .gossip
                        .client_validation(now, client, message_id, valid);
                    self.drain(node);
                }
            }
        }
    }

    fn index_id(&self, i: usize) -> NodeId {
        self.index
            .iter()
            .find(|(_, j)| **j == i)
            .map(|(id, _)| *id)
            .expect("known index")
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.time + d;
        let budget = self.steps + 2_000_000;
        while self.time < until {
            assert!(self.steps < budget, "livelock: step budget exhausted");
            let next_delivery = self.queue.keys().next().map(|(t, _)| *t);
            let next_timer = self
                .nodes
                .iter()
                .flatten()
                .filter_map(|n| n.gossip.poll_timeout())
                .min();
            match [next_delivery, next_timer].into_iter().flatten().min() {
                Some(next) if next <= until => {
                    self.step();
                }
                _ => {
                    self.elapsed += until - self.time;
                    self.time = until;
                }
            }
        }
    }

    /// Steps until `done` holds; panics after `limit` of virtual time.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> Duration {
        let start = self.time;
        let budget = self.steps + 2_000_000;
        while !done(self) {
            assert!(
                self.time - start <= limit,
                "condition not met within {limit:?}"
            );
            assert!(self.steps < budget, "livelock: step budget exhausted");
            assert!(self.step(), "network went idle before the condition held");
        }
        self.time - start
    }

    /// How many times each (node, client) received items of `data_type` with `data`.
    pub fn receipts(&self, data_type: u16, data: &[u8]) -> Vec<(usize, ClientId, usize)> {
        let mut out = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            for c in &node.clients {
                let n = c
                    .received
                    .iter()
                    .filter(|(t, d, _)| *t == data_type && d.as_ref() == data)
                    .count();
                out.push((i, c.id, n));
            }
        }
        out
    }

    /// The latest arrival time of `data` at any client.
    pub fn last_arrival(&self, data_type: u16, data: &[u8]) -> Option<Instant> {
        self.nodes
            .iter()
            .flatten()
            .flat_map(|n| n.clients.iter())
            .flat_map(|c| c.received.iter())
            .filter(|(t, d, _)| *t == data_type && d.as_ref() == data)
            .map(|(_, _, at)| *at)
            .max()
    }
}
