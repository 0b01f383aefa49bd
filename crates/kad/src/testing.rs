//! An in-memory network of [`Kademlia`] nodes under a virtual clock: quinn's test `Pair`
//! scaled up to hundreds of nodes, for this crate's tests and for simulations.
//!
//! Every message takes a fixed one-way latency. Time never passes by itself: the network
//! jumps from one event to the next (a message arriving, a node's
//! [`poll_timeout`](Kademlia::poll_timeout)), so a run is deterministic and fast.
//! A node can be down ([`NodeState`]): either requests to it fail with
//! [`RequestFailure::Unreachable`] after the latency, as a transport would report, or they
//! vanish without a word, so only the senders' own deadlines notice. A down node is never
//! driven.
//!
//! The network reads no clock either: the caller hands it the first [`Instant`], and the
//! Unix time at that instant is [`UNIX_EPOCH_SECS`] (every node is told so with
//! [`Kademlia::set_unix_time`]).
//!
//! Each node gets its own /24 (`10.a.b.1`), so the per-subnet bucket limit never bites
//! between honest nodes, and, when the configuration sets an id puzzle, ids that solve it.
//!
//! A node can also be an [`Adversary`]: the network then answers requests to it with a
//! fabricated reply (or none) instead of asking its state machine, which still runs
//! (it joined like everybody else).
//!
//! ```
//! use voidmesh_kad::{testing::{DriveError, Network}, Config};
//! use std::time::{Duration, Instant};
//!
//! fn join_all(epoch: Instant) -> Result<Network, DriveError> {
//!     let latency = Duration::from_millis(5);
//!     let mut net = Network::with_nodes(50, &Config::default(), 7, epoch, latency);
//!     let seed = net.contact(0);
//!     for i in 1..net.len() {
//!         net.command(i, |kad, now| kad.bootstrap(now, &[seed]));
//!         net.drive()?;
//!     }
//!     Ok(net)
//! }
//! ```

use crate::{Config, Event, Kademlia, QueryId, RequestFailure, RequestId};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use voidmesh_proto::{id_puzzle_ok, Contact, KadMessage, Key, NodeId, SignedRecord, Version};

/// The Unix time (seconds) at the network's first instant.
pub const UNIX_EPOCH_SECS: u64 = 1_800_000_000;

/// Steps [`Network::drive`] takes before it gives up, unless changed with
/// [`Network::set_max_steps`].
pub const DEFAULT_MAX_STEPS: u64 = 50_000_000;

/// Why a run of the network stopped early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriveError {
    /// The step bound was reached while work remained: most likely a livelock.
    #[error("the network was still busy after {steps} steps (livelock?)")]
    StepLimit {
        /// Steps taken.
        steps: u64,
    },
}

/// Whether a node takes part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Up and answering.
    Up,
    /// Down, and the transport says so: requests to it fail with
    /// [`RequestFailure::Unreachable`] one latency later.
    Unreachable,
    /// Down without a trace: requests to it are dropped and never answered.
    Silent,
}

/// How an adversarial node answers the requests it receives (it never calls its own
/// `handle_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adversary {
    /// Never answers: every request to it times out.
    Drop,
    /// Answers FIND_NODE and FIND_VALUE with k made-up contacts whose ids share the
    /// target's first 8 bytes (nearer than any real node) at addresses where nobody
    /// listens; claims to store every STORE and keeps nothing.
    FakeContacts,
    /// Eclipse attack by colluders: answers FIND_NODE and FIND_VALUE with the k adversaries
    /// nearest the target (real nodes that answer the same way) and never with a value;
    /// claims to store every STORE and keeps nothing.
    Eclipse,
    /// Answers FIND_VALUE with a made-up value under a version far in the future (so it
    /// would win any newest-wins comparison); everything else honestly.
    WrongValue,
    /// Answers FIND_VALUE with a signed record for the key that does not verify (a copy of
    /// the honest answer with another value, or a made-up record if it holds none);
    /// everything else honestly.
    ForgedSigned,
}

/// One simulated node.
#[derive(Clone)]
struct SimNode {
    /// Its state machine.
    kad: Kademlia,
    /// Its id and (made-up) address.
    contact: Contact,
    /// Whether it is up, and how it fails when it is not.
    state: NodeState,
    /// Events it emitted with the time they came out, oldest first, until taken.
    events: Vec<(Instant, Event)>,
    /// How it answers if it is adversarial.
    adversary: Option<Adversary>,
}

