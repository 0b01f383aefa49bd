//! An iterative lookup of the nodes closest to a target, after libp2p's `ClosestPeersIter`.
//!
//! # Calling loop
//! The owner seeds a [`Lookup`] with the closest contacts it knows, then repeatedly calls
//! [`Lookup::next_step`]: [`Step::Contact`] names a peer to ask (the owner sends the request),
//! [`Step::Waiting`] means enough requests are in flight, [`Step::Finished`] means the
//! lookup is over. Each request's outcome goes back through [`Lookup::on_success`] (with
//! the contacts the peer returned) or [`Lookup::on_failure`]; when the owner's per-request
//! deadline passes first it calls [`Lookup::on_timeout`]: the peer stops counting toward
//! the parallelism but a late answer is still used. After every input, call `next_step` again
//! until it no longer returns a contact.
//!
//! # Termination
//! The lookup is finished when the `num_results` closest peers it knows of have all
//! answered (peers that failed or timed out are skipped), or when nobody is left to ask
//! and nothing is in flight. If `parallelism` answers in a row bring no peer closer than
//! the closest known, the lookup is *stalled* and asks up to `num_results` peers at once,
//! as the Kademlia paper prescribes.
//!
//! The lookup holds no clock: deadlines are the owner's business.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use voidmesh_proto::{Contact, Distance, Key, NodeId};

/// What the lookup wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send a request to this peer.
    Contact(Contact),
    /// Wait for answers (in flight at capacity, or waiting on a closer peer).
    Waiting,
    /// The lookup is over.
    Finished,
}

/// Where one candidate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Known but not asked yet.
    NotContacted,
    /// Asked; the answer is due and the peer counts toward the parallelism.
    Waiting,
    /// Asked, and its deadline passed: no longer counted toward the parallelism, but a
    /// late answer is still accepted.
    Unresponsive,
    /// The request failed; the peer is skipped.
    Failed,
    /// It answered.
    Succeeded,
}

/// Whether the lookup is still making progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Normal operation; counts answers in a row that brought nothing closer.
    Iterating {
        /// Answers in a row without a new closest peer.
        no_progress: usize,
    },
    /// `parallelism` answers brought nothing closer: ask up to `num_results` at once.
    Stalled,
    /// Over; `next_step` returns [`Step::Finished`].
    Finished,
}

/// One candidate peer.
#[derive(Debug, Clone)]
struct Peer {
    /// How to reach it.
    contact: Contact,
    /// Where it stands in the lookup.
    state: PeerState,
}

/// One iterative lookup; see the module doc.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The id looked up.
    target: Key,
    /// The querying node, which is never a candidate.
    local_id: NodeId,
    /// Every candidate heard of, nearest to the target first.
    peers: BTreeMap<Distance, Peer>,
    /// How many closest peers must answer before the lookup ends (k).
    num_results: usize,
    /// Requests in flight at once while iterating (alpha).
    parallelism: usize,
    /// Peers in [`PeerState::Waiting`]; compared with the parallelism.
    num_waiting: usize,
    /// Progress state.
    state: State,
    /// Requests sent so far (for statistics).
    requests: usize,
}

impl Lookup {
    /// A lookup of `target` from `local_id`, seeded with `seeds` (the local node is left out).
    pub fn new(
        target: Key,
        local_id: NodeId,
        seeds: impl IntoIterator<Item = Contact>,
        num_results: usize,
        parallelism: usize,
    ) -> Self {
        let mut lookup = Lookup {
            target,
            local_id,
            peers: BTreeMap::new(),
            num_results: num_results.max(1),
            parallelism: parallelism.max(1),
            num_waiting: 0,
            state: State::Iterating { no_progress: 0 },
            requests: 0,
        };
        for contact in seeds {
            let _ = lookup.add_candidate(contact);
        }
        lookup
    }

    /// The id looked up.
    pub fn target(&self) -> &Key {
        &self.target
    }

    /// Number of requests sent so far.
    pub fn requests(&self) -> usize {
        self.requests
    }

