//! Kademlia as a pure state machine (sans-IO).
//!
//! This crate holds every Kademlia rule — ids and distance, k-buckets, iterative lookups,
//! record storage, expiry, republishing, bucket refresh — and no I/O: it opens no socket,
//! reads no clock and uses no randomness it was not handed (the RNG is seeded from
//! [`Config::rng_seed`]). The same code runs under tokio in `voidmesh-node`, under a
//! virtual clock in `voidmesh-sim`, and in the deterministic unit tests here.
//!
//! # Calling convention
//! See [`Kademlia`]: feed inputs (`handle_*`, commands), then drain outputs
//! (`poll_transmit`, `poll_event`, `poll_timeout`) until they are empty.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

// PLACEHOLDER: the public API below is the contract with crates/node and crates/sim.
// The implementation replaces the bodies and may add modules and methods.

use bytes::Bytes;
use std::time::{Duration, Instant};
use voidmesh_proto::{Contact, KadMessage, Key, NodeId, Version};

/// Tunables of one Kademlia node. Defaults follow design.md.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bucket size and the number of closest nodes a lookup converges on (20).
    pub k: usize,
    /// Requests in flight per lookup (3).
    pub alpha: usize,
    /// How long one peer has to answer before the lookup moves on (1 s).
    pub request_timeout: Duration,
    /// How long a whole GET/PUT/lookup may take before it finishes unsuccessfully (10 s).
    pub query_timeout: Duration,
    /// Upper bound on a record's TTL (24 h).
    pub max_ttl: Duration,
    /// Upper bound on the replication hint (k); the lower bound is 1.
    pub max_replication: u8,
    /// How often a bucket not touched is refreshed by a lookup of a random id in it (1 h).
    pub refresh_interval: Duration,
    /// How often held records are stored again on the closest nodes (1 h).
    pub republish_interval: Duration,
    /// Most records this node holds (others' and its own).
    pub max_records: usize,
    /// Seed of the RNG used for random lookup targets and tie-breaks.
    pub rng_seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            k: 20,
            alpha: 3,
            request_timeout: Duration::from_secs(1),
            query_timeout: Duration::from_secs(10),
            max_ttl: Duration::from_secs(24 * 3600),
            max_replication: 20,
            refresh_interval: Duration::from_secs(3600),
            republish_interval: Duration::from_secs(3600),
            max_records: 100_000,
            rng_seed: 0,
        }
    }
}

/// Names one outgoing request, so its response (or failure) can be matched to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Names one operation started by a command (get, put, find_node, bootstrap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// A request the driver must deliver to `to` and whose outcome it must report back with
/// [`Kademlia::handle_response`] under the same `request` id.
#[derive(Debug, Clone)]
pub struct Transmit {
    /// Matches the outcome to this request.
    pub request: RequestId,
    /// The peer to ask; the transport must check the peer really is `to.id`.
    pub to: Contact,
    /// The request message.
    pub message: KadMessage,
}

/// Why a request got no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFailure {
    /// No answer in time.
    Timeout,
    /// The peer could not be reached, or it closed the connection.
    Unreachable,
    /// The answer could not be decoded.
    Malformed,
}

/// What a finished operation produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A [`Kademlia::get`] finished. Emitted exactly once per get.
    GetFinished {
        /// The get's id.
        query: QueryId,
        /// The key asked for.
        key: Key,
        /// The value found, or `None` when the search ended without one.
        value: Option<Bytes>,
    },
    /// A [`Kademlia::put`] finished. Emitted exactly once per put.
    PutFinished {
        /// The put's id.
        query: QueryId,
        /// The key stored.
        key: Key,
        /// How many remote nodes confirmed they hold the record.
        stored_remote: usize,
        /// Whether this node keeps a copy too (it is among the closest).
        stored_local: bool,
    },
    /// A [`Kademlia::find_node`] finished.
    FindNodeFinished {
        /// The lookup's id.
        query: QueryId,
        /// The target.
        target: Key,
        /// The closest nodes that answered, nearest first (at most k).
        closest: Vec<Contact>,
    },
    /// A [`Kademlia::bootstrap`] finished (self-lookup and refresh of farther buckets).
    BootstrapFinished {
        /// The bootstrap's id.
        query: QueryId,
        /// Contacts in the routing table afterwards.
        contacts: usize,
    },
}

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
pub struct Kademlia {
    local_id: NodeId,
}

impl Kademlia {
    /// A node with an empty routing table and no records.
    pub fn new(local_id: NodeId, config: Config, now: Instant) -> Self {
        let _ = (config, now);
        Kademlia { local_id }
    }

    /// This node's id.
    pub fn local_id(&self) -> NodeId {
        self.local_id
    }

    /// All contacts in the routing table (e.g. to remember them across restarts).
    pub fn contacts(&self) -> Vec<Contact> {
        unimplemented!()
    }

    /// Number of records held.
    pub fn record_count(&self) -> usize {
        unimplemented!()
    }

    /// Joins the network through `seeds` (whose ids the transport already verified):
    /// adds them, looks up the own id, then refreshes the buckets farther away.
    pub fn bootstrap(&mut self, now: Instant, seeds: &[Contact]) -> QueryId {
        let _ = (now, seeds);
        unimplemented!()
    }

    /// Offers a contact to the routing table (e.g. one remembered from a past run).
    pub fn add_contact(&mut self, now: Instant, contact: Contact) {
        let _ = (now, contact);
        unimplemented!()
    }

    /// Starts a GET: a local copy answers at once, else an iterative FIND_VALUE lookup.
    pub fn get(&mut self, now: Instant, key: Key) -> QueryId {
        let _ = (now, key);
        unimplemented!()
    }

    /// Starts a PUT: a lookup of the closest nodes, then STORE on the `replication`
    /// closest (clamped to [1, max_replication]); `ttl` is clamped to `max_ttl`.
    pub fn put(
        &mut self,
        now: Instant,
        key: Key,
        value: Bytes,
        ttl: Duration,
        replication: u8,
        version: Version,
    ) -> QueryId {
        let _ = (now, key, value, ttl, replication, version);
        unimplemented!()
    }

    /// Starts an iterative lookup of the k closest nodes to `target`.
    pub fn find_node(&mut self, now: Instant, target: Key) -> QueryId {
        let _ = (now, target);
        unimplemented!()
    }

    /// A peer sent us a request; returns the reply to send back on the same stream.
    /// A message that is not a request gets an [`KadMessage::Error`] reply.
    pub fn handle_request(&mut self, now: Instant, from: Contact, request: KadMessage) -> KadMessage {
        let _ = (now, from, request);
        unimplemented!()
    }

    /// The outcome of a [`Transmit`]. Outcomes for unknown or finished requests are ignored.
    pub fn handle_response(
        &mut self,
        now: Instant,
        request: RequestId,
        outcome: Result<KadMessage, RequestFailure>,
    ) {
        let _ = (now, request, outcome);
        unimplemented!()
    }

    /// Advances timers: request deadlines, query deadlines, refresh, republish, expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        unimplemented!()
    }

    /// The next request to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        unimplemented!()
    }

    /// The next finished operation.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        unimplemented!()
    }

    /// When `handle_timeout` should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        unimplemented!()
    }
}
