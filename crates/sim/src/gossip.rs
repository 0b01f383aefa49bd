//! Gossip under the simulator: the real [`voidmesh_gossip::Gossip`] state machine on every
//! node, over the same virtual clock and network as the Kademlia runs.
//!
//! # The run
//! 1. **join**: nodes start one every `join-interval`; each solves its proof of work
//!    (`gossip-pow-bits`), registers one API client for the item type and is given
//!    `join-seeds` random earlier nodes as known peers. Membership (HELLO / WELCOME /
//!    DISCOVERY / OFFER) then forms the views by itself during `gossip-warmup-s`.
//! 2. **spread**: `gossip-items` items are announced from random nodes, one every
//!    `op-interval`, and every NOTIFICATION is answered "valid" at once.
//! 3. After `gossip-settle-s`, each item's **coverage** is the share of nodes whose
//!    client got it; **messages** are the PEER ANNOUNCEs sent for it.
//!
//! Gossip messages travel on reliable QUIC streams, so the network's loss knob does not
//! apply to them (loss would show as delay); a message to a node that is gone makes the
//! transport report the peer as failed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use voidmesh_gossip::{solve_pow, ClientId, Event, Gossip, Transmit};
use voidmesh_proto::{Contact, GossipPeerMessage, Key, NodeId};

use crate::clock::Clock;
use crate::members::Members;
use crate::network::{addr_of, index_of, mix64, Network};
use crate::progress::Progress;
use crate::queue::EventQueue;
use crate::scenario::Scenario;
use crate::SimError;

/// The data type every simulated item has.
pub const ITEM_TYPE: u16 = 7777;

/// The API client on each node that subscribes to [`ITEM_TYPE`] and validates.
const SUBSCRIBER: ClientId = ClientId(1);

/// The API client that announces items (it does not subscribe, so the node's own
/// subscriber gets the item like everyone else).
const ANNOUNCER: ClientId = ClientId(2);

/// Unix time at virtual time zero (fixed, so proofs are the same in every run).
const UNIX_START: u64 = 1_800_000_000;

/// How often (in events) the progress display is updated.
const PROGRESS_EVERY: u64 = 4096;

/// What one item did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRow {
    /// The node that announced it.
    pub origin: u32,
    /// Virtual time of the announcement.
    pub announced: Duration,
    /// Delay from the announcement to each delivery, in the order they happened.
    pub deliveries: Vec<Duration>,
    /// PEER ANNOUNCE messages sent for it.
    pub messages: u64,
    /// Nodes in the network when coverage was measured.
    pub alive: usize,
}

impl ItemRow {
    /// Delay until a share `q` of the nodes had the item; `None` if it never got there.
    pub fn time_to(&self, q: f64) -> Option<Duration> {
        let needed = ((q * self.alive as f64).ceil() as usize).max(1);
        self.deliveries.get(needed - 1).copied()
    }

    /// Share of nodes whose client received the item.
    pub fn coverage(&self) -> f64 {
        if self.alive == 0 {
            0.0
        } else {
            self.deliveries.len() as f64 / self.alive as f64
        }
    }
}

impl GossipOutput {
    /// Mean coverage over all items at `t` after their announcement.
    pub fn coverage_at(&self, t: Duration) -> f64 {
        if self.items.is_empty() {
            return 0.0;
        }
        let sum: f64 = self
            .items
            .iter()
            .map(|i| {
                let reached = i.deliveries.partition_point(|d| *d <= t);
                if i.alive == 0 {
                    0.0
                } else {
                    reached as f64 / i.alive as f64
                }
            })
            .sum();
        sum / self.items.len() as f64
    }

