//! The simulated world: every node's real `Kademlia`, the virtual network between them
//! and the event queue. This is quinn's test `Pair` scaled up: [`World::step`] takes the
//! earliest event (a request or reply arriving, a node's timer, a workload action), jumps
//! virtual time to it, feeds it to the node and drains that node's outputs.
//!
//! # A request's life
//! 1. Node A's `poll_transmit` yields a request to contact `c`. The transport finds the
//!    node behind `c.addr`; nobody there, or the message is lost: A's transport reports
//!    [`RequestFailure::Timeout`] once the transport timeout has passed.
//! 2. Otherwise the request arrives after the link's latency. If the node there has left
//!    (crash: A times out; graceful: A hears [`RequestFailure::Unreachable`] one latency
//!    later) or is not `c.id` (the transport's identity check fails: unreachable), A
//!    learns so. An honest node answers with `handle_request`; an adversary's answer is
//!    fabricated by [`crate::adversary`].
//! 3. The reply travels back (it may be lost too, or arrive after the transport timeout,
//!    which makes it a timeout) and A gets `handle_response`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use voidmesh_kad::{Event, Kademlia, QueryId, RequestFailure, RequestId, Transmit};
use voidmesh_proto::{Contact, KadMessage, Key, NodeId, Version};

use crate::adversary::{self, Answer, Behaviour};
use crate::clock::Clock;
use crate::members::Members;
use crate::network::{addr_of, index_of, mix64, Network};
use crate::queue::EventQueue;
use crate::scenario::{JoinMode, Scenario};
use crate::tracking::{k_closest, QueryKind, QueryRecord, Tag};
use crate::transport::{self, Route};
use crate::wire_size::wire_len;
use crate::SimError;

/// The Unix time (seconds) at virtual time zero. Every node is told the Unix time, as the
/// daemon's driver does, so the state machine's checks against the wall clock (plain
/// versions from the future, signed records' expiry) run in the simulator too. Versions of
/// the simulated PUTs lie far below it.
pub const SIM_UNIX_EPOCH_SECS: u64 = 1_800_000_000;

/// Something the workload asked to happen at a given virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Node `n` (already created) joins.
    Join(u32),
    /// A brand-new node is created and joins (churn).
    ChurnJoin,
    /// A random node leaves (churn).
    ChurnLeave,
    /// Record `r` is stored.
    Put(u32),
    /// Record `r` is fetched.
    Get(u32),
    /// A lookup of a random key from a random node.
    Lookup,
    /// Retrievability probe round `p`.
    Probe(u32),
}

/// A request on its way to its target.
#[derive(Debug)]
struct Flight {
    /// The sender's node number.
    from: u32,
    /// The node number behind the address it was sent to.
    to: u32,
    /// The id the sender expects there.
    to_id: NodeId,
    /// The sender's request id.
    request: RequestId,
    /// The request.
    message: KadMessage,
    /// The query it belongs to.
    tag: Tag,
    /// When it was sent (the transport deadline runs from here).
    sent_at: Duration,
    /// Datagram or stream.
    route: Route,
    /// Sent without an address token from that peer (its reply hands one over).
    first: bool,
}

/// The outcome of a request on its way back to the sender.
#[derive(Debug)]
struct Reply {
    /// The sender of the request.
    to: u32,
    /// The node that answered.
    from: u32,
    /// Bytes the reply cost on the transport.
    bytes: usize,
    /// Its request id.
    request: RequestId,
    /// The reply, or why there is none.
    outcome: Result<KadMessage, RequestFailure>,
    /// The query it belongs to.
    tag: Tag,
}

/// One scheduled event; large payloads are boxed so the heap moves small entries.
#[derive(Debug)]
enum Ev {
    /// A request arrives at its target.
    Request(Box<Flight>),
    /// The outcome of a request arrives back at its sender.
    Response(Box<Reply>),
    /// A node's `poll_timeout` is due (stale if the node's deadline has moved since).
    Timer(u32),
    /// A workload action.
    Action(Action),
}

/// Why a node is no longer in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Departure {
    /// Vanished silently: requests to it time out.
    Crash,
    /// Left properly: connection attempts fail at once.
    Graceful,
}

