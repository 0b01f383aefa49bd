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
//! - **GET** asks until `read_quorum` holders answered (or the lookup ends), returns the
//!   newest valid value seen, then writes it back to the queried holders that had an older
//!   one and to the queried nodes nearer the key than a holder that had none (read
//!   repair). A local copy is one of the answers, never the answer by itself (it may be
//!   stale): [`Kademlia::local_value`] reads it without the network for callers that
//!   accept that. No caching of the value along the path: a cached copy outside the
//!   replication set would keep serving an old version.
//! - **Lookups** of GET, PUT and FIND_NODE run over `disjoint_paths` disjoint paths
//!   ([`lookup::DisjointLookup`]); bootstrap and bucket refreshes use one path.
//! - **PUT** stores on the `replication` closest of {answering nodes, this node}; this
//!   node keeps a copy if it is among them or it knows nobody.
//! - **Records** ([`store`]): newest version wins, equal version is idempotent, expired
//!   records are never served, the store is bounded. Republish: the original publisher
//!   re-runs the PUT (fresh lookup); a replica sends STORE to the closest nodes of its
//!   table, unless a peer stored the record on it during the last interval.
//! - **Refresh**: bootstrap looks up the own id, then a random id in every bucket farther
//!   than the closest neighbour; afterwards any bucket without a lookup for
//!   `refresh_interval` gets one.
//! - **Defences** (S/Kademlia and friends): contacts whose id fails the static id puzzle
//!   (`id_difficulty`) never enter the routing table, are not asked in lookups, and their
//!   requests get ERROR 403; at most `max_per_subnet` contacts of one /24 or /48 per bucket;
//!   each peer may send `peer_rate` requests per second (burst `peer_burst`), beyond which
//!   it gets ERROR 429; an answer counts only for an outstanding request to the peer that
//!   was asked; plain versions from more than `max_version_skew` in the future are refused;
//!   signed records are verified by every node that stores or reads them.
//! - **Signed records** ([`voidmesh_proto::SignedRecord`]): stored only if the signature,
//!   the key (SHA-256 of public key and salt) and the expiry check out against the Unix
//!   time the driver supplied ([`Kademlia::set_unix_time`]), and only over a lower
//!   sequence number. Until the driver supplies the time, signed records are refused.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod kademlia;
pub mod lookup;
pub mod ratelimit;
pub mod routing;
pub mod store;
pub mod testing;
pub mod timers;

#[cfg(test)]
pub(crate) mod test_support;

pub use kademlia::{Kademlia, SignedRejection};
pub use store::{Origin, Record, Removal, StoreChange, StoreOutcome};
pub use voidmesh_proto::{SignedRecord, SignedRecordError};

use bytes::Bytes;
use std::time::Duration;
use voidmesh_proto::{Contact, KadMessage, Key, Version};

/// The id puzzle difficulty of a production network, and the daemon's default
/// (`[dht] id_difficulty`): 15 bits, about 33 000 key generations per honest node id
/// (about a second on one core), so that a Sybil attacker pays that per identity.
/// [`Config::default`] uses 0 (no puzzle) so that networks of random ids (tests,
/// simulations) work without mining.
pub const RECOMMENDED_ID_DIFFICULTY: u8 = 15;

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
    /// Leading zero bits SHA-256(node id) must have for a contact to be accepted
    /// (S/Kademlia's static puzzle); network-wide. 0 accepts every id (the default, see
    /// [`RECOMMENDED_ID_DIFFICULTY`]).
    pub id_difficulty: u8,
    /// Disjoint paths of a GET, PUT or FIND_NODE lookup (S/Kademlia's d), each with its own
    /// `alpha` requests in flight; no node is asked by two paths (3, by measurement: see
    /// docs/robustness.md, "Disjoint lookups").
    pub disjoint_paths: usize,
    /// Most contacts of one /24 (IPv4) or /48 (IPv6) network per bucket; loopback is
    /// exempt; 0 turns the limit off (2).
    pub max_per_subnet: usize,
    /// Requests per second one peer may send before it gets ERROR 429; 0 turns the limit
    /// off (1000: well above what honest lookups send, low enough to bound a flood).
    pub peer_rate: u32,
    /// Requests one peer may send at once after a quiet spell (2000).
    pub peer_burst: u32,
    /// Most bytes of records this node holds (values, signatures and a fixed overhead per
    /// record), beyond which the records expiring soonest are evicted (256 MiB).
    pub max_record_bytes: usize,
    /// Holders a GET hears from before it stops (a local copy counts as one); the newest
    /// value among them wins and stale holders are repaired (3).
    pub read_quorum: usize,
    /// How far in the future a plain record's version (its writer's clock) may lie before
    /// it is refused as forged; checked only once the driver supplied the Unix time
    /// ([`Kademlia::set_unix_time`]) (10 minutes).
    pub max_version_skew: Duration,
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
            id_difficulty: 0,
            disjoint_paths: 3,
            max_per_subnet: 2,
            peer_rate: 1000,
            peer_burst: 2000,
            max_record_bytes: 256 * 1024 * 1024,
            read_quorum: 3,
            max_version_skew: Duration::from_secs(600),
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
    /// A [`Kademlia::get`] or [`Kademlia::get_signed`] finished. Emitted exactly once per
    /// get.
    GetFinished {
        /// The get's id.
        query: QueryId,
        /// The key asked for.
        key: Key,
        /// The newest value found, or `None` when the search ended without one. A verified
        /// signed record outranks any plain value under the same key; for a `get_signed`
        /// only signed records count.
        value: Option<Bytes>,
        /// The verified signed record with the highest sequence number, when the key holds
        /// one (`value` is then its value); `None` for a plain value.
        signed: Option<SignedRecord>,
        /// The version of `value` (for a signed record, `Version(seq)`), so a caller can
        /// rank it against a copy it saw elsewhere.
        version: Option<Version>,
    },
    /// A [`Kademlia::put`] or [`Kademlia::put_signed`] finished. Emitted exactly once per
    /// put.
    PutFinished {
        /// The put's id.
        query: QueryId,
        /// The key stored.
        key: Key,
        /// How many remote nodes confirmed they hold the record.
        stored_remote: usize,
        /// Whether this node's own copy counts as one of the `replication` holders (it is
        /// among the closest, or knew no other node). The publisher keeps a copy either
        /// way, for read-your-writes.
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
    /// STOREs sent by GETs to holders of older versions (read repair).
    pub read_repairs: u64,
    /// Requests refused with ERROR 429 (rate limit).
    pub rate_limited: u64,
    /// Requests refused with ERROR 403 (the sender's id fails the puzzle).
    pub puzzle_refused: u64,
    /// Answers thrown away as invalid (a forged signed record, a version from the future,
    /// an answer from a peer that was not asked).
    pub invalid_answers: u64,
}
