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

pub use serve::SignedRejection;

use crate::lookup::DisjointLookup;
use crate::ratelimit::RateLimiter;
use crate::routing::{Insert, RoutingTable, Seen};
use crate::store::{Origin, Record, RecordStore, StoreOutcome};
use crate::timers::{after, Deadline, Deadlines, Timer};
use crate::{Config, Event, QueryId, RequestFailure, RequestId, Stats, Transmit};
use bytes::Bytes;
use query::{Expect, FindPurpose, Found, GetJob, Purpose, PutJob, Query, QueryKind, Request};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use voidmesh_proto::{Contact, KadMessage, Key, NodeId, SignedRecord, Version};

/// One Kademlia node's whole protocol state.
///
/// # Calling convention
/// - (A) getters: `local_id`, `contacts`, `record_count`, ...
/// - (B) inputs: [`handle_request`](Self::handle_request) (a peer asked us something; the
///   reply is returned at once), [`handle_response`](Self::handle_response) (the outcome of
///   one of our [`Transmit`]s), [`handle_timeout`](Self::handle_timeout).
/// - (C) commands: `bootstrap`, `add_contact`, `get`, `get_signed`, `put`, `put_signed`,
///   `find_node`, `set_unix_time`, `restore_record`, `restore_signed`.
/// - (D) outputs: after every (B) or (C) call, drain [`poll_transmit`](Self::poll_transmit),
///   [`poll_event`](Self::poll_event) and [`poll_store_change`](Self::poll_store_change)
///   until `None`, then sleep until [`poll_timeout`](Self::poll_timeout) and call
///   `handle_timeout`. The store changes say what a durable copy (or a read path) must
///   write or delete so that it holds exactly what the state machine holds; a driver
///   without one still drains them, since they queue until taken.
///
/// `now` must never go backwards. A `handle_timeout` before the deadline does nothing.
///
/// The node keeps its own deadline for every request it sends (`Config::request_timeout`),
/// so a driver that never reports an outcome cannot stall a lookup; it should still report
/// every outcome, because a late answer is still used.
///
/// The node reads no clock at all, not even the wall clock: signed records (whose expiry
/// is a Unix time) and the version sanity check need the driver to call
/// [`set_unix_time`](Self::set_unix_time) once at start (and whenever it likes after).
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
    /// Token buckets of the peers that send requests.
    limiter: RateLimiter,
    /// `(instant, Unix milliseconds)` from the driver; the Unix time at any later instant
    /// is extrapolated from it. `None` until [`Kademlia::set_unix_time`] is called.
    unix_anchor: Option<(Instant, u64)>,
}

impl Kademlia {
    /// A node with an empty routing table and no records.
    ///
    /// `k`, `alpha`, `max_replication`, `disjoint_paths` and `read_quorum` below 1 are
    /// taken as 1; `disjoint_paths` above k as k.
    pub fn new(local_id: NodeId, config: Config, now: Instant) -> Self {
        let k = config.k.max(1);
        let config = Config {
            k,
            alpha: config.alpha.max(1),
            max_replication: config.max_replication.max(1),
            disjoint_paths: config.disjoint_paths.clamp(1, k),
            read_quorum: config.read_quorum.max(1),
            ..config
        };
        Kademlia {
            local_id,
            rng: StdRng::seed_from_u64(config.rng_seed),
            table: RoutingTable::new(local_id, config.k, now)
                .with_rules(config.id_difficulty, config.max_per_subnet),
            store: RecordStore::new(config.max_records, config.republish_interval)
                .with_max_bytes(config.max_record_bytes),
            limiter: RateLimiter::new(config.peer_rate, config.peer_burst),
            unix_anchor: None,
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

    /// Number of contacts in the routing table.
    pub fn contact_count(&self) -> usize {
        self.table.len()
    }

    /// Up to `count` contacts from the routing table nearest to `target`, nearest first
    /// (no network traffic).
    pub fn closest_contacts(&self, target: &Key, count: usize) -> Vec<Contact> {
        self.table.closest(target, count, None)
    }

    /// Number of records held (plain and signed).
    pub fn record_count(&self) -> usize {
        self.store.len()
    }

    /// Bytes of records held, as counted against `Config::max_record_bytes`.
    pub fn record_bytes(&self) -> usize {
        self.store.bytes()
    }

    /// Every plain record held (some may have expired but not been swept yet; check
    /// [`Record::expires`]), e.g. to persist them across restarts. Signed records are
    /// listed by [`signed_records`](Self::signed_records).
    pub fn records(&self) -> impl Iterator<Item = (&Key, &Record)> + '_ {
        self.store.iter()
    }

    /// Every signed record held, with its local form (replication hint, publisher flag,
    /// local expiry), e.g. to persist them and reload them with
    /// [`restore_signed`](Self::restore_signed).
    pub fn signed_records(&self) -> impl Iterator<Item = (&SignedRecord, &Record)> + '_ {
        self.store.iter_signed()
    }