/// What travels between nodes.
#[derive(Debug, Clone)]
enum Payload {
    /// A request on its way to `to`.
    Request {
        /// The sender's index.
        from: usize,
        /// The recipient's index.
        to: usize,
        /// The sender's request id.
        request: RequestId,
        /// The request.
        message: KadMessage,
    },
    /// An outcome on its way back to `to`.
    Response {
        /// The index of the node that sent the request.
        to: usize,
        /// Its request id.
        request: RequestId,
        /// The reply, or why there is none.
        outcome: Result<KadMessage, RequestFailure>,
    },
}

/// A message in flight, ordered by arrival time, then by send order.
#[derive(Debug, Clone)]
struct InFlight {
    /// When it arrives.
    at: Instant,
    /// Send order; breaks ties so runs are deterministic.
    seq: u64,
    /// The message.
    payload: Payload,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Many nodes, one virtual clock, one message queue; see the module doc.
///
/// `Clone` forks the whole network, clock and messages in flight included, so one
/// expensive setup (e.g. bootstrapping hundreds of nodes) can serve several scenarios.
#[derive(Clone)]
pub struct Network {
    /// The nodes, by index.
    nodes: Vec<SimNode>,
    /// Node index by id, to route a transmit to its recipient.
    by_id: HashMap<NodeId, usize>,
    /// Messages in flight, earliest first.
    queue: BinaryHeap<Reverse<InFlight>>,
    /// Nodes' wake-up times, earliest first; an entry not equal to `scheduled` is stale.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Each node's current wake-up time in `timers`.
    scheduled: Vec<Option<Instant>>,
    /// The virtual clock.
    now: Instant,
    /// One-way delay of every message.
    latency: Duration,
    /// The next message's send order.
    seq: u64,
    /// Steps taken (messages delivered plus timers fired).
    steps: u64,
    /// Step bound of one `drive`.
    max_steps: u64,
    /// Messages delivered so far (requests and responses).
    delivered: u64,
    /// The first instant; Unix time [`UNIX_EPOCH_SECS`].
    epoch: Instant,
    /// What happens to requests for ids no node has (made-up contacts).
    unknown_peers: NodeState,
    /// Indices of the adversarial nodes.
    adversaries: Vec<usize>,
    /// Draws adversaries' made-up ids and values.
    adversary_rng: StdRng,
}

impl Network {
    /// An empty network whose clock starts at `epoch`, with a one-way `latency`.
    pub fn new(epoch: Instant, latency: Duration) -> Self {
        Network {
            nodes: Vec::new(),
            by_id: HashMap::new(),
            queue: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            scheduled: Vec::new(),
            now: epoch,
            latency,
            seq: 0,
            steps: 0,
            max_steps: DEFAULT_MAX_STEPS,
            delivered: 0,
            epoch,
            unknown_peers: NodeState::Unreachable,
            adversaries: Vec::new(),
            adversary_rng: StdRng::seed_from_u64(0x00ad_5e55),
        }
    }

    /// A network of `n` nodes with random ids drawn from `seed` (ids that solve the id
    /// puzzle if `config.id_difficulty` asks for one); node `i` runs `config` with its RNG
    /// seeded from `seed` and `i`. Nobody knows anybody yet.
    pub fn with_nodes(
        n: usize,
        config: &Config,
        seed: u64,
        epoch: Instant,
        latency: Duration,
    ) -> Self {
        let mut net = Network::new(epoch, latency);
        let mut rng = StdRng::seed_from_u64(seed);
        for i in 0..n {
            let config = Config {
                rng_seed: seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                ..config.clone()
            };
            let id = loop {
                let id = Key(rng.gen());
                if id_puzzle_ok(&id, config.id_difficulty) {
                    break id;
                }
            };
            net.add_node(id, config);
        }
        net
    }

    /// Adds a node with `id`; returns its index. Its address is made up from the index:
    /// `10.a.b.1`, one /24 per node.
    pub fn add_node(&mut self, id: NodeId, config: Config) -> usize {
        let index = self.nodes.len();
        let ip = Ipv4Addr::from(0x0a00_0001u32.wrapping_add((index as u32) << 8));
        let contact = Contact::unkeyed(id, SocketAddr::new(ip.into(), 4000));
        let mut kad = Kademlia::new(id, config, self.now);
        kad.set_unix_time(self.now, self.unix_time());
        self.nodes.push(SimNode {
            kad,
            contact,
            state: NodeState::Up,
            events: Vec::new(),
            adversary: None,
        });
        self.by_id.insert(id, index);
        self.scheduled.push(None);
        self.flush(index);
        index
    }