    /// The latest delivery of any item, relative to its announcement.
    pub fn last_delivery(&self) -> Duration {
        self.items
            .iter()
            .filter_map(|i| i.deliveries.last().copied())
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

/// Everything the gossip run measured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GossipOutput {
    /// One row per item.
    pub items: Vec<ItemRow>,
    /// All gossip messages sent, by type (announce, discovery, offer, info, hello, welcome).
    pub messages_by_type: [u64; 6],
    /// Mean view size at the end.
    pub view_sizes: Vec<usize>,
    /// Peers dropped by a state machine (bad proof, flooding, …).
    pub disconnects: u64,
    /// Virtual time the views took to form (join plus warm-up).
    pub warmup: Duration,
    /// Events processed.
    pub events: u64,
}

/// A gossip message or outcome in flight.
#[derive(Debug)]
enum GEv {
    /// A message arrives.
    Message(Box<(u32, u32, NodeId, GossipPeerMessage)>),
    /// The transport tells `node` that `peer` failed.
    Failed {
        /// Who is told.
        node: u32,
        /// About whom.
        peer: NodeId,
    },
    /// A node's timer.
    Timer(u32),
    /// Node `n` starts.
    Join(u32),
    /// Item `i` is announced.
    Announce(u32),
}

/// One gossip node.
struct GSlot {
    /// Its id.
    id: NodeId,
    /// Its state machine, once started.
    gossip: Option<Box<Gossip>>,
    /// Its scheduled timer.
    timer: Option<Duration>,
}

/// The gossip network.
struct GossipWorld {
    /// Knobs.
    scenario: Scenario,
    /// Virtual time.
    clock: Clock,
    /// Pending events.
    queue: EventQueue<GEv>,
    /// Nodes by number.
    slots: Vec<GSlot>,
    /// Node number by id (to route disconnects).
    by_id: HashMap<NodeId, u32>,
    /// Started nodes.
    started: Members,
    /// Latency.
    network: Network,
    /// Jitter draws.
    rng_net: StdRng,
    /// Choices: seeds, origins.
    rng: StdRng,
    /// Items announced.
    items: Vec<ItemRow>,
    /// Timer entries in the queue (one per node and instant).
    queued_timers: HashSet<(u32, Duration)>,
    /// What was measured besides items.
    out: GossipOutput,
    /// Events at the current instant (livelock detection).
    same_instant: u64,
}

/// Runs the gossip part of `scenario`.
///
/// # Errors
/// A livelock, or the event cap.
pub fn run(scenario: &Scenario, progress: &mut dyn Progress) -> Result<GossipOutput, SimError> {
    let seed = scenario.seed ^ 0x676f_7373_6970;
    let mut w = GossipWorld {
        scenario: scenario.clone(),
        clock: Clock::new(Instant::now()),
        queue: EventQueue::new(),
        slots: Vec::with_capacity(scenario.nodes),
        by_id: HashMap::with_capacity(scenario.nodes),
        started: Members::new(),
        network: Network::new(scenario.latency, scenario.jitter, 0.0, scenario.seed),
        rng_net: StdRng::seed_from_u64(mix64(seed ^ 1)),
        rng: StdRng::seed_from_u64(mix64(seed ^ 2)),
        items: Vec::new(),
        queued_timers: HashSet::new(),
        out: GossipOutput::default(),
        same_instant: 0,
    };
    let mut ids = StdRng::seed_from_u64(mix64(seed ^ 3));
    for i in 0..scenario.nodes {
        let id = Key(ids.gen());
        w.by_id.insert(id, i as u32);
        w.slots.push(GSlot {
            id,
            gossip: None,
            timer: None,
        });
        w.queue
            .push(scenario.join_interval * i as u32, GEv::Join(i as u32));
    }
    let joined_by = scenario.join_interval * scenario.nodes.saturating_sub(1) as u32;
    let spread_start = joined_by + scenario.gossip_warmup;
    w.out.warmup = spread_start;
    progress.phase("gossip", scenario.gossip_items as u64);
    for i in 0..scenario.gossip_items {
        w.queue.push(
            spread_start + scenario.op_interval * i as u32,
            GEv::Announce(i as u32),
        );
    }
    let last = spread_start + scenario.op_interval * scenario.gossip_items as u32;
    let end = last + scenario.gossip_settle;
    let mut since = 0u64;
    while let Some(at) = w.queue.peek_time() {
        if at > end {
            break;
        }
        w.step()?;
        since += 1;
        if since >= PROGRESS_EVERY {
            since = 0;
            progress.update(w.items.len() as u64);
        }
    }
    progress.update(w.items.len() as u64);
    progress.finish();
    let alive = w.started.len();
    for item in &mut w.items {
        item.alive = alive;
    }
    w.out.view_sizes = w
        .slots
        .iter()
        .filter_map(|s| s.gossip.as_ref().map(|g| g.view_len()))
        .collect();
    w.out.items = w.items;
    Ok(w.out)
}

/// Index of a message type in [`GossipOutput::messages_by_type`].
fn type_index(m: &GossipPeerMessage) -> usize {
    match m {
        GossipPeerMessage::Announce { .. } => 0,
        GossipPeerMessage::Discovery => 1,
        GossipPeerMessage::Offer { .. } => 2,
        GossipPeerMessage::Info { .. } => 3,
        GossipPeerMessage::Hello { .. } => 4,
        GossipPeerMessage::Welcome { .. } => 5,
    }
}

/// The item number carried in an item's first 8 bytes.
fn item_number(data: &[u8]) -> Option<u32> {
    let raw: [u8; 8] = data.get(..8)?.try_into().ok()?;
    u32::try_from(u64::from_be_bytes(raw)).ok()
}

impl GossipWorld {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn unix(&self) -> u64 {
        UNIX_START + self.clock.elapsed().as_secs()
    }

