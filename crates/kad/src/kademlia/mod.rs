//! The [`Kademlia`] state machine: the public face that ties the routing table, lookups,
//! record store and timers together.
//!
//! - `mod.rs` (this file): the struct, the commands, and the inputs and outputs.
//! - [`serve`]: answering peers' requests.
//! - [`progress`]: moving queries along when answers, failures and deadlines arrive.
//! - [`query`]: the data of running queries and outstanding requests.

mod progress;
mod query;
mod serve;

use crate::lookup::Lookup;
use crate::routing::{Insert, RoutingTable, Seen};
use crate::store::{Record, RecordStore, StoreOutcome};
use crate::timers::{after, Deadline, Deadlines, Timer};
use crate::{Config, Event, QueryId, RequestFailure, RequestId, Stats, Transmit};
use bytes::Bytes;
use query::{Expect, FindPurpose, Purpose, PutJob, Query, QueryKind, Request};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use voidmesh_proto::{Contact, KadMessage, Key, NodeId, Version};

/// One Kademlia node's whole protocol state.
///
/// # Calling convention
/// - (A) getters: `local_id`, `contacts`, `record_count`, ...
/// - (B) inputs: [`handle_request`](Self::handle_request) (a peer asked us something; the
///   reply is returned at once), [`handle_response`](Self::handle_response) (the outcome of
///   one of our [`Transmit`]s), [`handle_timeout`](Self::handle_timeout).
/// - (C) commands: `bootstrap`, `add_contact`, `get`, `put`, `find_node`.
/// - (D) outputs: after every (B) or (C) call, drain [`poll_transmit`](Self::poll_transmit)
///   and [`poll_event`](Self::poll_event) until `None`, then sleep until
///   [`poll_timeout`](Self::poll_timeout) and call `handle_timeout`.
///
/// `now` must never go backwards. A `handle_timeout` before the deadline does nothing.
///
/// The node keeps its own deadline for every request it sends (`Config::request_timeout`),
/// so a driver that never reports an outcome cannot stall a lookup; it should still report
/// every outcome, because a late answer is still used.
///
/// `Clone` takes a snapshot of the whole node, e.g. to fork a simulation.
#[derive(Clone)]
pub struct Kademlia {
    /// This node's id; never in the routing table, never queried.
    local_id: NodeId,
    /// Tunables, as given.
    config: Config,
    /// The only source of randomness (refresh targets), seeded from `Config::rng_seed`.
    rng: StdRng,
    /// Known contacts by distance.
    table: RoutingTable,
    /// Records held.
    store: RecordStore,
    /// Running operations.
    queries: HashMap<QueryId, Query>,
    /// Outstanding requests, so an outcome finds its query and its peer.
    requests: HashMap<RequestId, Request>,
    /// Deadlines of requests and queries, earliest first.
    deadlines: Deadlines,
    /// When to look for stale buckets ([`Timer::Refresh`]).
    refresh_at: Instant,
    /// Requests to send, oldest first.
    transmits: VecDeque<Transmit>,
    /// Finished operations to report, oldest first.
    events: VecDeque<Event>,
    /// The next request id.
    next_request: u64,
    /// The next query id.
    next_query: u64,
    /// Counters for tests and benchmarks.
    stats: Stats,
}

impl Kademlia {
    /// A node with an empty routing table and no records.
    ///
    /// `k`, `alpha` and `max_replication` below 1 are taken as 1.
    pub fn new(local_id: NodeId, config: Config, now: Instant) -> Self {
        let config = Config {
            k: config.k.max(1),
            alpha: config.alpha.max(1),
            max_replication: config.max_replication.max(1),
            ..config
        };
        Kademlia {
            local_id,
            rng: StdRng::seed_from_u64(config.rng_seed),
            table: RoutingTable::new(local_id, config.k, now),
            store: RecordStore::new(config.max_records, config.republish_interval),
            queries: HashMap::new(),
            requests: HashMap::new(),
            deadlines: Deadlines::default(),
            refresh_at: after(now, config.refresh_interval),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_request: 0,
            next_query: 0,
            stats: Stats::default(),
            config,
        }
    }

    // ----- (A) getters -----

    /// This node's id.
    pub fn local_id(&self) -> NodeId {
        self.local_id
    }

    /// The configuration this node runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// All contacts in the routing table (e.g. to remember them across restarts).
    pub fn contacts(&self) -> Vec<Contact> {
        self.table.iter().copied().collect()
    }

    /// Up to `count` contacts from the routing table nearest to `target`, nearest first
    /// (no network traffic).
    pub fn closest_contacts(&self, target: &Key, count: usize) -> Vec<Contact> {
        self.table.closest(target, count, None)
    }

    /// Number of records held.
    pub fn record_count(&self) -> usize {
        self.store.len()
    }