    /// Number of nodes, up or down.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True for a network without nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The Unix time (seconds) at the virtual time.
    pub fn unix_time(&self) -> u64 {
        UNIX_EPOCH_SECS + (self.now - self.epoch).as_secs()
    }

    /// Makes node `i` adversarial (or honest again with `None`); see [`Adversary`].
    pub fn set_adversary(&mut self, i: usize, adversary: Option<Adversary>) {
        self.nodes[i].adversary = adversary;
        self.adversaries.retain(|&a| a != i);
        if adversary.is_some() {
            self.adversaries.push(i);
        }
    }

    /// Whether node `i` is adversarial.
    pub fn adversary(&self, i: usize) -> Option<Adversary> {
        self.nodes[i].adversary
    }

    /// Sets what happens to requests for ids no node has (e.g. made-up contacts):
    /// [`NodeState::Unreachable`] (the default: they fail after one latency) or
    /// [`NodeState::Silent`] (they time out, as a connection attempt to an address where
    /// nobody listens usually does).
    pub fn set_unknown_peers(&mut self, state: NodeState) {
        self.unknown_peers = state;
    }

    /// Node `i`'s state machine, to inspect it.
    pub fn kad(&self, i: usize) -> &Kademlia {
        &self.nodes[i].kad
    }

    /// Node `i`'s contact.
    pub fn contact(&self, i: usize) -> Contact {
        self.nodes[i].contact
    }

    /// Whether node `i` is up.
    pub fn is_alive(&self, i: usize) -> bool {
        self.nodes[i].state == NodeState::Up
    }

    /// Takes node `i` down (as [`NodeState::Unreachable`]) or brings it back.
    pub fn set_alive(&mut self, i: usize, alive: bool) {
        let state = if alive {
            NodeState::Up
        } else {
            NodeState::Unreachable
        };
        self.set_state(i, state);
    }

    /// Sets whether node `i` is up, and how it fails when it is not. Messages already in
    /// flight to it are treated according to its state when they arrive.
    pub fn set_state(&mut self, i: usize, state: NodeState) {
        self.nodes[i].state = state;
        if state == NodeState::Up {
            self.flush(i);
        }
    }

    /// Messages delivered so far.
    pub fn messages_delivered(&self) -> u64 {
        self.delivered
    }

    /// Changes the step bound of [`drive`](Self::drive) and [`run_until`](Self::run_until).
    pub fn set_max_steps(&mut self, max_steps: u64) {
        self.max_steps = max_steps;
    }

    /// Runs a command on node `i` at the current time and sends what it produced.
    pub fn command<R>(&mut self, i: usize, f: impl FnOnce(&mut Kademlia, Instant) -> R) -> R {
        let now = self.now;
        let result = f(&mut self.nodes[i].kad, now);
        self.flush(i);
        result
    }

    /// Takes node `i`'s event for `query`, if it was emitted.
    pub fn take_event(&mut self, i: usize, query: QueryId) -> Option<Event> {
        self.take_timed_event(i, query).map(|(_, event)| event)
    }

    /// Takes node `i`'s event for `query` with the virtual time it was emitted at.
    pub fn take_timed_event(&mut self, i: usize, query: QueryId) -> Option<(Instant, Event)> {
        let events = &mut self.nodes[i].events;
        let pos = events.iter().position(|(_, e)| event_query(e) == query)?;
        Some(events.remove(pos))
    }

    /// Runs until no message is in flight and no live node has a query running (periodic
    /// timers alone do not keep it going).
    ///
    /// # Errors
    /// [`DriveError::StepLimit`] after the step bound.
    pub fn drive(&mut self) -> Result<(), DriveError> {
        let start = self.steps;
        loop {
            if self.queue.is_empty() && self.is_idle() {
                return Ok(());
            }
            if self.steps - start >= self.max_steps {
                return Err(DriveError::StepLimit {
                    steps: self.steps - start,
                });
            }
            if !self.step(None) {
                return Ok(());
            }
        }
    }

