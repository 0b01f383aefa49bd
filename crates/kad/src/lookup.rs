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
//!
//! # Disjoint paths (S/Kademlia)
//! [`DisjointLookup`] runs `d` such lookups side by side. The starting contacts are dealt
//! out to the paths in turn (nearest to path 0, next to path 1, ...), each path learns
//! only from its own answers and keeps its own `parallelism`, and a node one path has
//! asked is never asked by another (a shared *claimed* set: the other path skips it, see
//! [`PeerState::Taken`]). An adversary who captures one path (by answering with its
//! accomplices) therefore cannot reach into the others: a GET succeeds if any path
//! reaches an honest holder, and a FIND_NODE merges what all paths found.

use crate::routing::SortKey;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use voidmesh_proto::{Contact, Key, NodeId};

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
    /// Another path of a [`DisjointLookup`] asked it first; this path skips it.
    Taken,
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
    peers: BTreeMap<SortKey, Peer>,
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
        self.peers
            .get(&SortKey::between(&self.target, id))
            .map(|p| p.state)
    }

    /// Adds a new candidate; returns its distance, or `None` if it is the local node or
    /// already known.
    fn add_candidate(&mut self, contact: Contact) -> Option<SortKey> {
        if contact.id == self.local_id {
            return None;
        }
        let distance = SortKey::between(&self.target, &contact.id);
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
        self.next_step_skipping(&|_| false)
    }

    /// [`next_step`](Self::next_step), skipping (as [`PeerState::Taken`]) every candidate
    /// for which `taken` is true.
    fn next_step_skipping(&mut self, taken: &dyn Fn(&NodeId) -> bool) -> Step {
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
                    if taken(&peer.contact.id) {
                        peer.state = PeerState::Taken;
                        continue;
                    }
                    if at_capacity {
                        return Step::Waiting;
                    }
                    peer.state = PeerState::Waiting;
                    self.num_waiting += 1;
                    self.requests += 1;
                    return Step::Contact(peer.contact);
                }
                PeerState::Unresponsive | PeerState::Failed | PeerState::Taken => {}
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
        let distance = SortKey::between(&self.target, id);
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

    /// `id` answered with what was looked for (a value) rather than with contacts: it
    /// counts as answered, but neither as progress nor as a sign of a stall (a GET that
    /// waits for several holders must not widen to k requests because holders name nobody).
    /// Returns false if `id` was not being waited on.
    pub fn on_found(&mut self, id: &NodeId) -> bool {
        if self.state == State::Finished {
            return false;
        }
        let Some(peer) = self.peers.get_mut(&SortKey::between(&self.target, id)) else {
            return false;
        };
        match peer.state {
            PeerState::Waiting => self.num_waiting -= 1,
            PeerState::Unresponsive => {}
            _ => return false,
        }
        peer.state = PeerState::Succeeded;
        true
    }

    /// The request to `id` failed. Returns false if `id` was not being waited on.
    pub fn on_failure(&mut self, id: &NodeId) -> bool {
        if self.state == State::Finished {
            return false;
        }
        let Some(peer) = self.peers.get_mut(&SortKey::between(&self.target, id)) else {
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
        let Some(peer) = self.peers.get_mut(&SortKey::between(&self.target, id)) else {
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

    /// Every peer that answered with its distance, nearest first.
    fn succeeded(&self) -> impl Iterator<Item = (&SortKey, &Contact)> + '_ {
        self.peers
            .iter()
            .filter(|(_, p)| p.state == PeerState::Succeeded)
            .map(|(d, p)| (d, &p.contact))
    }
}

/// `d` lookups of one target over disjoint paths; see the module doc.
///
/// The calling loop is [`Lookup`]'s: [`next_step`](Self::next_step) until it stops naming
/// peers, then report each outcome by the peer's id (the lookup remembers which path asked
/// whom). With one path it behaves exactly like a [`Lookup`].
#[derive(Debug, Clone)]
pub struct DisjointLookup {
    /// The id looked up.
    target: Key,
    /// The paths; each is an independent lookup over its share of the seeds.
    paths: Vec<Lookup>,
    /// Which path asked each peer, by the peer's distance to the target (one-to-one with
    /// its id, and cheaper to look up than a hashed id); a peer in here is never asked by
    /// another path.
    claimed: BTreeMap<SortKey, usize>,
    /// The path offered the next free request slot first, so paths take turns.
    next_path: usize,
}

impl DisjointLookup {
    /// A lookup of `target` from `local_id` over `paths` disjoint paths (at least 1), each
    /// with `parallelism` requests in flight and converging on `num_results` peers. The
    /// seeds, nearest first, are dealt to the paths in turn; a path left without a seed
    /// ends at once.
    pub fn new(
        target: Key,
        local_id: NodeId,
        seeds: impl IntoIterator<Item = Contact>,
        num_results: usize,
        parallelism: usize,
        paths: usize,
    ) -> Self {
        let d = paths.max(1);
        let mut seeds: Vec<Contact> = seeds.into_iter().filter(|c| c.id != local_id).collect();
        seeds.sort_by_key(|c| SortKey::between(&target, &c.id));
        seeds.dedup_by_key(|c| c.id);
        let mut shares: Vec<Vec<Contact>> = vec![Vec::new(); d];
        for (i, seed) in seeds.into_iter().enumerate() {
            shares[i % d].push(seed);
        }
        DisjointLookup {
            target,
            paths: shares
                .into_iter()
                .map(|share| Lookup::new(target, local_id, share, num_results, parallelism))
                .collect(),
            claimed: BTreeMap::new(),
            next_path: 0,
        }
    }

    /// The id looked up.
    pub fn target(&self) -> &Key {
        &self.target
    }

    /// Number of paths.
    pub fn path_count(&self) -> usize {
        self.paths.len()
    }

    /// The path that asked `id`, if any did.
    pub fn path_of(&self, id: &NodeId) -> Option<usize> {
        self.claimed
            .get(&SortKey::between(&self.target, id))
            .copied()
    }

    /// Requests sent so far over all paths.
    pub fn requests(&self) -> usize {
        self.paths.iter().map(Lookup::requests).sum()
    }

    /// True once every path is over.
    pub fn is_finished(&self) -> bool {
        self.paths.iter().all(Lookup::is_finished)
    }

    /// The state of `id` in the path that asked it, or else in the first path that knows it.
    pub fn peer_state(&self, id: &NodeId) -> Option<PeerState> {
        match self.claimed.get(&SortKey::between(&self.target, id)) {
            Some(&path) => self.paths[path].peer_state(id),
            None => self.paths.iter().find_map(|p| p.peer_state(id)),
        }
    }

    /// What to do next: a peer to ask (now claimed by one path), wait, or finished once
    /// every path is.
    pub fn next_step(&mut self) -> Step {
        let d = self.paths.len();
        let mut waiting = false;
        for turn in 0..d {
            let i = (self.next_path + turn) % d;
            let (claimed, target) = (&self.claimed, self.target);
            let taken = |id: &NodeId| {
                claimed
                    .get(&SortKey::between(&target, id))
                    .is_some_and(|&p| p != i)
            };
            match self.paths[i].next_step_skipping(&taken) {
                Step::Contact(contact) => {
                    self.claimed
                        .insert(SortKey::between(&self.target, &contact.id), i);
                    self.next_path = (i + 1) % d;
                    return Step::Contact(contact);
                }
                Step::Waiting => waiting = true,
                Step::Finished => {}
            }
        }
        if waiting {
            Step::Waiting
        } else {
            Step::Finished
        }
    }

    /// `id` answered with `closer` contacts; they go to the path that asked it. Returns
    /// false if no path was waiting on `id`.
    pub fn on_success(&mut self, id: &NodeId, closer: &[Contact]) -> bool {
        match self.claimed.get(&SortKey::between(&self.target, id)) {
            Some(&path) => self.paths[path].on_success(id, closer),
            None => false,
        }
    }

    /// `id` answered with a value (see [`Lookup::on_found`]).
    pub fn on_found(&mut self, id: &NodeId) -> bool {
        match self.claimed.get(&SortKey::between(&self.target, id)) {
            Some(&path) => self.paths[path].on_found(id),
            None => false,
        }
    }

    /// The request to `id` failed. Returns false if no path was waiting on `id`.
    pub fn on_failure(&mut self, id: &NodeId) -> bool {
        match self.claimed.get(&SortKey::between(&self.target, id)) {
            Some(&path) => self.paths[path].on_failure(id),
            None => false,
        }
    }

    /// The owner's deadline for `id` passed (see [`Lookup::on_timeout`]).
    pub fn on_timeout(&mut self, id: &NodeId) -> bool {
        match self.claimed.get(&SortKey::between(&self.target, id)) {
            Some(&path) => self.paths[path].on_timeout(id),
            None => false,
        }
    }

    /// Ends every path now.
    pub fn finish(&mut self) {
        for path in &mut self.paths {
            path.finish();
        }
    }

    /// Up to `count` peers that answered on any path, nearest to the target first: the
    /// merged result of the paths.
    pub fn closest_succeeded(&self, count: usize) -> Vec<Contact> {
        let mut all: Vec<(&SortKey, &Contact)> =
            self.paths.iter().flat_map(Lookup::succeeded).collect();
        all.sort_unstable_by_key(|(d, _)| **d);
        all.into_iter().take(count).map(|(_, c)| *c).collect()
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
        Contact::unkeyed(id, SocketAddr::from(([10, 0, 0, 1], 1)))
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
    fn answers_with_a_value_do_not_stall_the_lookup() {
        let seeds: Vec<Contact> = (1..=30).map(|n| contact(key(n))).collect();
        let mut lookup = Lookup::new(key(0), key(200), seeds, 20, 3);
        assert_eq!(sent(&mut lookup).len(), 3);
        for n in 1..=3 {
            assert!(lookup.on_found(&key(n)));
            assert_eq!(lookup.peer_state(&key(n)), Some(PeerState::Succeeded));
        }
        // Still alpha at a time, not k.
        assert_eq!(sent(&mut lookup).len(), 3);
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

    #[test]
    fn disjoint_paths_split_the_seeds_in_turn() {
        let seeds: Vec<Contact> = (1..=7).map(|n| contact(key(n))).collect();
        let mut lookup = DisjointLookup::new(key(0), key(200), seeds, 20, 1, 3);
        let first = sent_disjoint(&mut lookup);
        // One request per path (parallelism 1), the nearest seed of each share.
        assert_eq!(
            first.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![key(1), key(2), key(3)]
        );
        assert_eq!(lookup.path_of(&key(1)), Some(0));
        assert_eq!(lookup.path_of(&key(2)), Some(1));
        assert_eq!(lookup.path_of(&key(3)), Some(2));
        assert!(lookup.on_success(&key(1), &[]));
        // Path 0 goes on with its own share (1, 4, 7), never with the others'.
        let next = sent_disjoint(&mut lookup);
        assert!(!next.is_empty());
        assert!(next.iter().all(|c| [key(4), key(7)].contains(&c.id)));
    }

    #[test]
    fn disjoint_paths_never_ask_a_node_twice() {
        let seeds: Vec<Contact> = (1..=2).map(|n| contact(key(n))).collect();
        let mut lookup = DisjointLookup::new(key(0), key(200), seeds, 20, 3, 2);
        assert_eq!(sent_disjoint(&mut lookup).len(), 2);
        // Both paths hear of node 9; path 0 asks it first, path 1 must skip it.
        assert!(lookup.on_success(&key(1), &[contact(key(9)), contact(key(5))]));
        let next = sent_disjoint(&mut lookup);
        assert!(next.contains(&contact(key(9))));
        assert!(lookup.on_success(&key(2), &[contact(key(9)), contact(key(6))]));
        let next = sent_disjoint(&mut lookup);
        assert_eq!(next, vec![contact(key(6))]);
        assert_eq!(lookup.path_of(&key(9)), Some(0));
        assert_eq!(lookup.paths[1].peer_state(&key(9)), Some(PeerState::Taken));
    }

    #[test]
    fn disjoint_result_merges_the_paths() {
        let seeds: Vec<Contact> = (1..=4).map(|n| contact(key(n))).collect();
        let mut lookup = DisjointLookup::new(key(0), key(200), seeds, 20, 3, 2);
        let asked = sent_disjoint(&mut lookup);
        for c in asked {
            lookup.on_success(&c.id, &[]);
        }
        assert_eq!(lookup.next_step(), Step::Finished);
        assert_eq!(
            lookup.closest_succeeded(3),
            vec![contact(key(1)), contact(key(2)), contact(key(3))]
        );
        assert_eq!(lookup.requests(), 4);
    }

    #[test]
    fn one_path_behaves_like_a_plain_lookup() {
        let seeds: Vec<Contact> = (1..=10).map(|n| contact(key(n))).collect();
        let mut plain = Lookup::new(key(0), key(200), seeds.clone(), 5, 3);
        let mut disjoint = DisjointLookup::new(key(0), key(200), seeds, 5, 3, 1);
        for round in 0..6u8 {
            let a = sent(&mut plain);
            let b = sent_disjoint(&mut disjoint);
            assert_eq!(a, b, "round {round}");
            for c in a {
                let reply = [contact(key(c.id.0[31].wrapping_add(20 + round)))];
                plain.on_success(&c.id, &reply);
                disjoint.on_success(&c.id, &reply);
            }
        }
        assert_eq!(plain.closest_succeeded(20), disjoint.closest_succeeded(20));
    }

    fn sent_disjoint(lookup: &mut DisjointLookup) -> Vec<Contact> {
        let mut out = Vec::new();
        while let Step::Contact(c) = lookup.next_step() {
            out.push(c);
        }
        out
    }

    proptest! {
        /// With random answers and failures over disjoint paths, no node is asked twice
        /// (by the same or another path), each path respects its parallelism while
        /// iterating, and the lookup terminates.
        #[test]
        fn disjoint_paths_terminate_and_stay_disjoint(seed in any::<u64>(), fail_ratio in 0u32..100, d in 1usize..5) {
            let mut rng = StdRng::seed_from_u64(seed);
            let ids: Vec<Key> = (0..200).map(|_| Key(rng.gen())).collect();
            let knows: HashMap<Key, Vec<Contact>> = ids
                .iter()
                .map(|id| (*id, (0..8).map(|_| contact(ids[rng.gen_range(0..ids.len())])).collect()))
                .collect();
            let target = Key(rng.gen());
            let seeds: Vec<Contact> = ids[..12].iter().map(|id| contact(*id)).collect();
            let mut lookup = DisjointLookup::new(target, Key([0xee; 32]), seeds, 20, 3, d);
            let mut asked = HashSet::new();
            let mut in_flight: Vec<Key> = Vec::new();
            for _ in 0..10_000 {
                while let Step::Contact(c) = lookup.next_step() {
                    prop_assert!(asked.insert(c.id), "asked twice");
                    in_flight.push(c.id);
                    let path = &lookup.paths[lookup.path_of(&c.id).unwrap()];
                    let limit = if path.state == State::Stalled { 20 } else { 3 };
                    prop_assert!(path.num_waiting <= limit);
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
            let merged = lookup.closest_succeeded(20);
            prop_assert!(merged.windows(2).all(|w| target.distance(&w[0].id) < target.distance(&w[1].id)));
        }
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