    fn step(&mut self) -> Result<(), SimError> {
        let Some((at, ev)) = self.queue.pop() else {
            return Ok(());
        };
        if at <= self.clock.elapsed() {
            self.same_instant += 1;
            if self.same_instant > (50 * self.scenario.nodes as u64).max(1_000_000) {
                return Err(SimError::Livelock {
                    at,
                    events: self.same_instant,
                });
            }
        } else {
            self.same_instant = 0;
        }
        self.clock.advance_to(at);
        self.out.events += 1;
        if self.scenario.max_events > 0 && self.out.events > self.scenario.max_events {
            return Err(SimError::EventBudget(self.scenario.max_events));
        }
        match ev {
            GEv::Message(m) => {
                let (from, to, to_id, msg) = *m;
                self.deliver(from, to, to_id, msg);
            }
            GEv::Failed { node, peer } => {
                let now = self.now();
                if let Some(g) = self.gossip_mut(node) {
                    g.peer_failed(now, peer);
                    self.drain(node);
                }
            }
            GEv::Timer(node) => {
                self.queued_timers.remove(&(node, at));
                let slot = &mut self.slots[node as usize];
                if slot.timer == Some(at) {
                    slot.timer = None;
                    let now = self.now();
                    if let Some(g) = self.gossip_mut(node) {
                        g.handle_timeout(now);
                    }
                    self.drain(node);
                }
            }
            GEv::Join(node) => self.join(node),
            GEv::Announce(item) => self.announce(item),
        }
        Ok(())
    }

    fn gossip_mut(&mut self, node: u32) -> Option<&mut Gossip> {
        self.slots.get_mut(node as usize)?.gossip.as_deref_mut()
    }

    fn join(&mut self, node: u32) {
        let now = self.now();
        let unix = self.unix();
        let local = Contact::unkeyed(self.slots[node as usize].id, addr_of(node));
        let config = voidmesh_gossip::Config {
            degree: self.scenario.gossip_degree,
            pow_difficulty: self.scenario.gossip_pow_bits,
            rng_seed: mix64(self.scenario.seed ^ u64::from(node) ^ 0x6773),
            ..voidmesh_gossip::Config::default()
        };
        let mut known = Vec::new();
        for _ in 0..self.scenario.join_seeds.max(1) {
            if let Some(other) = self.started.pick(&mut self.rng) {
                known.push(Contact::unkeyed(
                    self.slots[other as usize].id,
                    addr_of(other),
                ));
            }
        }
        let mut gossip = Gossip::new(local, config, now, unix);
        gossip.client_notify(now, SUBSCRIBER, ITEM_TYPE);
        self.slots[node as usize].gossip = Some(Box::new(gossip));
        self.started.insert(node);
        self.drain(node); // answers ProofNeeded
        if let Some(g) = self.gossip_mut(node) {
            g.add_known_peers(now, &known);
        }
        self.drain(node);
    }

    fn announce(&mut self, item: u32) {
        let Some(origin) = self.started.pick(&mut self.rng) else {
            return;
        };
        let mut data = vec![0u8; self.scenario.gossip_item_size.max(8)];
        data[..8].copy_from_slice(&u64::from(item).to_be_bytes());
        let now = self.now();
        self.items.push(ItemRow {
            origin,
            announced: self.clock.elapsed(),
            deliveries: Vec::new(),
            messages: 0,
            alive: 0,
        });
        if let Some(g) = self.gossip_mut(origin) {
            let _ = g.client_announce(now, ANNOUNCER, 0, ITEM_TYPE, Bytes::from(data));
        }
        self.drain(origin);
    }

