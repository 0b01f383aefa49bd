//! Per-query bookkeeping: which requests belong to which operation, and how deep they are.
//!
//! The Kademlia API does not say which query a request belongs to, so the simulator
//! attributes each request by its content: a FIND_NODE / FIND_VALUE / STORE for key `x`
//! sent by a node that runs a tracked operation on `x` belongs to that operation. (Keys
//! are random 256-bit values, so two operations on one node never share a key.)
//!
//! # Hops
//! Each contact a query hears of gets a *depth*: the contacts it starts with (from its
//! own routing table) have depth 0; a contact first named in the reply of a request of
//! depth `d` has depth `d`. A request to a contact of depth `d` has depth `d + 1`. The
//! *hop count* of a lookup is the depth of the request that reached the closest node it
//! returned (for a GET: the request that returned the value). This is the path length of
//! the iterative lookup, independent of how many requests ran in parallel.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use voidmesh_proto::{Contact, KadMessage, Key, NodeId};

/// Which simulated operation a query is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// A `find_node` of a random key.
    Lookup,
    /// A PUT of one of the scenario's records.
    Put,
    /// A GET of a stored record after the PUT phase.
    Get,
    /// A GET made by a retrievability probe during churn.
    Probe,
}

impl QueryKind {
    /// The name used in CSV output.
    pub fn name(self) -> &'static str {
        match self {
            QueryKind::Lookup => "lookup",
            QueryKind::Put => "put",
            QueryKind::Get => "get",
            QueryKind::Probe => "probe",
        }
    }
}

/// How a query ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Still running.
    Pending,
    /// The node that ran it left the network first; counted nowhere.
    Aborted,
    /// A lookup finished.
    Lookup {
        /// The true closest honest live node is among the results.
        found_closest: bool,
        /// How many of the true k closest responsive live nodes (honest, or adversaries
        /// that do reply) are among the results.
        overlap: u16,
        /// How many the truth had (k, or fewer in a tiny network).
        truth: u16,
    },
    /// A GET (or probe) finished.
    Get {
        /// A value came back.
        found: bool,
        /// It was byte-equal to the value stored.
        correct: bool,
    },
    /// A PUT finished.
    Put {
        /// Remote nodes that confirmed the STORE.
        stored_remote: u32,
        /// The putting node kept a copy.
        stored_local: bool,
    },
}

/// Links a request in flight to the query that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// Index into the query list, or [`Tag::NONE`] for untracked traffic (joins, refresh,
    /// pings, republishing).
    pub query: u32,
    /// The request's depth (see the module doc).
    pub depth: u8,
}

impl Tag {
    /// Traffic that belongs to no tracked query.
    pub const NONE: Tag = Tag {
        query: u32::MAX,
        depth: 0,
    };
}

/// What a query knows about one contact.
#[derive(Debug, Clone, Copy, Default)]
struct PeerDepth {
    /// Depth at which the contact was first heard of.
    learned: u8,
    /// Depth of the request sent to it (0: never asked).
    asked: u8,
}

/// One tracked operation and everything measured about it.
#[derive(Debug, Clone)]
pub struct QueryRecord {
    /// What it is.
    pub kind: QueryKind,
    /// The node that ran it.
    pub node: u32,
    /// The key looked up, fetched or stored.
    pub target: Key,
    /// Virtual time it started.
    pub started: Duration,
    /// Virtual time it finished.
    pub finished: Option<Duration>,
    /// FIND_NODE / FIND_VALUE requests it sent.
    pub requests: u32,
    /// STORE requests it sent (PUT only).
    pub stores: u32,
    /// Bytes of its requests and of the replies it got (0 if not measured).
    pub bytes: u64,
    /// Path length to the result (see the module doc); `None` without a result.
    pub hops: Option<u8>,
    /// Deepest request it sent.
    pub rounds: u8,
    /// How it ended.
    pub outcome: Outcome,
    /// For a probe: which probe round it belongs to.
    pub probe: Option<u32>,
    /// For a GET or probe: the value that was stored.
    expected: Option<Bytes>,
    /// For a GET or probe: depth of the first request that returned a value.
    value_depth: Option<u8>,
    /// Depths of contacts heard of; dropped when the query ends.
    peers: Option<HashMap<NodeId, PeerDepth>>,
}