    /// Runs everything due up to `until` (messages and every timer, periodic ones too),
    /// then sets the clock to `until`.
    ///
    /// # Errors
    /// [`DriveError::StepLimit`] after the step bound.
    pub fn run_until(&mut self, until: Instant) -> Result<(), DriveError> {
        let start = self.steps;
        while self.step(Some(until)) {
            if self.steps - start >= self.max_steps {
                return Err(DriveError::StepLimit {
                    steps: self.steps - start,
                });
            }
        }
        self.now = self.now.max(until);
        Ok(())
    }

    /// [`run_until`](Self::run_until) `duration` from now.
    ///
    /// # Errors
    /// [`DriveError::StepLimit`] after the step bound.
    pub fn run_for(&mut self, duration: Duration) -> Result<(), DriveError> {
        self.run_until(self.now + duration)
    }

    fn is_idle(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| n.state != NodeState::Up || n.kad.active_queries() == 0)
    }

    /// The earliest live wake-up time, dropping stale entries.
    fn next_timer(&mut self) -> Option<(Instant, usize)> {
        while let Some(&Reverse((at, i))) = self.timers.peek() {
            if self.nodes[i].state == NodeState::Up && self.scheduled[i] == Some(at) {
                return Some((at, i));
            }
            self.timers.pop();
        }
        None
    }

