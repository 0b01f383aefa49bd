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
//!
//! # Layout
//! - [`routing`]: the 256 k-buckets, replacement caches and the eviction rules.
//! - [`lookup`]: one iterative lookup (alpha in flight, converges on the k closest).
//! - [`store`]: records, versions, expiry and republish schedules.
//! - [`timers`]: timers as data (periodic timers, request and query deadlines).
//! - `kademlia`: the [`Kademlia`] state machine that ties them together.
//! - [`testing`]: an in-memory network of many nodes under a virtual clock, for tests
//!   and simulations.
//!
//! # Rules worth knowing
//! - **Routing table** ([`routing`]): 256 buckets of k, least recently seen first. A
//!   contact that talks to us moves to the tail; one only named in a reply is inserted
//!   only where there is room. A newcomer to a full bucket waits in an 8-entry replacement
//!   cache; the bucket's oldest entry is pinged (one ping per bucket at a time) only if it
//!   has been silent for [`routing::PING_IF_SILENT_FOR`], so a busy node sends no pings.
//!   A failed ping evicts at once; any contact is evicted after
//!   [`routing::MAX_FAILURES`] failed requests in a row. Evicted entries are replaced by
//!   the newest cached contact.
//! - **Lookups** ([`lookup`]): alpha in flight, per-request deadline (a late answer is
//!   still used), finished once the k closest known have answered; the whole query is
//!   bounded by `query_timeout`.
//! - **GET** ends with the first value found (no caching of the value along the path:
//!   a cached copy outside the replication set would keep serving an old version).
//! - **PUT** stores on the `replication` closest of {answering nodes, this node}; this
//!   node keeps a copy if it is among them or it knows nobody.
//! - **Records** ([`store`]): newest version wins, equal version is idempotent, expired
//!   records are never served, the store is bounded. Republish: the original publisher
//!   re-runs the PUT (fresh lookup); a replica sends STORE to the closest nodes of its
//!   table, unless a peer stored the record on it during the last interval.
//! - **Refresh**: bootstrap looks up the own id, then a random id in every bucket farther
//!   than the closest neighbour; afterwards any bucket without a lookup for
//!   `refresh_interval` gets one.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod kademlia;
pub mod lookup;
pub mod routing;
pub mod store;
pub mod testing;
pub mod timers;

#[cfg(test)]
pub(crate) mod test_support;

pub use kademlia::Kademlia;
pub use store::{Record, StoreOutcome};

use bytes::Bytes;
use std::time::Duration;
use voidmesh_proto::{Contact, KadMessage, Key};

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

/// Counters of one node's activity, for tests, simulations and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests handed out through [`Kademlia::poll_transmit`].
    pub requests_sent: u64,
    /// Lookups that ended (GET, PUT, FIND_NODE, bootstrap and refresh lookups).
    pub lookups: u64,
    /// Requests those lookups sent; divided by `lookups`, the mean cost of one lookup.
    pub lookup_requests: u64,
}