    /// True once the lookup is over.
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// The state of the candidate `id`, if it is one.
    pub fn peer_state(&self, id: &NodeId) -> Option<PeerState> {
        self.peers.get(&self.target.distance(id)).map(|p| p.state)
    }

    /// Adds a new candidate; returns its distance, or `None` if it is the local node or
    /// already known.
    fn add_candidate(&mut self, contact: Contact) -> Option<Distance> {
        if contact.id == self.local_id {
            return None;
        }
        let distance = self.target.distance(&contact.id);
        match self.peers.entry(distance) {
            Entry::Occupied(_) => None,
            Entry::Vacant(slot) => {
                slot.insert(Peer {
                    contact,
                    state: PeerState::NotContacted,
                });
                Some(distance)
            }
        }
    }

    fn at_capacity(&self) -> bool {
        match self.state {
            State::Stalled => self.num_waiting >= self.num_results.max(self.parallelism),
            _ => self.num_waiting >= self.parallelism,
        }
    }

    /// What to do next; see the module doc.
    pub fn next_step(&mut self) -> Step {
        if self.state == State::Finished {
            return Step::Finished;
        }
        let at_capacity = self.at_capacity();
        // Counts answered peers from the nearest outwards; `None` once a closer peer is
        // still being waited on, because then the k closest are not known yet.
        let mut answered = Some(0usize);
        for peer in self.peers.values_mut() {
            match peer.state {
                PeerState::Waiting => {
                    if at_capacity {
                        return Step::Waiting;
                    }
                    answered = None;
                }
                PeerState::Succeeded => {
                    if let Some(n) = answered.as_mut() {
                        *n += 1;
                        if *n >= self.num_results {
                            self.state = State::Finished;
                            return Step::Finished;
                        }
                    }
                }
                PeerState::NotContacted => {
                    if at_capacity {
                        return Step::Waiting;
                    }
                    peer.state = PeerState::Waiting;
                    self.num_waiting += 1;
                    self.requests += 1;
                    return Step::Contact(peer.contact);
                }
                PeerState::Unresponsive | PeerState::Failed => {}
            }
        }
        if self.num_waiting > 0 {
            Step::Waiting
        } else {
            self.state = State::Finished;
            Step::Finished
        }
    }

    /// `id` answered with `closer` contacts (at most `num_results` of them are used).
    /// Returns false if `id` was not being waited on (unknown, or already settled).
    pub fn on_success(&mut self, id: &NodeId, closer: &[Contact]) -> bool {
        if self.state == State::Finished {
            return false;
        }
        let distance = self.target.distance(id);
        let Some(peer) = self.peers.get_mut(&distance) else {
            return false;
        };
        match peer.state {
            PeerState::Waiting => self.num_waiting -= 1,
            PeerState::Unresponsive => {}
            _ => return false,
        }
        peer.state = PeerState::Succeeded;
        let had_enough = self.peers.len() >= self.num_results;
        let mut progress = false;
        for contact in closer.iter().take(self.num_results) {
            if let Some(distance) = self.add_candidate(*contact) {
                progress |= !had_enough || self.peers.keys().next() == Some(&distance);
            }
        }
        self.state = match self.state {
            State::Iterating { no_progress } if !progress => {
                if no_progress + 1 >= self.parallelism {
                    State::Stalled
                } else {
                    State::Iterating {
                        no_progress: no_progress + 1,
                    }
                }
            }
            State::Iterating { .. } | State::Stalled if progress => {
                State::Iterating { no_progress: 0 }
            }
            other => other,
        };
        true
    }

    /// The request to `id` failed. Returns false if `id` was not being waited on.
    pub fn on_failure(&mut self, id: &NodeId) -> bool {
        if self.state == State::Finished {
            return false;
        }
        let Some(peer) = self.peers.get_mut(&self.target.distance(id)) else {
            return false;
        };
        match peer.state {
            PeerState::Waiting => self.num_waiting -= 1,
            PeerState::Unresponsive => {}
            _ => return false,
        }
        peer.state = PeerState::Failed;
        true
    }