/// A query running on a node that the simulator measures.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    /// The node's id for it.
    query: QueryId,
    /// Index into [`World::queries`].
    record: u32,
}

/// One simulated node.
struct Slot {
    /// Its id.
    id: NodeId,
    /// Its state machine; `None` once it has left (frees the memory).
    kad: Option<Box<Kademlia>>,
    /// Why it left, once it has.
    departed: Option<Departure>,
    /// What it does with requests if it is adversarial.
    adversary: Option<Behaviour>,
    /// Its joining operation while it runs.
    join_query: Option<QueryId>,
    /// The timer currently scheduled for it, as virtual time.
    timer: Option<Duration>,
    /// Measured queries running on it.
    tracked: Vec<Tracked>,
    /// Peers that handed it an address token (as the codec caches them, bounded).
    tokens: HashSet<u32>,
}

/// Counters over the whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events processed.
    pub events: u64,
    /// Requests sent by all nodes (including joins, refreshes, pings, republishing).
    pub requests: u64,
    /// Replies delivered.
    pub replies: u64,
    /// Requests or replies lost by the network.
    pub lost: u64,
    /// Requests that ended in a timeout.
    pub timeouts: u64,
    /// Requests that ended unreachable.
    pub unreachable: u64,
    /// Requests answered by adversaries with a fabricated reply or silence.
    pub adversary_answers: u64,
    /// Bytes of all requests and replies (0 if not measured).
    pub bytes: u64,
    /// Nodes that finished joining.
    pub joins_done: u64,
    /// Nodes that left.
    pub departures: u64,
}

/// The whole simulated network.
pub struct World {
    /// Knobs of the run.
    scenario: Scenario,
    /// Cached `scenario.transport_timeout()`.
    transport_timeout: Duration,
    /// Virtual time.
    clock: Clock,
    /// Pending events.
    queue: EventQueue<Ev>,
    /// Every node ever created, by node number.
    slots: Vec<Slot>,
    /// Nodes in the network (joined or joining).
    alive: Members,
    /// Honest nodes in the network (a lookup succeeds if it finds the nearest one).
    honest_alive: Members,
    /// Nodes in the network that answer requests: honest ones and adversaries that reply
    /// (the ground truth a lookup's k closest are compared with).
    responsive_alive: Members,
    /// Nodes that finished joining (newcomers pre-seed from these).
    joined: Members,
    /// Honest nodes that finished joining (they start operations and serve as bootstrap).
    joined_honest: Members,
    /// Latency and loss.
    network: Network,
    /// Loss and jitter draws.
    rng_net: StdRng,
    /// Adversaries' fabricated answers.
    rng_adv: StdRng,
    /// Choices made while joining.
    rng_join: StdRng,
    /// Ids of new nodes.
    rng_ids: StdRng,
    /// Every measured query.
    queries: Vec<QueryRecord>,
    /// Queries finished since the last [`World::take_finished`].
    finished: Vec<u32>,
    /// Measured queries still running.
    running: usize,
    /// Joins still running.
    joining: usize,
    /// Events handled at the current virtual instant (livelock detection).
    same_instant: u64,
    /// Most events allowed at one virtual instant.
    same_instant_limit: u64,
    /// Totals.
    counters: Counters,
    /// Timer events in the queue, by node and time: a node's deadline often returns to
    /// the same instant (its next refresh) and needs only one entry there.
    queued_timers: HashSet<(u32, Duration)>,
    /// Reused buffer for a node's transmits.
    scratch_tx: Vec<Transmit>,
    /// Reused buffer for a node's events.
    scratch_ev: Vec<Event>,
}

/// What one [`World::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stepped {
    /// Nothing is scheduled at all.
    Idle,
    /// Handled a network or timer event.
    Event,
    /// A workload action is due; the caller carries it out.
    Action(Action),
}