    /// Every record held (some may have expired but not been swept yet; check
    /// [`Record::expires`]), e.g. to persist them across restarts.
    pub fn records(&self) -> impl Iterator<Item = (&Key, &Record)> + '_ {
        self.store.iter()
    }

    /// Number of operations still running (commands and internal lookups such as bucket
    /// refreshes and republishes). Zero means the node waits only for periodic timers.
    pub fn active_queries(&self) -> usize {
        self.queries.len()
    }

    /// Number of requests sent whose outcome is not known yet (or that are kept a while
    /// after their deadline, in case a late answer comes).
    pub fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    /// Counters since the node was created.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    // ----- (C) commands -----

    /// Joins the network through `seeds` (whose ids the transport already verified):
    /// adds them, looks up the own id, then refreshes the buckets farther away.
    ///
    /// [`Event::BootstrapFinished`] follows once the self-lookup and every refresh lookup
    /// ended. With no seeds and an empty table (the first node of a new network) it comes
    /// at once, on the next [`poll_event`](Self::poll_event).
    pub fn bootstrap(&mut self, now: Instant, seeds: &[Contact]) -> QueryId {
        for seed in seeds {
            self.add_contact(now, *seed);
        }
        let kind = QueryKind::Bootstrap {
            pending_refreshes: 0,
        };
        self.start_lookup(now, self.local_id, kind)
    }

    /// Offers a contact to the routing table (e.g. one remembered from a past run). It is
    /// treated as heard from: if its bucket is full, the oldest entry may be pinged.
    pub fn add_contact(&mut self, now: Instant, contact: Contact) {
        self.heard_from(now, contact);
    }

    /// Puts a record straight into the local store, with the same rules as a STORE from a
    /// peer (newest version wins, TTL clamped to `max_ttl` from `now`, store bound), e.g.
    /// to reload records persisted before a restart. Nothing is sent.
    pub fn restore_record(&mut self, now: Instant, key: Key, record: Record) -> StoreOutcome {
        let latest = after(now, self.config.max_ttl);
        let record = Record {
            expires: record.expires.min(latest),
            replication: self.clamp_replication(record.replication),
            ..record
        };
        self.store.put(now, key, record, false)
    }

    /// Starts a GET: a local copy answers at once, else an iterative FIND_VALUE lookup.
    ///
    /// [`Event::GetFinished`] follows exactly once: with the first value a peer returns,
    /// or `None` when the lookup ends without one or `Config::query_timeout` passes.
    pub fn get(&mut self, now: Instant, key: Key) -> QueryId {
        if let Some(record) = self.store.get(now, &key) {
            let value = Some(record.value.clone());
            let query = self.new_query_id();
            self.events
                .push_back(Event::GetFinished { query, key, value });
            return query;
        }
        self.start_lookup(now, key, QueryKind::Get { key })
    }

    /// Starts a PUT: a lookup of the closest nodes, then STORE on the `replication`
    /// closest (clamped to [1, max_replication]); `ttl` is clamped to `max_ttl`.
    ///
    /// If this node is itself among the `replication` closest to `key`, or it knows no
    /// other node at all, it keeps a copy (and republishes it as the original publisher).
    /// If `query_timeout` passes during the lookup, the STOREs go to the closest nodes found
    /// so far; each STORE is bounded by `request_timeout`. [`Event::PutFinished`] follows
    /// exactly once, when every STORE has an outcome.
    pub fn put(
        &mut self,
        now: Instant,
        key: Key,
        value: Bytes,
        ttl: Duration,
        replication: u8,
        version: Version,
    ) -> QueryId {
        let record = Record {
            value,
            version,
            expires: after(now, ttl.min(self.config.max_ttl)),
            replication: self.clamp_replication(replication),
            publisher: true,
        };
        let job = PutJob {
            key,
            record,
            report: true,
            storing: None,
        };
        self.start_lookup(now, key, QueryKind::Put(job))
    }

    /// Starts an iterative lookup of the k closest nodes to `target`;
    /// [`Event::FindNodeFinished`] follows.
    pub fn find_node(&mut self, now: Instant, target: Key) -> QueryId {
        let kind = QueryKind::FindNode {
            purpose: FindPurpose::User,
        };
        self.start_lookup(now, target, kind)
    }

    // ----- (B) inputs -----

    /// A peer sent us a request; returns the reply to send back on the same stream.
    /// A message that is not a request gets an [`KadMessage::Error`] reply.
    pub fn handle_request(
        &mut self,
        now: Instant,
        from: Contact,
        request: KadMessage,
    ) -> KadMessage {
        self.serve(now, from, request)
    }

    /// The outcome of a [`Transmit`]. Outcomes for unknown or finished requests are ignored.
    ///
    /// A reply of the wrong type (or an ERROR reply) counts as a failure. A late answer,
    /// after the request's deadline, still marks the peer alive and still helps a lookup
    /// that is running; once its query finished, only the liveness is kept.
    pub fn handle_response(
        &mut self,
        now: Instant,
        request: RequestId,
        outcome: Result<KadMessage, RequestFailure>,
    ) {
        let Some(req) = self.requests.remove(&request) else {
            tracing::trace!(?request, "outcome of an unknown or forgotten request");
            return;
        };
        let deadline = if req.timed_out {
            Deadline::Forget(request)
        } else {
            Deadline::Request(request)
        };
        self.deadlines.remove(req.deadline, deadline);
        match outcome {
            Ok(reply) if req.expect.fits(&reply) => {
                self.heard_from(now, req.to);
                self.on_reply(now, &req, reply);
            }
            other => {
                if let Ok(reply) = &other {
                    tracing::debug!(peer = ?req.to.id, got = reply.msg_type(), "unexpected reply");
                }
                if !req.timed_out {
                    self.on_failure(now, &req, false);
                }
            }
        }
    }

    /// Advances timers: request deadlines, query deadlines, refresh, republish, expiry.
    /// Calling it early (or twice) does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(deadline) = self.deadlines.pop_due(now) {
            match deadline {
                Deadline::Request(id) => self.request_deadline(now, id),
                Deadline::Forget(id) => {
                    self.requests.remove(&id);
                }
                Deadline::Query(id) => self.query_deadline(now, id),
            }
        }
        if self.timer_at(Timer::Expiry).is_some_and(|at| at <= now) {
            let dropped = self.store.expire(now);
            tracing::trace!(dropped, "expired records");
        }
        if self.timer_at(Timer::Refresh).is_some_and(|at| at <= now) {
            self.refresh_stale_buckets(now);
        }
        if self.timer_at(Timer::Republish).is_some_and(|at| at <= now) {
            self.republish_due(now);
        }
    }

    // ----- (D) outputs -----

    /// The next request to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next finished operation.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` should next be called: the earliest of the request and
    /// query deadlines and the periodic timers. O(log n) in pending requests and records.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let periodic = Timer::ALL.iter().filter_map(|t| self.timer_at(*t));
        periodic.chain(self.deadlines.next()).min()
    }

    // ----- private helpers -----

    /// When a periodic timer next fires.
    fn timer_at(&self, timer: Timer) -> Option<Instant> {
        match timer {
            Timer::Refresh => Some(self.refresh_at),
            Timer::Expiry => self.store.next_expiry(),
            Timer::Republish => self.store.next_republish(),
        }
    }

    fn new_query_id(&mut self) -> QueryId {
        let id = QueryId(self.next_query);
        self.next_query += 1;
        id
    }

    fn clamp_replication(&self, replication: u8) -> u8 {
        replication.clamp(1, self.config.max_replication)
    }

    /// Queues a request and sets its deadline.
    fn send(&mut self, now: Instant, to: Contact, message: KadMessage, purpose: Purpose) {
        let request = RequestId(self.next_request);
        self.next_request += 1;
        let deadline = after(now, self.config.request_timeout);
        self.requests.insert(
            request,
            Request {
                to,
                expect: Expect::of(&message),
                purpose,
                deadline,
                timed_out: false,
            },
        );
        self.deadlines.insert(deadline, Deadline::Request(request));
        self.stats.requests_sent += 1;
        self.transmits.push_back(Transmit {
            request,
            to,
            message,
        });
    }

    /// We heard from `contact` directly: it goes to the tail of its bucket, or, if the
    /// bucket is full, may cause a ping of the bucket's oldest entry.
    fn heard_from(&mut self, now: Instant, contact: Contact) {
        if let Insert::Pending { oldest } = self.table.offer(now, contact, Seen::Direct) {
            tracing::trace!(oldest = ?oldest.id, newcomer = ?contact.id, "bucket full; pinging its oldest entry");
            self.send(now, oldest, KadMessage::Ping, Purpose::Ping);
        }
    }

    /// Starts a query whose first phase is a lookup of `target`.
    fn start_lookup(&mut self, now: Instant, target: Key, kind: QueryKind) -> QueryId {
        let id = self.new_query_id();
        self.table.touch(&target, now);
        let seeds = self.table.closest(&target, self.config.k, None);
        let lookup = Lookup::new(
            target,
            self.local_id,
            seeds,
            self.config.k,
            self.config.alpha,
        );
        let deadline = after(now, self.config.query_timeout);
        self.deadlines.insert(deadline, Deadline::Query(id));
        let query = Query {
            kind,
            lookup: Some(lookup),
            deadline: Some(deadline),
        };
        self.queries.insert(id, query);
        self.advance(now, id);
        id
    }
}

#[cfg(test)]
mod tests;