impl QueryRecord {
    /// A query started by `node` at `started`.
    pub fn new(
        kind: QueryKind,
        node: u32,
        target: Key,
        started: Duration,
        expected: Option<Bytes>,
        probe: Option<u32>,
    ) -> Self {
        QueryRecord {
            kind,
            node,
            target,
            started,
            finished: None,
            requests: 0,
            stores: 0,
            bytes: 0,
            hops: None,
            rounds: 0,
            outcome: Outcome::Pending,
            probe,
            expected,
            value_depth: None,
            peers: Some(HashMap::new()),
        }
    }

    /// True until it finishes or is aborted.
    pub fn is_running(&self) -> bool {
        self.outcome == Outcome::Pending
    }

    /// Virtual time from start to finish.
    pub fn latency(&self) -> Option<Duration> {
        self.finished.map(|f| f.saturating_sub(self.started))
    }

    /// Records a request this query sends to `to`; returns the request's depth.
    pub fn on_request(&mut self, to: &NodeId, message: &KadMessage, bytes: usize) -> u8 {
        self.bytes += bytes as u64;
        if matches!(message, KadMessage::Store { .. }) {
            self.stores += 1;
            return 0;
        }
        self.requests += 1;
        let Some(peers) = self.peers.as_mut() else {
            return 0;
        };
        let entry = peers.entry(*to).or_default();
        let depth = entry.learned.saturating_add(1);
        entry.asked = depth;
        self.rounds = self.rounds.max(depth);
        depth
    }

    /// Records the reply to a request of depth `depth`.
    pub fn on_reply(&mut self, depth: u8, reply: &KadMessage, bytes: usize) {
        self.bytes += bytes as u64;
        let contacts: &[Contact] = match reply {
            KadMessage::FindNodeReply { contacts } | KadMessage::ValueNotFound { contacts } => {
                contacts
            }
            KadMessage::FoundValue { .. } => {
                self.value_depth.get_or_insert(depth);
                return;
            }
            _ => return,
        };
        if let Some(peers) = self.peers.as_mut() {
            for c in contacts {
                peers.entry(c.id).or_insert(PeerDepth {
                    learned: depth,
                    asked: 0,
                });
            }
        }
    }

    fn end(&mut self, now: Duration, outcome: Outcome) {
        self.finished = Some(now);
        self.outcome = outcome;
        self.peers = None;
        self.expected = None;
    }

    /// A lookup ended with `closest` (nearest first). `truth` is the true k closest live
    /// nodes that answer requests (honest ones and adversaries that reply), nearest first;
    /// `nearest_honest` is the closest honest live node.
    pub fn finish_lookup(
        &mut self,
        now: Duration,
        closest: &[Contact],
        truth: &[NodeId],
        nearest_honest: Option<NodeId>,
    ) {
        self.hops = closest.first().and_then(|c| self.asked_depth(&c.id));
        let found_closest = match nearest_honest {
            Some(t) => closest.iter().any(|c| c.id == t),
            None => true,
        };
        let overlap = truth
            .iter()
            .filter(|t| closest.iter().any(|c| c.id == **t))
            .count();
        self.end(
            now,
            Outcome::Lookup {
                found_closest,
                overlap: overlap as u16,
                truth: truth.len() as u16,
            },
        );
    }

    /// A GET ended with `value`.
    pub fn finish_get(&mut self, now: Duration, value: Option<&Bytes>) {
        let correct = match (value, self.expected.as_ref()) {
            (Some(v), Some(e)) => v == e,
            _ => false,
        };
        self.hops = match value {
            // A value held locally needs no hop at all.
            Some(_) => Some(self.value_depth.unwrap_or(0)),
            None => None,
        };
        self.end(
            now,
            Outcome::Get {
                found: value.is_some(),
                correct,
            },
        );
    }

    /// A PUT ended.
    pub fn finish_put(&mut self, now: Duration, stored_remote: usize, stored_local: bool) {
        self.end(
            now,
            Outcome::Put {
                stored_remote: stored_remote as u32,
                stored_local,
            },
        );
    }

    /// The node running the query left before it finished.
    pub fn abort(&mut self, now: Duration) {
        self.end(now, Outcome::Aborted);
    }

    fn asked_depth(&self, id: &NodeId) -> Option<u8> {
        let peers = self.peers.as_ref()?;
        peers.get(id).map(|p| p.asked).filter(|&d| d > 0)
    }
}

