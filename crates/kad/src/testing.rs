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
//! The network reads no clock either: the caller hands it the first [`Instant`].
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
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use voidmesh_proto::{Contact, KadMessage, Key, NodeId};

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
        }
    }

    /// A network of `n` nodes with random ids drawn from `seed`; node `i` runs `config`
    /// with its RNG seeded from `seed` and `i`. Nobody knows anybody yet.
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
            net.add_node(Key(rng.gen()), config);
        }
        net
    }

    /// Adds a node with `id`; returns its index. Its address is made up from the index.
    pub fn add_node(&mut self, id: NodeId, config: Config) -> usize {
        let index = self.nodes.len();
        let octets = (index as u32 + 1).to_be_bytes();
        let ip = Ipv4Addr::new(10, octets[1], octets[2], octets[3]);
        let contact = Contact {
            id,
            addr: SocketAddr::new(ip.into(), 4000),
        };
        self.nodes.push(SimNode {
            kad: Kademlia::new(id, config, self.now),
            contact,
            state: NodeState::Up,
            events: Vec::new(),
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
        let wake = self.nodes[i].kad.poll_timeout().map(|t| t.max(self.now));
        if wake != self.scheduled[i] {
            self.scheduled[i] = wake;
            if let Some(at) = wake {
                self.timers.push(Reverse((at, i)));
            }
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
