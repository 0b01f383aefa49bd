//! The running operations of a node and the requests they have out.

use crate::lookup::DisjointLookup;
use crate::store::Record;
use crate::QueryId;
use bytes::Bytes;
use std::time::Instant;
use voidmesh_proto::{Contact, KadMessage, Key, SignedRecord, Version};

/// One running operation.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    /// What it is for, and what happens when its lookup ends.
    pub kind: QueryKind,
    /// The iterative search; `None` once the query moved past it (a PUT storing, a
    /// bootstrap waiting for its bucket refreshes).
    pub lookup: Option<DisjointLookup>,
    /// When the query gives up; its entry in the deadline set, removed once the lookup
    /// phase is over (the phases after it are bounded by request deadlines).
    pub deadline: Option<Instant>,
}

/// What a query does.
#[derive(Debug, Clone)]
pub(crate) enum QueryKind {
    /// A GET: FIND_VALUE until `read_quorum` holders answered or the lookup ends.
    Get(GetJob),
    /// A PUT, or a publisher's republish: FIND_NODE, then STORE on the closest.
    Put(PutJob),
    /// A FIND_NODE lookup for its own sake.
    FindNode {
        /// Who learns about the result.
        purpose: FindPurpose,
    },
    /// A bootstrap: the self-lookup, then one refresh lookup per farther bucket.
    Bootstrap {
        /// Refresh lookups not finished yet (phase two).
        pending_refreshes: usize,
    },
}

/// How recent a holder's copy is. Any signed record outranks any plain one (a signed
/// record proves its key's owner wrote it); then higher sequence numbers or versions win.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rank {
    /// A plain record of this version.
    Plain(Version),
    /// A signed record with this sequence number.
    Signed(u64),
}

/// A valid copy a GET has seen.
#[derive(Debug, Clone)]
pub(crate) enum Found {
    /// A plain value.
    Plain {
        /// The value.
        value: Bytes,
        /// Its version.
        version: Version,
        /// When it expires (the holder's TTL from the moment its answer arrived, capped
        /// at `max_ttl`), so a repair made later hands on only what is left.
        expires: Instant,
    },
    /// A verified signed record.
    Signed(SignedRecord),
}

impl Found {
    /// How recent it is.
    pub fn rank(&self) -> Rank {
        match self {
            Found::Plain { version, .. } => Rank::Plain(*version),
            Found::Signed(record) => Rank::Signed(record.seq),
        }
    }
}

/// A GET's progress: what it has seen, from whom.
#[derive(Debug, Clone)]
pub(crate) struct GetJob {
    /// The key looked up.
    pub key: Key,
    /// True for a [`get_signed`](crate::Kademlia::get_signed): plain values do not count.
    pub signed_only: bool,
    /// The newest valid copy seen so far (the local one included).
    pub best: Option<Found>,
    /// Peers that answered with a valid copy, and how recent it was.
    pub answers: Vec<(Contact, Rank)>,
    /// What this node held when the GET started.
    pub local: Option<Rank>,
    /// The replication hint of the local copy, if any.
    pub local_replication: Option<u8>,
}

impl GetJob {
    /// Holders heard from that count toward the read quorum (the local copy included).
    pub fn quorum_count(&self) -> usize {
        let counts = |rank: &Rank| !self.signed_only || matches!(rank, Rank::Signed(_));
        self.answers.iter().filter(|(_, r)| counts(r)).count()
            + usize::from(self.local.as_ref().is_some_and(counts))
    }
}

/// Who a FIND_NODE lookup reports to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FindPurpose {
    /// A [`find_node`](crate::Kademlia::find_node) command: emit `FindNodeFinished`.
    User,
    /// A bucket refresh; tells the bootstrap that started it, if any, when it ends.
    Refresh {
        /// The bootstrap waiting for this refresh.
        parent: Option<QueryId>,
    },
}

/// The record a PUT stores, and how far it got.
#[derive(Debug, Clone)]
pub(crate) struct PutJob {
    /// The key.
    pub key: Key,
    /// The record (TTL as an absolute expiry, replication already clamped).
    pub record: Record,
    /// The signed record, for a [`put_signed`](crate::Kademlia::put_signed) (`record` is
    /// then its local form).
    pub signed: Option<SignedRecord>,
    /// True for a [`put`](crate::Kademlia::put) command (emit `PutFinished`); false for a
    /// publisher's republish.
    pub report: bool,
    /// Set once the STOREs are out.
    pub storing: Option<Storing>,
}

/// A PUT's second phase.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Storing {
    /// STORE requests without an outcome yet; the PUT finishes at zero.
    pub awaiting: usize,
    /// STORE replies that said stored.
    pub stored_remote: usize,
    /// Whether this node keeps a copy.
    pub stored_local: bool,
}

impl QueryKind {
    /// The request a lookup of `target` sends for this kind of query.
    pub fn lookup_request(&self, target: Key) -> KadMessage {
        match self {
            QueryKind::Get(job) => KadMessage::FindValue { key: job.key },
            _ => KadMessage::FindNode { target },
        }
    }
}

/// Why a request was sent, which says where its outcome goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A step of this query's lookup.
    Lookup(QueryId),
    /// One of this PUT's STOREs.
    PutStore(QueryId),
    /// A check on a full bucket's oldest entry before it is replaced.
    Ping,
    /// A STORE nobody waits for (a replica's republish).
    Replicate,
}

/// The reply a request expects; anything else counts as a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// PONG.
    Pong,
    /// STORE_REPLY for this key.
    StoreReply(Key),
    /// FIND_NODE_REPLY.
    Nodes,
    /// FIND_VALUE_REPLY (found or not) or FOUND_SIGNED.
    Value,
}

impl Expect {
    /// The reply `request` expects.
    pub fn of(request: &KadMessage) -> Expect {
        match request {
            KadMessage::Store { key, .. } => Expect::StoreReply(*key),
            KadMessage::StoreSigned { record, .. } => Expect::StoreReply(record.key()),
            KadMessage::FindNode { .. } => Expect::Nodes,
            KadMessage::FindValue { .. } => Expect::Value,
            _ => Expect::Pong,
        }
    }

    /// True if `reply` is the right answer.
    pub fn fits(self, reply: &KadMessage) -> bool {
        match (self, reply) {
            (Expect::Pong, KadMessage::Pong) => true,
            (Expect::StoreReply(key), KadMessage::StoreReply { key: got, .. }) => key == *got,
            (Expect::Nodes, KadMessage::FindNodeReply { .. }) => true,
            (
                Expect::Value,
                KadMessage::FoundValue { .. }
                | KadMessage::ValueNotFound { .. }
                | KadMessage::FoundSigned { .. },
            ) => true,
            _ => false,
        }
    }
}

/// An outstanding request.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// The peer asked.
    pub to: Contact,
    /// The reply that counts as an answer.
    pub expect: Expect,
    /// Where the outcome goes.
    pub purpose: Purpose,
    /// Its current entry in the deadline set: the answer deadline, then (once passed)
    /// the time it is forgotten.
    pub deadline: Instant,
    /// True once the answer deadline passed and the failure was already counted; a late
    /// answer then only notes that the peer is alive (and still helps a running lookup).
    pub timed_out: bool,
}