    /// Handles the earliest message or timer, if it is due by `limit`. Returns false when
    /// there was nothing to do.
    fn step(&mut self, limit: Option<Instant>) -> bool {
        let next_message = self.queue.peek().map(|Reverse(m)| m.at);
        let next_timer = self.next_timer();
        let message_first = match (next_message, next_timer) {
            (None, None) => return false,
            (Some(m), Some((t, _))) => m <= t,
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        let at = if message_first {
            next_message
        } else {
            next_timer.map(|(t, _)| t)
        };
        let Some(at) = at else {
            return false;
        };
        if limit.is_some_and(|limit| at > limit) {
            return false;
        }
        self.now = self.now.max(at);
        self.steps += 1;
        if message_first {
            if let Some(Reverse(message)) = self.queue.pop() {
                self.deliver(message.payload);
            }
        } else if let Some((_, i)) = next_timer {
            self.timers.pop();
            self.scheduled[i] = None;
            let now = self.now;
            self.nodes[i].kad.handle_timeout(now);
            self.flush(i);
        }
        true
    }

    fn enqueue(&mut self, payload: Payload) {
        let at = self.now + self.latency;
        self.seq += 1;
        self.queue.push(Reverse(InFlight {
            at,
            seq: self.seq,
            payload,
        }));
    }

    fn deliver(&mut self, payload: Payload) {
        self.delivered += 1;
        let now = self.now;
        match payload {
            Payload::Request {
                from,
                to,
                request,
                message,
            } => {
                let outcome = match self.nodes[to].state {
                    NodeState::Up if self.nodes[to].adversary.is_some() => {
                        let sender = self.nodes[from].contact;
                        let answer = self.adversary_answer(to, sender, message);
                        self.flush(to);
                        match answer {
                            Some(reply) => Ok(reply),
                            None => return,
                        }
                    }
                    NodeState::Up => {
                        let sender = self.nodes[from].contact;
                        let reply = self.nodes[to].kad.handle_request(now, sender, message);
                        self.flush(to);
                        Ok(reply)
                    }
                    NodeState::Unreachable => Err(RequestFailure::Unreachable),
                    NodeState::Silent => return,
                };
                self.enqueue(Payload::Response {
                    to: from,
                    request,
                    outcome,
                });
            }
            Payload::Response {
                to,
                request,
                outcome,
            } => {
                if self.nodes[to].state == NodeState::Up {
                    self.nodes[to].kad.handle_response(now, request, outcome);
                    self.flush(to);
                }
            }
        }
    }

    /// Sends node `i`'s transmits, keeps its events and reschedules its wake-up.
    fn flush(&mut self, i: usize) {
        if self.nodes[i].state != NodeState::Up {
            return;
        }
        while let Some(transmit) = self.nodes[i].kad.poll_transmit() {
            match self.by_id.get(&transmit.to.id) {
                Some(&to) => self.enqueue(Payload::Request {
                    from: i,
                    to,
                    request: transmit.request,
                    message: transmit.message,
                }),
                None if self.unknown_peers == NodeState::Silent => {}
                None => self.enqueue(Payload::Response {
                    to: i,
                    request: transmit.request,
                    outcome: Err(RequestFailure::Unreachable),
                }),
            }
        }
        while let Some(event) = self.nodes[i].kad.poll_event() {
            self.nodes[i].events.push((self.now, event));
        }
        // Test nodes keep no durable copy: the journal is only emptied.
        while self.nodes[i].kad.poll_store_change().is_some() {}
        let wake = self.nodes[i].kad.poll_timeout().map(|t| t.max(self.now));
        if wake != self.scheduled[i] {
            self.scheduled[i] = wake;
            if let Some(at) = wake {
                self.timers.push(Reverse((at, i)));
            }
        }
    }
}

impl Network {
    /// The reply adversarial node `i` fabricates for `message` from `from`; `None` for
    /// silence.
    fn adversary_answer(
        &mut self,
        i: usize,
        from: Contact,
        message: KadMessage,
    ) -> Option<KadMessage> {
        let behaviour = self.nodes[i].adversary?;
        let k = self.nodes[i].kad.config().k;
        let target = match &message {
            KadMessage::FindNode { target } => Some(*target),
            KadMessage::FindValue { key } => Some(*key),
            _ => None,
        };
        let value_lookup = matches!(message, KadMessage::FindValue { .. });
        let contacts_reply = |contacts: Vec<Contact>| {
            if value_lookup {
                KadMessage::ValueNotFound { contacts }
            } else {
                KadMessage::FindNodeReply { contacts }
            }
        };
        let now = self.now;
        match (behaviour, target, &message) {
            (Adversary::Drop, _, _) => None,
            (Adversary::FakeContacts, Some(target), _) => {
                let contacts = (0..k)
                    .map(|_| {
                        let mut id = target.0;
                        self.adversary_rng.fill(&mut id[8..]);
                        let host: u8 = self.adversary_rng.gen();
                        Contact::unkeyed(Key(id), SocketAddr::from(([198, 51, 100, host], 4000)))
                    })
                    .collect();
                Some(contacts_reply(contacts))
            }
            (Adversary::Eclipse, Some(target), _) => {
                let mut colluders: Vec<Contact> = self
                    .adversaries
                    .iter()
                    .filter(|&&a| a != i)
                    .map(|&a| self.nodes[a].contact)
                    .collect();
                colluders.sort_by_key(|c| target.distance(&c.id));
                colluders.truncate(k);
                Some(contacts_reply(colluders))
            }
            (Adversary::FakeContacts | Adversary::Eclipse, None, KadMessage::Store { key, .. }) => {
                Some(KadMessage::StoreReply {
                    key: *key,
                    stored: true,
                })
            }
            (
                Adversary::FakeContacts | Adversary::Eclipse,
                None,
                KadMessage::StoreSigned { record, .. },
            ) => Some(KadMessage::StoreReply {
                key: record.key(),
                stored: true,
            }),
            (Adversary::WrongValue, Some(_), KadMessage::FindValue { .. }) => {
                let value: Vec<u8> = (0..32).map(|_| self.adversary_rng.gen()).collect();
                Some(KadMessage::FoundValue {
                    value: Bytes::from(value),
                    ttl_ms: 3_600_000,
                    version: Version(u64::MAX),
                })
            }
            (Adversary::ForgedSigned, Some(key), KadMessage::FindValue { .. }) => {
                let honest = self.nodes[i].kad.handle_request(now, from, message);
                let value: Vec<u8> = (0..32).map(|_| self.adversary_rng.gen()).collect();
                let record = match honest {
                    KadMessage::FoundSigned { record } => SignedRecord {
                        value: Bytes::from(value),
                        seq: record.seq.saturating_add(1),
                        ..record
                    },
                    _ => SignedRecord {
                        public_key: self.adversary_rng.gen(),
                        salt: Bytes::copy_from_slice(&key.0),
                        seq: u64::MAX,
                        expiry: u64::MAX,
                        value: Bytes::from(value),
                        signature: [7; 64],
                    },
                };
                Some(KadMessage::FoundSigned { record })
            }
            _ => Some(self.nodes[i].kad.handle_request(now, from, message)),
        }
    }
}

/// The query an event reports on.
pub fn event_query(event: &Event) -> QueryId {
    match event {
        Event::GetFinished { query, .. }
        | Event::PutFinished { query, .. }
        | Event::FindNodeFinished { query, .. }
        | Event::BootstrapFinished { query, .. } => *query,
    }
}