    fn deliver(&mut self, from: u32, to: u32, to_id: NodeId, msg: GossipPeerMessage) {
        let now = self.now();
        let slot = &self.slots[to as usize];
        if slot.gossip.is_none() || slot.id != to_id {
            // Nobody (or somebody else) there: the sender's transport reports a failure.
            let back = self.network.delay(to, from, &mut self.rng_net);
            let at = self.clock.elapsed() + back;
            self.queue.push(
                at,
                GEv::Failed {
                    node: from,
                    peer: to_id,
                },
            );
            return;
        }
        let from_contact = Contact::unkeyed(self.slots[from as usize].id, addr_of(from));
        if let Some(g) = self.gossip_mut(to) {
            g.handle_message(now, from_contact, msg);
        }
        self.drain(to);
    }

    fn send(&mut self, from: u32, t: Transmit) {
        self.out.messages_by_type[type_index(&t.message)] += 1;
        if let GossipPeerMessage::Announce { data, .. } = &t.message {
            if let Some(row) = item_number(data).and_then(|i| self.items.get_mut(i as usize)) {
                row.messages += 1;
            }
        }
        let target = index_of(&t.to.addr).filter(|&i| (i as usize) < self.slots.len());
        let now = self.clock.elapsed();
        let Some(to) = target else {
            let at = now + self.scenario.transport_timeout();
            self.queue.push(
                at,
                GEv::Failed {
                    node: from,
                    peer: t.to.id,
                },
            );
            return;
        };
        let at = now + self.network.delay(from, to, &mut self.rng_net);
        self.queue
            .push(at, GEv::Message(Box::new((from, to, t.to.id, t.message))));
    }

    /// Drains a node until it has nothing more to say (validations produce output too).
    fn drain(&mut self, node: u32) {
        loop {
            let now = self.now();
            let mut transmits = Vec::new();
            let mut events = Vec::new();
            {
                let Some(g) = self.gossip_mut(node) else {
                    return;
                };
                while let Some(t) = g.poll_transmit() {
                    transmits.push(t);
                }
                while let Some(e) = g.poll_event() {
                    events.push(e);
                }
            }
            if transmits.is_empty() && events.is_empty() {
                break;
            }
            for t in transmits {
                self.send(node, t);
            }
            for e in events {
                self.on_event(node, e, now);
            }
        }
        let deadline = self.slots[node as usize]
            .gossip
            .as_ref()
            .and_then(|g| g.poll_timeout());
        let at = deadline.map(|d| self.clock.since_epoch(d).max(self.clock.elapsed()));
        let slot = &mut self.slots[node as usize];
        match at {
            Some(at) if slot.timer != Some(at) => {
                slot.timer = Some(at);
                if self.queued_timers.insert((node, at)) {
                    self.queue.push(at, GEv::Timer(node));
                }
            }
            Some(_) => {}
            None => slot.timer = None,
        }
    }

    fn on_event(&mut self, node: u32, event: Event, now: Instant) {
        match event {
            Event::ProofNeeded { unix_secs } => {
                let id = self.slots[node as usize].id;
                let proof = solve_pow(&id, unix_secs, self.scenario.gossip_pow_bits);
                if let Some(g) = self.gossip_mut(node) {
                    g.set_proof(now, proof);
                }
            }
            Event::Deliver {
                client,
                message_id,
                data,
                ..
            } => {
                let elapsed = self.clock.elapsed();
                if let Some(row) = item_number(&data).and_then(|i| self.items.get_mut(i as usize)) {
                    row.deliveries.push(elapsed.saturating_sub(row.announced));
                }
                if let Some(g) = self.gossip_mut(node) {
                    g.client_validation(now, client, message_id, true);
                }
            }
            Event::DisconnectPeer { peer, .. } => {
                self.out.disconnects += 1;
                // The connection closes: the peer's transport notices one latency later.
                if let Some(&other) = self.by_id.get(&peer) {
                    let at =
                        self.clock.elapsed() + self.network.delay(node, other, &mut self.rng_net);
                    let me = self.slots[node as usize].id;
                    self.queue.push(
                        at,
                        GEv::Failed {
                            node: other,
                            peer: me,
                        },
                    );
                }
            }
            Event::PeerJoined { .. } | Event::PeerLeft { .. } => {}
        }
    }
}