    /// The value this node holds under `key` (plain or signed), without asking anyone: for
    /// callers that accept a possibly stale copy. [`get`](Self::get) never answers from the
    /// local copy alone.
    pub fn local_value(&self, now: Instant, key: &Key) -> Option<Bytes> {
        self.store.peek(now, key).map(|(r, _)| r.value.clone())
    }

    /// The record held under `key` with its signed form, if it has one, expired or not:
    /// what a [`StoreChange::Held`](crate::StoreChange::Held) refers to.
    pub fn held(&self, key: &Key) -> Option<(&Record, Option<&SignedRecord>)> {
        self.store.held(key)
    }

    /// The Unix time (seconds) at `now`, extrapolated from the last
    /// [`set_unix_time`](Self::set_unix_time); `None` before the first.
    pub fn unix_time(&self, now: Instant) -> Option<u64> {
        let (at, unix_ms) = self.unix_anchor?;
        let elapsed =
            u64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(u64::MAX);
        // Whole seconds of the extrapolated millisecond time: never ahead of the clock, and
        // at most 1 s behind (so an expiry checked against it is never cut short).
        Some(unix_ms.saturating_add(elapsed) / 1000)
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
    /// treated as heard from: if its bucket is full, the oldest entry may be pinged. A
    /// contact whose id fails the id puzzle, or whose subnet is at its limit in its
    /// bucket, is not added.
    pub fn add_contact(&mut self, now: Instant, contact: Contact) {
        self.heard_from(now, contact);
    }

    /// Tells the node the wall-clock time: `unix_secs` is the Unix time at `now`. Needed
    /// before signed records can be stored or checked, and for the check that refuses
    /// plain versions from the future; call it at start and, to follow clock adjustments,
    /// whenever convenient (e.g. hourly).
    pub fn set_unix_time(&mut self, now: Instant, unix_secs: u64) {
        self.set_unix_time_ms(now, unix_secs.saturating_mul(1000));
    }

    /// Like [`set_unix_time`](Self::set_unix_time), to the millisecond: `unix_ms` is the
    /// Unix time at `now` in milliseconds (what a driver reading the wall clock should
    /// pass, so that whole seconds are not lost at every anchor).
    pub fn set_unix_time_ms(&mut self, now: Instant, unix_ms: u64) {
        self.unix_anchor = Some((now, unix_ms));
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
        self.store.put(now, key, record, Origin::Local)
    }

    /// Puts a signed record straight into the local store after the same checks as a
    /// STORE_SIGNED from a peer (signature, key, expiry against the Unix time, higher
    /// sequence number), e.g. to reload records persisted before a restart; call
    /// [`set_unix_time`](Self::set_unix_time) first. `publisher` says whether this node
    /// published it (it then republishes it with a fresh lookup). Nothing is sent.
    pub fn restore_signed(
        &mut self,
        now: Instant,
        record: SignedRecord,
        replication: u8,
        publisher: bool,
    ) -> StoreOutcome {
        match self.check_signed(now, &record.key(), &record, replication, publisher) {
            Ok(local) => self.store.put_signed(now, record, local, Origin::Local),
            Err(SignedRejection::Invalid(voidmesh_proto::SignedRecordError::Expired)) => {
                StoreOutcome::RefusedExpired
            }
            Err(e) => {
                tracing::warn!(key = ?record.key(), error = %e, "signed record not restored");
                StoreOutcome::RefusedInvalid
            }
        }
    }

    /// Starts a GET: an iterative FIND_VALUE lookup that goes on until `read_quorum`
    /// holders answered (this node's own copy counts as one) or the lookup ends.
    ///
    /// [`Event::GetFinished`] follows exactly once, with the newest valid value seen (a
    /// verified signed record outranks plain values), or `None` when there was none by the
    /// end of the lookup or `Config::query_timeout`. Holders that answered with an older
    /// copy, and queried nodes nearer the key than a holder that answered without one, then
    /// get the newest copy (read repair), this node's own stale copy included.
    ///
    /// A local copy is never returned without asking the network, since it may be stale
    /// (use [`local_value`](Self::local_value) for that, or a `read_quorum` of 1), except
    /// when this node knows no other node at all.
    pub fn get(&mut self, now: Instant, key: Key) -> QueryId {
        self.start_get(now, key, false)
    }

    /// Starts a GET of a signed record: as [`get`](Self::get), but only verified signed
    /// records count; [`Event::GetFinished`] carries the one with the highest sequence
    /// number in `signed`.
    pub fn get_signed(&mut self, now: Instant, key: Key) -> QueryId {
        self.start_get(now, key, true)
    }

    /// Starts a PUT of a signed record: checked like a STORE_SIGNED from a peer (signature,
    /// key, expiry against the Unix time, so [`set_unix_time`](Self::set_unix_time) must
    /// have been called), then stored like [`put`](Self::put) under `record.key()` on the
    /// `replication` closest nodes with STORE_SIGNED. [`Event::PutFinished`] follows.
    ///
    /// # Errors
    /// [`SignedRejection`] when the record would be refused; nothing is sent then.
    pub fn put_signed(
        &mut self,
        now: Instant,
        record: SignedRecord,
        replication: u8,
    ) -> Result<QueryId, SignedRejection> {
        let key = record.key();
        let local = self.check_signed(now, &key, &record, replication, true)?;
        let outcome = self
            .store
            .put_signed(now, record.clone(), local.clone(), Origin::Local);
        tracing::trace!(?key, ?outcome, "own PUT SIGNED kept locally");
        let job = PutJob {
            key,
            record: local,
            signed: Some(record),
            report: true,
            storing: None,
        };
        Ok(self.start_lookup(now, key, QueryKind::Put(job)))
    }

    /// Starts a PUT: a lookup of the closest nodes, then STORE on the `replication`
    /// closest (clamped to [1, max_replication]); `ttl` is clamped to `max_ttl`.
    ///
    /// This node keeps a copy from this call on, as the record's publisher (it republishes
    /// it with a fresh lookup), so a GET here sees the write at once (read-your-writes);
    /// the copy counts as one of the `replication` holders only if this node is among the
    /// `replication` closest to `key`, or it knows no other node at all.
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
        let outcome = self.store.put(now, key, record.clone(), Origin::Local);
        tracing::trace!(?key, ?outcome, "own PUT kept locally");
        let job = PutJob {
            key,
            record,
            signed: None,
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

    /// The outcome of a [`Transmit`], when the transport guarantees that a reply came from
    /// the peer asked (`Transmit::to`); otherwise use
    /// [`handle_response_from`](Self::handle_response_from). Outcomes for unknown or
    /// finished requests are ignored: an answer counts only for an outstanding request id,
    /// and only once.
    ///
    /// A reply of the wrong type (or an ERROR reply) counts as a failure, and so does an
    /// invalid one (a forged signed record, a version from the future). A late answer,
    /// after the request's deadline, still marks the peer alive and still helps a lookup
    /// that is running; once its query finished, only the liveness is kept.
    pub fn handle_response_from(
        &mut self,
        now: Instant,
        request: RequestId,
        from: NodeId,
        outcome: Result<KadMessage, RequestFailure>,
    ) {
        match self.requests.get(&request) {
            Some(req) if req.to.id != from => {
                self.stats.invalid_answers += 1;
                tracing::debug!(?request, asked = ?req.to.id, answered = ?from, "answer from a peer that was not asked ignored");
            }
            _ => self.handle_response(now, request, outcome),
        }
    }

    /// The outcome of a [`Transmit`]; the driver vouches that a reply came from the peer
    /// asked (the transport authenticated it as `Transmit::to`). See
    /// [`handle_response_from`](Self::handle_response_from) for the rules.
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
                // `on_reply` notes the peer as heard from once the answer proved valid.
                if !self.on_reply(now, &req, reply) && !req.timed_out {
                    self.on_failure(now, &req, false);
                }
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
        self.release_spare_capacity();
    }

    /// Gives back what a burst (a join refreshes every bucket at once: hundreds of
    /// requests in flight) left allocated: maps keep their largest size otherwise, and
    /// across a thousand nodes in one process that is most of their memory.
    fn release_spare_capacity(&mut self) {
        fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
            if map.capacity() > 64 && map.len() * 4 < map.capacity() {
                map.shrink_to(map.len() * 2);
            }
        }
        shrink(&mut self.requests);
        shrink(&mut self.queries);
        if self.transmits.capacity() > 64 && self.transmits.len() * 4 < self.transmits.capacity() {
            self.transmits.shrink_to(self.transmits.len() * 2);
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

    /// The next change to the records held, oldest first (see the calling convention).
    #[must_use]
    pub fn poll_store_change(&mut self) -> Option<crate::StoreChange> {
        self.store.take_change()
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

    /// Starts a GET (see [`get`](Self::get)): notes the local copy as the first answer.
    fn start_get(&mut self, now: Instant, key: Key, signed_only: bool) -> QueryId {
        let held = self.store.get_held(now, &key).map(|(record, signed)| {
            let found = match signed {
                Some(signed) => Found::Signed(signed.clone()),
                None => Found::Plain {
                    value: record.value.clone(),
                    version: record.version,
                    expires: record.expires,
                },
            };
            (found, record.replication)
        });
        let local_replication = held.as_ref().map(|(_, replication)| *replication);
        let best = held.map(|(found, _)| found);
        let job = GetJob {
            key,
            signed_only,
            local: best.as_ref().map(Found::rank),
            best: best.filter(|f| !signed_only || matches!(f, Found::Signed(_))),
            answers: Vec::new(),
            local_replication,
        };
        let quorum_met = job.quorum_count() >= self.config.read_quorum;
        if self.table.is_empty() || quorum_met {
            let query = self.new_query_id();
            self.get_finished(now, query, job, None);
            return query;
        }
        self.start_lookup(now, key, QueryKind::Get(job))
    }

    /// Starts a query whose first phase is a lookup of `target`: over
    /// `Config::disjoint_paths` paths for GET, PUT and FIND_NODE, over one path for the
    /// table maintenance of bootstrap and bucket refresh.
    fn start_lookup(&mut self, now: Instant, target: Key, kind: QueryKind) -> QueryId {
        let id = self.new_query_id();
        self.table.touch(&target, now);
        let seeds = self.table.closest(&target, self.config.k, None);
        let paths = match kind {
            QueryKind::Bootstrap { .. }
            | QueryKind::FindNode {
                purpose: FindPurpose::Refresh { .. },
            } => 1,
            _ => self.config.disjoint_paths,
        };
        let lookup = DisjointLookup::new(
            target,
            self.local_id,
            seeds,
            self.config.k,
            self.config.alpha,
            paths,
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