/// The `k` ids nearest to `target` among `candidates`, nearest first.
pub fn k_closest(target: &Key, candidates: impl Iterator<Item = NodeId>, k: usize) -> Vec<NodeId> {
    use std::collections::BinaryHeap;
    if k == 0 {
        return Vec::new();
    }
    // Max-heap on distance: the root is the farthest of the best k so far.
    let mut heap: BinaryHeap<(voidmesh_proto::Distance, NodeId)> = BinaryHeap::with_capacity(k + 1);
    let mut worst_prefix = u64::MAX;
    for id in candidates {
        // Cheap reject on the first 8 bytes of the distance before the full compare.
        let prefix = u64::from_be_bytes(prefix8(&target.0, &id.0));
        if heap.len() >= k && prefix > worst_prefix {
            continue;
        }
        heap.push((target.distance(&id), id));
        if heap.len() > k {
            heap.pop();
        }
        if heap.len() >= k {
            if let Some((d, _)) = heap.peek() {
                worst_prefix = u64::from_be_bytes(prefix8(&d.0, &[0; 32]));
            }
        }
    }
    let mut out = heap.into_sorted_vec();
    out.truncate(k);
    out.into_iter().map(|(_, id)| id).collect()
}

fn prefix8(a: &[u8; 32], b: &[u8; 32]) -> [u8; 8] {
    let mut p = [0u8; 8];
    for (i, byte) in p.iter_mut().enumerate() {
        *byte = a[i] ^ b[i];
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::addr_of;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn contact(id: Key) -> Contact {
        Contact::unkeyed(id, addr_of(1))
    }

    #[test]
    fn k_closest_matches_a_full_sort() {
        let mut rng = StdRng::seed_from_u64(9);
        let ids: Vec<Key> = (0..2000).map(|_| Key(rng.gen())).collect();
        let target = Key(rng.gen());
        let mut sorted = ids.clone();
        sorted.sort_by_key(|id| target.distance(id));
        assert_eq!(
            k_closest(&target, ids.iter().copied(), 20),
            sorted[..20].to_vec()
        );
        assert_eq!(k_closest(&target, ids.iter().copied().take(5), 20).len(), 5);
    }

    #[test]
    fn hops_follow_who_named_whom() {
        let a = Key([1; 32]);
        let b = Key([2; 32]);
        let c = Key([3; 32]);
        let target = Key([0; 32]);
        let find = KadMessage::FindNode { target };
        let mut q = QueryRecord::new(QueryKind::Lookup, 0, target, Duration::ZERO, None, None);
        // a comes from the routing table: depth 1.
        let da = q.on_request(&a, &find, 0);
        assert_eq!(da, 1);
        q.on_reply(
            da,
            &KadMessage::FindNodeReply {
                contacts: vec![contact(b)],
            },
            0,
        );
        let db = q.on_request(&b, &find, 0);
        assert_eq!(db, 2);
        q.on_reply(
            db,
            &KadMessage::FindNodeReply {
                contacts: vec![contact(c), contact(a)],
            },
            0,
        );
        let dc = q.on_request(&c, &find, 0);
        assert_eq!(dc, 3);
        q.finish_lookup(
            Duration::from_millis(5),
            &[contact(c), contact(b)],
            &[c, b],
            Some(c),
        );
        assert_eq!(q.hops, Some(3));
        assert_eq!(q.rounds, 3);
        assert_eq!(q.requests, 3);
        assert_eq!(
            q.outcome,
            Outcome::Lookup {
                found_closest: true,
                overlap: 2,
                truth: 2
            }
        );
    }

    #[test]
    fn get_checks_the_value() {
        let key = Key([5; 32]);
        let good = Bytes::from_static(b"good");
        let mut q = QueryRecord::new(
            QueryKind::Get,
            0,
            key,
            Duration::ZERO,
            Some(good.clone()),
            None,
        );
        q.finish_get(Duration::from_millis(1), Some(&Bytes::from_static(b"evil")));
        assert_eq!(
            q.outcome,
            Outcome::Get {
                found: true,
                correct: false
            }
        );
        let mut q = QueryRecord::new(
            QueryKind::Get,
            0,
            key,
            Duration::ZERO,
            Some(good.clone()),
            None,
        );
        q.finish_get(Duration::from_millis(1), Some(&good));
        assert_eq!(
            q.outcome,
            Outcome::Get {
                found: true,
                correct: true
            }
        );
        assert_eq!(q.hops, Some(0));
    }
}