impl World {
    /// An empty world at virtual time zero.
    pub fn new(scenario: &Scenario, epoch: Instant) -> Self {
        let seed = scenario.seed;
        let rng = |salt: u64| StdRng::seed_from_u64(mix64(seed ^ salt));
        World {
            transport_timeout: scenario.transport_timeout(),
            network: Network::new(scenario.latency, scenario.jitter, scenario.loss, seed),
            same_instant_limit: (50 * scenario.nodes as u64).max(1_000_000),
            scenario: scenario.clone(),
            clock: Clock::new(epoch),
            queue: EventQueue::new(),
            slots: Vec::new(),
            alive: Members::new(),
            honest_alive: Members::new(),
            responsive_alive: Members::new(),
            joined: Members::new(),
            joined_honest: Members::new(),
            rng_net: rng(1),
            rng_adv: rng(2),
            rng_join: rng(3),
            rng_ids: rng(4),
            queries: Vec::new(),
            finished: Vec::new(),
            running: 0,
            joining: 0,
            same_instant: 0,
            counters: Counters::default(),
            queued_timers: HashSet::new(),
            scratch_tx: Vec::new(),
            scratch_ev: Vec::new(),
        }
    }

    // Getters

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.clock.elapsed()
    }

    /// Every measured query so far.
    pub fn queries(&self) -> &[QueryRecord] {
        &self.queries
    }

    /// Totals so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Measured queries still running.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Joins still running.
    pub fn joining(&self) -> usize {
        self.joining
    }

    /// Nodes in the network.
    pub fn alive(&self) -> &Members {
        &self.alive
    }

    /// Nodes that finished joining.
    pub fn joined(&self) -> &Members {
        &self.joined
    }

    /// Honest nodes that finished joining.
    pub fn joined_honest(&self) -> &Members {
        &self.joined_honest
    }

    /// Nodes ever created.
    pub fn node_count(&self) -> usize {
        self.slots.len()
    }

    /// Records held by each live node, in node order.
    pub fn record_counts(&self) -> Vec<usize> {
        self.slots
            .iter()
            .filter_map(|s| s.kad.as_ref().map(|k| k.record_count()))
            .collect()
    }

    /// Routing table sizes of the live nodes, in node order.
    pub fn contact_counts(&self) -> Vec<usize> {
        self.slots
            .iter()
            .filter_map(|s| s.kad.as_ref().map(|k| k.contacts().len()))
            .collect()
    }

    /// Takes the indices of the queries that finished since the last call.
    pub fn take_finished(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.finished)
    }

    fn contact(&self, node: u32) -> Contact {
        Contact::unkeyed(self.slots[node as usize].id, addr_of(node))
    }

    // Workload commands

    /// Schedules a workload action at virtual time `at`.
    pub fn schedule(&mut self, at: Duration, action: Action) {
        self.queue.push(at, Ev::Action(action));
    }

    /// Creates a node with a random id; it is in the network (it answers requests) but has
    /// not joined yet. Returns its node number.
    pub fn add_node(&mut self, adversary: Option<Behaviour>) -> u32 {
        use rand::Rng;
        let index = self.slots.len() as u32;
        let id = Key(self.rng_ids.gen());
        let mut kad = Kademlia::new(id, self.scenario.kad_config(index), self.clock.now());
        kad.set_unix_time(
            self.clock.now(),
            SIM_UNIX_EPOCH_SECS + self.clock.elapsed().as_secs(),
        );
        self.slots.push(Slot {
            id,
            kad: Some(Box::new(kad)),
            departed: None,
            adversary,
            join_query: None,
            timer: None,
            tracked: Vec::new(),
            tokens: HashSet::new(),
        });
        self.alive.insert(index);
        if adversary.is_none() {
            self.honest_alive.insert(index);
        }
        if adversary != Some(Behaviour::DropAll) {
            self.responsive_alive.insert(index);
        }
        index
    }

    /// Starts node `node`'s join, through random joined nodes as the scenario says. The
    /// very first node has nobody to join and counts as joined at once.
    pub fn join(&mut self, node: u32) {
        if self.slots[node as usize].kad.is_none() {
            return;
        }
        let now = self.clock.now();
        let bootstrap = self
            .joined_honest
            .pick(&mut self.rng_join)
            .or_else(|| self.joined.pick(&mut self.rng_join));
        let Some(bootstrap) = bootstrap else {
            self.mark_joined(node);
            return;
        };
        let mut seeds = vec![self.contact(bootstrap)];
        if self.scenario.join != JoinMode::Bootstrap {
            for _ in 0..self.scenario.join_seeds {
                let Some(other) = self.joined.pick(&mut self.rng_join) else {
                    break;
                };
                let c = self.contact(other);
                if other == node || seeds.contains(&c) {
                    continue;
                }
                seeds.push(c);
            }
            // Pre-seeding: both sides have heard of each other.
            let me = self.contact(node);
            for s in seeds.clone() {
                let other = index_of(&s.addr).unwrap_or(u32::MAX);
                if let Some(kad) = self.kad_mut(other) {
                    kad.add_contact(now, me);
                    self.drain(other);
                }
                if let Some(kad) = self.kad_mut(node) {
                    kad.add_contact(now, s);
                }
            }
        }
        let id = self.slots[node as usize].id;
        let mode = self.scenario.join;
        let Some(kad) = self.kad_mut(node) else {
            return;
        };
        let query = match mode {
            JoinMode::Bootstrap | JoinMode::Seeded => kad.bootstrap(now, &seeds),
            JoinMode::Fast => kad.find_node(now, id),
        };
        self.slots[node as usize].join_query = Some(query);
        self.joining += 1;
        self.drain(node);
    }

    /// Node `node` leaves the network: silently (`crash`) or gracefully.
    pub fn depart(&mut self, node: u32, crash: bool) {
        let now = self.now();
        let slot = &mut self.slots[node as usize];
        if slot.kad.take().is_none() {
            return;
        }
        slot.departed = Some(if crash {
            Departure::Crash
        } else {
            Departure::Graceful
        });
        slot.timer = None;
        if slot.join_query.take().is_some() {
            self.joining -= 1;
        }
        for t in std::mem::take(&mut slot.tracked) {
            self.queries[t.record as usize].abort(now);
            self.running -= 1;
            self.finished.push(t.record);
        }
        self.alive.remove(node);
        self.honest_alive.remove(node);
        self.responsive_alive.remove(node);
        self.joined.remove(node);
        self.joined_honest.remove(node);
        self.counters.departures += 1;
    }

    /// Starts a lookup of `target` on `node`; returns the query's index.
    pub fn start_lookup(&mut self, node: u32, target: Key) -> Option<u32> {
        let now = self.clock.now();
        let query = self.kad_mut(node)?.find_node(now, target);
        Some(self.track(node, query, QueryKind::Lookup, target, None, None))
    }

    /// Starts a PUT of `key = value` on `node`; returns the query's index.
    pub fn start_put(&mut self, node: u32, key: Key, value: Bytes) -> Option<u32> {
        let now = self.clock.now();
        let ttl = Duration::from_secs(24 * 3600);
        let replication = self.scenario.replication;
        let version = Version::new(self.now().as_millis() as u64 + 1, 0);
        let query = self
            .kad_mut(node)?
            .put(now, key, value, ttl, replication, version);
        Some(self.track(node, query, QueryKind::Put, key, None, None))
    }

    /// Starts a GET of `key` on `node`, expecting `expected`; `probe` names the probe
    /// round it belongs to, if any. Returns the query's index.
    pub fn start_get(
        &mut self,
        node: u32,
        key: Key,
        expected: Bytes,
        probe: Option<u32>,
    ) -> Option<u32> {
        let now = self.clock.now();
        let query = self.kad_mut(node)?.get(now, key);
        let kind = if probe.is_some() {
            QueryKind::Probe
        } else {
            QueryKind::Get
        };
        Some(self.track(node, query, kind, key, Some(expected), probe))
    }

    fn track(
        &mut self,
        node: u32,
        query: QueryId,
        kind: QueryKind,
        target: Key,
        expected: Option<Bytes>,
        probe: Option<u32>,
    ) -> u32 {
        let record = self.queries.len() as u32;
        self.queries.push(QueryRecord::new(
            kind,
            node,
            target,
            self.now(),
            expected,
            probe,
        ));
        self.running += 1;
        self.slots[node as usize]
            .tracked
            .push(Tracked { query, record });
        self.drain(node);
        record
    }

    fn kad_mut(&mut self, node: u32) -> Option<&mut Kademlia> {
        self.slots.get_mut(node as usize)?.kad.as_deref_mut()
    }

    fn mark_joined(&mut self, node: u32) {
        self.joined.insert(node);
        if self.slots[node as usize].adversary.is_none() {
            self.joined_honest.insert(node);
        }
        self.counters.joins_done += 1;
    }

    // The drive loop

    /// Handles the earliest event.
    ///
    /// # Errors
    /// [`SimError::Livelock`] when too many events happen without virtual time moving,
    /// [`SimError::EventBudget`] when the scenario's event cap is exceeded.
    pub fn step(&mut self) -> Result<Stepped, SimError> {
        let Some((at, ev)) = self.queue.pop() else {
            return Ok(Stepped::Idle);
        };
        if at <= self.clock.elapsed() {
            self.same_instant += 1;
            if self.same_instant > self.same_instant_limit {
                return Err(SimError::Livelock {
                    at,
                    events: self.same_instant,
                });
            }
        } else {
            self.same_instant = 0;
        }
        self.clock.advance_to(at);
        self.counters.events += 1;
        if self.scenario.max_events > 0 && self.counters.events > self.scenario.max_events {
            return Err(SimError::EventBudget(self.scenario.max_events));
        }
        match ev {
            Ev::Request(flight) => self.deliver_request(*flight),
            Ev::Response(r) => {
                let Reply {
                    to,
                    from,
                    bytes,
                    request,
                    outcome,
                    tag,
                } = *r;
                self.deliver_response(to, (from, bytes), request, outcome, tag)
            }
            Ev::Timer(node) => self.fire_timer(node, at),
            Ev::Action(action) => return Ok(Stepped::Action(action)),
        }
        Ok(Stepped::Event)
    }

    /// Sends one transmit of node `from` into the network.
    fn send(&mut self, from: u32, transmit: Transmit) {
        let now = self.now();
        let target = index_of(&transmit.to.addr).filter(|&i| (i as usize) < self.slots.len());
        let has_token = target.is_some_and(|to| self.slots[from as usize].tokens.contains(&to));
        let frame = wire_len(&transmit.message);
        let (bytes, route) =
            transport::request_cost(&transmit.message, frame, has_token, self.scenario.k);
        self.counters.requests += 1;
        self.counters.bytes += bytes as u64;
        let tag = self.attribute(from, &transmit, bytes);
        let deadline = now + self.transport_timeout;
        // Where it goes and when it arrives; `None`: it never does and times out.
        let arrival = target.and_then(|to| {
            let mut delay = self.network.delay(from, to, &mut self.rng_net);
            if route == Route::Stream {
                // The QUIC handshake first.
                delay += self.network.delay(from, to, &mut self.rng_net)
                    + self.network.delay(to, from, &mut self.rng_net);
            }
            if self.network.lost(&mut self.rng_net) {
                self.counters.lost += 1;
                // The overlay sends it once more after a few round trips.
                self.counters.bytes += bytes as u64;
                if route == Route::Stream || self.network.lost(&mut self.rng_net) {
                    return None;
                }
                delay += transport::resend_after(self.network.link_latency(from, to));
            }
            Some((to, now + delay)).filter(|(_, at)| *at < deadline)
        });
        let Some((to, arrival)) = arrival else {
            self.fail(
                from,
                transmit.request,
                RequestFailure::Timeout,
                tag,
                deadline,
            );
            return;
        };
        let flight = Flight {
            from,
            to,
            to_id: transmit.to.id,
            request: transmit.request,
            message: transmit.message,
            tag,
            sent_at: now,
            route,
            first: !has_token,
        };
        self.queue.push(arrival, Ev::Request(Box::new(flight)));
    }

    /// Finds the measured query a transmit belongs to and records it there.
    fn attribute(&mut self, from: u32, transmit: &Transmit, bytes: usize) -> Tag {
        let key = match &transmit.message {
            KadMessage::FindNode { target } => target,
            KadMessage::FindValue { key } | KadMessage::Store { key, .. } => key,
            _ => return Tag::NONE,
        };
        let slot = &self.slots[from as usize];
        for t in &slot.tracked {
            let record = &mut self.queries[t.record as usize];
            if record.target == *key {
                let depth = record.on_request(&transmit.to.id, &transmit.message, bytes);
                return Tag {
                    query: t.record,
                    depth,
                };
            }
        }
        Tag::NONE
    }

    fn fail(&mut self, to: u32, request: RequestId, why: RequestFailure, tag: Tag, at: Duration) {
        let at = at.max(self.now());
        let reply = Reply {
            to,
            from: to,
            bytes: 0,
            request,
            outcome: Err(why),
            tag,
        };
        self.queue.push(at, Ev::Response(Box::new(reply)));
    }

    fn deliver_request(&mut self, f: Flight) {
        let now = self.now();
        let deadline = f.sent_at + self.transport_timeout;
        let back = self.network.delay(f.to, f.from, &mut self.rng_net);
        let slot = &self.slots[f.to as usize];
        if slot.kad.is_none() || slot.id != f.to_id {
            let why = if slot.departed == Some(Departure::Crash) && slot.id == f.to_id {
                (RequestFailure::Timeout, deadline)
            } else {
                // Gone gracefully (nothing listens; the attempt is refused), or a
                // different node answers and the identity check fails.
                (RequestFailure::Unreachable, (now + back).min(deadline))
            };
            self.fail(f.from, f.request, why.0, f.tag, why.1);
            return;
        }
        let answer = match slot.adversary {
            Some(behaviour) => {
                let (alive, slots, rng) = (&self.alive, &self.slots, &mut self.rng_adv);
                let mut live = |rng: &mut StdRng| {
                    alive
                        .pick(rng)
                        .map(|n| Contact::unkeyed(slots[n as usize].id, addr_of(n)))
                };
                adversary::answer(behaviour, &f.message, self.scenario.k, rng, &mut live)
            }
            None => Answer::Honest,
        };
        let reply = match answer {
            Answer::Honest => {
                let from = self.contact(f.from);
                let now = self.clock.now();
                let Some(kad) = self.kad_mut(f.to) else {
                    return;
                };
                let reply = kad.handle_request(now, from, f.message);
                self.drain(f.to);
                Some(reply)
            }
            Answer::Silent => {
                self.counters.adversary_answers += 1;
                None
            }
            Answer::Reply(reply) => {
                self.counters.adversary_answers += 1;
                Some(reply)
            }
        };
        let Some(reply) = reply else {
            self.fail(f.from, f.request, RequestFailure::Timeout, f.tag, deadline);
            return;
        };
        let (bytes, extra_round_trips) = transport::reply_cost(wire_len(&reply), f.route, f.first);
        let mut arrival = now + back;
        for _ in 0..extra_round_trips {
            arrival += self.network.delay(f.from, f.to, &mut self.rng_net)
                + self.network.delay(f.to, f.from, &mut self.rng_net);
        }
        if self.network.lost(&mut self.rng_net) {
            self.counters.lost += 1;
            // The requester sends the request once more; that exchange must get through.
            let resend = transport::resend_after(self.network.link_latency(f.from, f.to));
            let again =
                self.network.lost(&mut self.rng_net) || self.network.lost(&mut self.rng_net);
            if f.route == Route::Stream || again {
                self.fail(f.from, f.request, RequestFailure::Timeout, f.tag, deadline);
                return;
            }
            let fwd = self.network.delay(f.from, f.to, &mut self.rng_net);
            arrival = arrival.max(f.sent_at + resend + fwd + back);
        }
        if arrival >= deadline {
            self.fail(f.from, f.request, RequestFailure::Timeout, f.tag, deadline);
            return;
        }
        let reply = Reply {
            to: f.from,
            from: f.to,
            bytes,
            request: f.request,
            outcome: Ok(reply),
            tag: f.tag,
        };
        self.queue.push(arrival, Ev::Response(Box::new(reply)));
    }

    fn deliver_response(
        &mut self,
        to: u32,
        (replier, reply_bytes): (u32, usize),
        request: RequestId,
        outcome: Result<KadMessage, RequestFailure>,
        tag: Tag,
    ) {
        if self.slots[to as usize].kad.is_none() {
            return;
        }
        match &outcome {
            Ok(reply) => {
                self.counters.replies += 1;
                let bytes = reply_bytes;
                self.counters.bytes += bytes as u64;
                // The reply handed over the peer's address token (the codec keeps at most
                // 4 096 peers; the simulation forgets them all at that bound).
                let tokens = &mut self.slots[to as usize].tokens;
                if tokens.len() >= 4096 {
                    tokens.clear();
                }
                tokens.insert(replier);
                if let Some(q) = self.queries.get_mut(tag.query as usize) {
                    if q.is_running() {
                        q.on_reply(tag.depth, reply, bytes);
                    }
                }
            }
            Err(RequestFailure::Unreachable) => self.counters.unreachable += 1,
            Err(_) => self.counters.timeouts += 1,
        }
        let now = self.clock.now();
        if let Some(kad) = self.kad_mut(to) {
            kad.handle_response(now, request, outcome);
        }
        self.drain(to);
    }

    fn fire_timer(&mut self, node: u32, at: Duration) {
        self.queued_timers.remove(&(node, at));
        let slot = &mut self.slots[node as usize];
        if slot.timer != Some(at) {
            return; // superseded by a later poll_timeout
        }
        slot.timer = None;
        let now = self.clock.now();
        if let Some(kad) = self.kad_mut(node) {
            kad.handle_timeout(now);
        }
        self.drain(node);
    }

    /// Drains node `node`'s outputs: transmits into the network, events into the
    /// bookkeeping, and its next deadline into the queue.
    fn drain(&mut self, node: u32) {
        let mut transmits = std::mem::take(&mut self.scratch_tx);
        let mut events = std::mem::take(&mut self.scratch_ev);
        let deadline = {
            let Some(kad) = self.slots[node as usize].kad.as_deref_mut() else {
                return;
            };
            while let Some(t) = kad.poll_transmit() {
                transmits.push(t);
            }
            while let Some(e) = kad.poll_event() {
                events.push(e);
            }
            // Simulated nodes keep no durable copy: the journal is only emptied.
            while kad.poll_store_change().is_some() {}
            kad.poll_timeout()
        };
        for t in transmits.drain(..) {
            self.send(node, t);
        }
        for e in events.drain(..) {
            self.on_event(node, e);
        }
        self.scratch_tx = transmits;
        self.scratch_ev = events;
        let slot = &mut self.slots[node as usize];
        match deadline.map(|d| self.clock.since_epoch(d).max(self.clock.elapsed())) {
            Some(at) if slot.timer != Some(at) => {
                slot.timer = Some(at);
                if self.queued_timers.insert((node, at)) {
                    self.queue.push(at, Ev::Timer(node));
                }
            }
            Some(_) => {}
            None => slot.timer = None,
        }
    }

    fn on_event(&mut self, node: u32, event: Event) {
        let now = self.now();
        let query = match &event {
            Event::GetFinished { query, .. }
            | Event::PutFinished { query, .. }
            | Event::FindNodeFinished { query, .. }
            | Event::BootstrapFinished { query, .. } => *query,
        };
        let slot = &mut self.slots[node as usize];
        if slot.join_query == Some(query) {
            slot.join_query = None;
            self.joining -= 1;
            self.mark_joined(node);
            return;
        }
        let Some(pos) = slot.tracked.iter().position(|t| t.query == query) else {
            return;
        };
        let record = slot.tracked.swap_remove(pos).record;
        match event {
            Event::FindNodeFinished {
                target, closest, ..
            } => {
                let ids = |set: &Members| -> Vec<NodeId> {
                    set.as_slice()
                        .iter()
                        .filter(|&&n| n != node)
                        .map(|&n| self.slots[n as usize].id)
                        .collect()
                };
                let truth = k_closest(
                    &target,
                    ids(&self.responsive_alive).into_iter(),
                    self.scenario.k,
                );
                let nearest = k_closest(&target, ids(&self.honest_alive).into_iter(), 1);
                self.queries[record as usize].finish_lookup(
                    now,
                    &closest,
                    &truth,
                    nearest.first().copied(),
                );
            }
            Event::GetFinished { value, .. } => {
                self.queries[record as usize].finish_get(now, value.as_ref());
            }
            Event::PutFinished {
                stored_remote,
                stored_local,
                ..
            } => {
                self.queries[record as usize].finish_put(now, stored_remote, stored_local);
            }
            // Tracked queries are never bootstraps; should one end so, count it as aborted.
            Event::BootstrapFinished { .. } => self.queries[record as usize].abort(now),
        }
        self.running -= 1;
        self.finished.push(record);
    }
}