    /// The owner's deadline for the request to `id` passed: the peer no longer counts
    /// toward the parallelism, but its late answer is still accepted.
    pub fn on_timeout(&mut self, id: &NodeId) -> bool {
        let Some(peer) = self.peers.get_mut(&self.target.distance(id)) else {
            return false;
        };
        if peer.state != PeerState::Waiting {
            return false;
        }
        peer.state = PeerState::Unresponsive;
        self.num_waiting -= 1;
        true
    }

    /// Ends the lookup now (e.g. its query's deadline passed, or a value was found).
    pub fn finish(&mut self) {
        self.state = State::Finished;
    }

    /// Up to `count` peers that answered, nearest to the target first.
    pub fn closest_succeeded(&self, count: usize) -> Vec<Contact> {
        self.peers
            .values()
            .filter(|p| p.state == PeerState::Succeeded)
            .take(count)
            .map(|p| p.contact)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::{HashMap, HashSet};
    use std::net::SocketAddr;

    fn contact(id: Key) -> Contact {
        Contact {
            id,
            addr: SocketAddr::from(([10, 0, 0, 1], 1)),
        }
    }

    fn key(n: u8) -> Key {
        let mut raw = [0u8; 32];
        raw[31] = n;
        Key(raw)
    }

    fn sent(lookup: &mut Lookup) -> Vec<Contact> {
        let mut out = Vec::new();
        while let Step::Contact(c) = lookup.next_step() {
            out.push(c);
        }
        out
    }

    #[test]
    fn lookup_respects_alpha() {
        let seeds: Vec<Contact> = (1..=10).map(|n| contact(key(n))).collect();
        let mut lookup = Lookup::new(key(0), key(200), seeds, 20, 3);
        let first = sent(&mut lookup);
        assert_eq!(first.len(), 3);
        // Nearest first.
        assert_eq!(
            first.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![key(1), key(2), key(3)]
        );
        assert_eq!(lookup.next_step(), Step::Waiting);
        // One answer frees one slot.
        assert!(lookup.on_success(&key(1), &[]));
        assert_eq!(sent(&mut lookup).len(), 1);
    }

    #[test]
    fn timed_out_peer_frees_its_slot_but_late_answer_is_used() {
        let seeds: Vec<Contact> = (1..=5).map(|n| contact(key(n))).collect();
        let mut lookup = Lookup::new(key(0), key(200), seeds, 20, 1);
        assert_eq!(sent(&mut lookup), vec![contact(key(1))]);
        assert!(lookup.on_timeout(&key(1)));
        assert_eq!(lookup.peer_state(&key(1)), Some(PeerState::Unresponsive));
        assert_eq!(sent(&mut lookup), vec![contact(key(2))]);
        // The late answer still brings in a new candidate.
        assert!(lookup.on_success(&key(1), &[contact(key(7))]));
        assert_eq!(lookup.peer_state(&key(1)), Some(PeerState::Succeeded));
        assert_eq!(lookup.peer_state(&key(7)), Some(PeerState::NotContacted));
    }

    #[test]
    fn never_queries_the_local_node() {
        let local = key(2);
        let seeds = vec![contact(key(1)), contact(local)];
        let mut lookup = Lookup::new(key(0), local, seeds, 20, 3);
        assert_eq!(sent(&mut lookup), vec![contact(key(1))]);
        lookup.on_success(&key(1), &[contact(local)]);
        assert_eq!(lookup.next_step(), Step::Finished);
    }

    #[test]
    fn reply_is_capped_at_k_contacts() {
        let mut lookup = Lookup::new(key(0), key(255), vec![contact(key(100))], 4, 1);
        let _ = sent(&mut lookup);
        let reply: Vec<Contact> = (1..=50).map(|n| contact(key(n))).collect();
        lookup.on_success(&key(100), &reply);
        assert_eq!(lookup.peers.len(), 1 + 4);
    }

    #[test]
    fn finishes_when_k_closest_answered() {
        let seeds: Vec<Contact> = (1..=6).map(|n| contact(key(n))).collect();
        let mut lookup = Lookup::new(key(0), key(200), seeds, 2, 3);
        let _ = sent(&mut lookup);
        lookup.on_success(&key(2), &[]);
        // key(1) is closer and still pending: not finished yet.
        assert_ne!(lookup.next_step(), Step::Finished);
        lookup.on_success(&key(1), &[]);
        assert_eq!(lookup.next_step(), Step::Finished);
        assert_eq!(
            lookup.closest_succeeded(5),
            vec![contact(key(1)), contact(key(2))]
        );
    }

    #[test]
    fn failed_peers_are_skipped() {
        let seeds: Vec<Contact> = (1..=3).map(|n| contact(key(n))).collect();
        let mut lookup = Lookup::new(key(0), key(200), seeds, 2, 3);
        let _ = sent(&mut lookup);
        lookup.on_failure(&key(1));
        lookup.on_success(&key(2), &[]);
        lookup.on_success(&key(3), &[]);
        assert_eq!(lookup.next_step(), Step::Finished);
        assert_eq!(
            lookup.closest_succeeded(5),
            vec![contact(key(2)), contact(key(3))]
        );
    }

    #[test]
    fn answer_for_unknown_or_settled_peer_is_ignored() {
        let mut lookup = Lookup::new(key(0), key(200), vec![contact(key(1))], 2, 3);
        assert!(!lookup.on_success(&key(1), &[]));
        let _ = sent(&mut lookup);
        assert!(lookup.on_success(&key(1), &[]));
        assert!(!lookup.on_success(&key(1), &[]));
        assert!(!lookup.on_failure(&key(9)));
    }

    #[test]
    fn stalled_lookup_widens_to_k() {
        let seeds: Vec<Contact> = (1..=30).map(|n| contact(key(n))).collect();
        let mut lookup = Lookup::new(key(0), key(200), seeds, 20, 3);
        assert_eq!(sent(&mut lookup).len(), 3);
        for n in 1..=3 {
            lookup.on_success(&key(n), &[]);
        }
        // Three answers without progress: up to k in flight.
        assert_eq!(sent(&mut lookup).len(), 20);
    }

    proptest! {
        /// With random answers and failures, the lookup never exceeds its parallelism
        /// while iterating, never asks anyone twice, and always terminates.
        #[test]
        fn terminates_and_respects_parallelism(seed in any::<u64>(), fail_ratio in 0u32..100) {
            let mut rng = StdRng::seed_from_u64(seed);
            let ids: Vec<Key> = (0..200).map(|_| Key(rng.gen())).collect();
            // Each node knows a random handful of others.
            let knows: HashMap<Key, Vec<Contact>> = ids
                .iter()
                .map(|id| (*id, (0..8).map(|_| contact(ids[rng.gen_range(0..ids.len())])).collect()))
                .collect();
            let target = Key(rng.gen());
            let seeds: Vec<Contact> = ids[..5].iter().map(|id| contact(*id)).collect();
            let mut lookup = Lookup::new(target, Key([0xee; 32]), seeds, 20, 3);
            let mut asked = HashSet::new();
            let mut in_flight: Vec<Key> = Vec::new();
            for _ in 0..10_000 {
                while let Step::Contact(c) = lookup.next_step() {
                    prop_assert!(asked.insert(c.id), "asked twice");
                    in_flight.push(c.id);
                    let limit = if lookup.state == State::Stalled { 20 } else { 3 };
                    prop_assert!(lookup.num_waiting <= limit);
                }
                if lookup.is_finished() {
                    break;
                }
                prop_assert!(!in_flight.is_empty());
                let id = in_flight.swap_remove(rng.gen_range(0..in_flight.len()));
                if rng.gen_range(0..100) < fail_ratio {
                    lookup.on_failure(&id);
                } else {
                    lookup.on_success(&id, &knows[&id]);
                }
            }
            prop_assert!(lookup.is_finished());
        }
    }
}
