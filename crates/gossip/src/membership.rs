//! Membership: the bounded view of neighbours, the HELLOs in flight, and the contacts
//! that could be asked to join.
//!
//! A peer enters the view only through a proof-checked HELLO or WELCOME (see `lib.rs`);
//! this module only keeps the sets and their bounds:
//! - the **view**: at most `max_connections` neighbours, each with its token bucket;
//! - **pending**: peers we sent a HELLO to and await a WELCOME from, each with a deadline;
//! - **candidates**: contacts learned from OFFERs and WELCOMEs (at most `max_candidates`);
//! - **known**: known peers and bootstrappers handed in by the driver, the fallback when
//!   candidates run out (at most `max_candidates`);
//! - **tried**: peers recently sent a HELLO, not tried again before their time is up, so
//!   a full peer that keeps being offered is not asked over and over.

use crate::rate::TokenBucket;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;
use voidmesh_proto::{Contact, NodeId};

/// One member of the view.
#[derive(Debug, Clone)]
pub(crate) struct Neighbour {
    /// Its id and the address where it accepts gossip connections.
    pub(crate) contact: Contact,
    /// Its message budget; running dry means it floods.
    pub(crate) bucket: TokenBucket,
}

/// The view and the join bookkeeping around it.
#[derive(Debug)]
pub(crate) struct Membership {
    /// This node; never added to any set.
    local_id: NodeId,
    /// The neighbours, by id (ordered, so that iteration is deterministic).
    view: BTreeMap<NodeId, Neighbour>,
    /// HELLOs sent and not answered yet: contact and deadline.
    pending: BTreeMap<NodeId, (Contact, Instant)>,
    /// Contacts learned from others, to join when the view is short.
    candidates: BTreeMap<NodeId, Contact>,
    /// Known peers and bootstrappers from the driver.
    known: BTreeMap<NodeId, Contact>,
    /// Peers sent a HELLO recently → when they may be tried again (at most
    /// 4 × `max_candidates`).
    tried: BTreeMap<NodeId, Instant>,
    /// Bound of `candidates` and of `known`.
    max_candidates: usize,
}

impl Membership {
    /// Empty sets.
    pub(crate) fn new(local_id: NodeId, max_candidates: usize) -> Self {
        Membership {
            local_id,
            view: BTreeMap::new(),
            pending: BTreeMap::new(),
            candidates: BTreeMap::new(),
            known: BTreeMap::new(),
            tried: BTreeMap::new(),
            max_candidates: max_candidates.max(1),
        }
    }

    /// Neighbours in the view.
    pub(crate) fn len(&self) -> usize {
        self.view.len()
    }

    /// HELLOs in flight.
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Contacts remembered as candidates.
    #[cfg(test)]
    pub(crate) fn candidate_len(&self) -> usize {
        self.candidates.len()
    }

    /// True if `id` is in the view.
    pub(crate) fn is_member(&self, id: &NodeId) -> bool {
        self.view.contains_key(id)
    }

    /// True if a HELLO to `id` is in flight.
    pub(crate) fn is_pending(&self, id: &NodeId) -> bool {
        self.pending.contains_key(id)
    }

    /// The view's contacts, in id order.
    pub(crate) fn contacts(&self) -> Vec<Contact> {
        self.view.values().map(|n| n.contact).collect()
    }

    /// Adds a neighbour (or updates its address). Returns true if it is new.
    pub(crate) fn add_member(&mut self, now: Instant, contact: Contact, burst: u32) -> bool {
        if contact.id == self.local_id {
            return false;
        }
        self.pending.remove(&contact.id);
        self.candidates.remove(&contact.id);
        match self.view.get_mut(&contact.id) {
            Some(n) => {
                n.contact.addr = contact.addr;
                false
            }
            None => {
                self.view.insert(
                    contact.id,
                    Neighbour {
                        contact,
                        bucket: TokenBucket::new(now, burst),
                    },
                );
                true
            }
        }
    }

    /// Removes `id` from the view and from the HELLOs in flight. Returns true if it was in
    /// the view.
    pub(crate) fn remove(&mut self, id: &NodeId) -> bool {
        self.pending.remove(id);
        self.candidates.remove(id);
        self.view.remove(id).is_some()
    }

    /// Records a neighbour's new listening address.
    pub(crate) fn update_addr(&mut self, id: &NodeId, addr: SocketAddr) {
        if let Some(n) = self.view.get_mut(id) {
            n.contact.addr = addr;
        }
    }

    /// Charges one message to neighbour `id`. False means it exceeded its budget.
    /// Peers not in the view are not charged (they get no further than HELLO).
    pub(crate) fn take_token(&mut self, id: &NodeId, now: Instant, rate: u32, burst: u32) -> bool {
        match self.view.get_mut(id) {
            Some(n) => n.bucket.take(now, rate, burst),
            None => true,
        }
    }

    /// Up to `n` view members picked at random, skipping those `skip` rejects.
    pub(crate) fn sample(
        &self,
        rng: &mut StdRng,
        n: usize,
        skip: impl Fn(&NodeId) -> bool,
    ) -> Vec<Contact> {
        let eligible: Vec<Contact> = self
            .view
            .values()
            .filter(|nb| !skip(&nb.contact.id))
            .map(|nb| nb.contact)
            .collect();
        eligible.choose_multiple(rng, n).copied().collect()
    }

    /// Remembers a contact to join later, unless it is this node, a neighbour or in
    /// flight. When full, a random old candidate makes room.
    pub(crate) fn add_candidate(&mut self, rng: &mut StdRng, contact: Contact) {
        let id = contact.id;
        if id == self.local_id || self.view.contains_key(&id) || self.pending.contains_key(&id) {
            return;
        }
        if !self.candidates.contains_key(&id) && self.candidates.len() >= self.max_candidates {
            let victim = rng.gen_range(0..self.candidates.len());
            if let Some(old) = self.candidates.keys().nth(victim).copied() {
                self.candidates.remove(&old);
            }
        }
        self.candidates.insert(id, contact);
    }

    /// Remembers a known peer or bootstrapper (kept for good; at most `max_candidates`).
    pub(crate) fn add_known(&mut self, contact: Contact) {
        if contact.id == self.local_id {
            return;
        }
        if self.known.len() < self.max_candidates || self.known.contains_key(&contact.id) {
            self.known.insert(contact.id, contact);
        }
    }

    /// Picks up to `n` peers to send a HELLO to: random candidates first, then known
    /// peers; never neighbours, peers in flight or peers tried before `now`'s turn.
    pub(crate) fn pick_join_targets(
        &mut self,
        rng: &mut StdRng,
        now: Instant,
        n: usize,
    ) -> Vec<Contact> {
        self.tried.retain(|_, until| *until > now);
        let usable = |c: &Contact, this: &Membership| {
            !this.view.contains_key(&c.id)
                && !this.pending.contains_key(&c.id)
                && !this.tried.contains_key(&c.id)
        };
        let mut picked: Vec<Contact> = {
            let eligible: Vec<Contact> = self
                .candidates
                .values()
                .filter(|c| usable(c, self))
                .copied()
                .collect();
            eligible.choose_multiple(rng, n).copied().collect()
        };
        if picked.len() < n {
            let eligible: Vec<Contact> = self
                .known
                .values()
                .filter(|c| usable(c, self) && !picked.iter().any(|p| p.id == c.id))
                .copied()
                .collect();
            picked.extend(eligible.choose_multiple(rng, n - picked.len()).copied());
        }
        picked
    }

    /// Records a HELLO sent to `contact`: in flight until `deadline`, not tried again
    /// before `retry_at`.
    pub(crate) fn begin_hello(&mut self, contact: Contact, deadline: Instant, retry_at: Instant) {
        // Bound `tried`: past the cap, the entry that expires first goes.
        if self.tried.len() >= 4 * self.max_candidates {
            if let Some(first) = self
                .tried
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(id, _)| *id)
            {
                self.tried.remove(&first);
            }
        }
        self.candidates.remove(&contact.id);
        self.pending.insert(contact.id, (contact, deadline));
        self.tried.insert(contact.id, retry_at);
    }

    /// Ends the HELLO to `id` (answered). Returns true if one was in flight.
    pub(crate) fn end_hello(&mut self, id: &NodeId) -> bool {
        self.pending.remove(id).is_some()
    }

    /// Drops the HELLOs whose deadline passed; returns their peers.
    pub(crate) fn expire_hellos(&mut self, now: Instant) -> Vec<NodeId> {
        let expired: Vec<NodeId> = self
            .pending
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.pending.remove(id);
        }
        expired
    }

    /// The earliest HELLO deadline.
    pub(crate) fn next_hello_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|(_, deadline)| *deadline).min()
    }

    /// Forgets `tried` entries whose time is up.
    pub(crate) fn expire_tried(&mut self, now: Instant) {
        self.tried.retain(|_, until| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::time::Duration;
    use voidmesh_proto::Key;

    fn contact(n: u8) -> Contact {
        Contact::unkeyed(
            Key([n; 32]),
            SocketAddr::from(([127, 0, 0, 1], u16::from(n))),
        )
    }

    #[test]
    fn never_adds_self() {
        let t = crate::test_support::epoch();
        let mut m = Membership::new(Key([1; 32]), 10);
        assert!(!m.add_member(t, contact(1), 10));
        m.add_candidate(&mut StdRng::seed_from_u64(0), contact(1));
        m.add_known(contact(1));
        assert_eq!(m.len(), 0);
        assert!(m
            .pick_join_targets(&mut StdRng::seed_from_u64(0), t, 5)
            .is_empty());
    }

    #[test]
    fn candidates_are_bounded() {
        let mut rng = StdRng::seed_from_u64(0);
        let mut m = Membership::new(Key([0; 32]), 3);
        for n in 1..=10 {
            m.add_candidate(&mut rng, contact(n));
        }
        assert_eq!(m.candidate_len(), 3);
    }

    #[test]
    fn join_targets_skip_members_pending_and_recently_tried() {
        let t = crate::test_support::epoch();
        let mut rng = StdRng::seed_from_u64(0);
        let mut m = Membership::new(Key([0; 32]), 10);
        for n in 1..=3 {
            m.add_candidate(&mut rng, contact(n));
        }
        m.add_member(t, contact(1), 10);
        m.begin_hello(
            contact(2),
            t + Duration::from_secs(1),
            t + Duration::from_secs(10),
        );
        assert_eq!(m.pick_join_targets(&mut rng, t, 5), vec![contact(3)]);
        // contact 2 times out but stays "tried" until its retry time.
        assert_eq!(
            m.expire_hellos(t + Duration::from_secs(1)),
            vec![contact(2).id]
        );
        m.add_known(contact(2));
        let later = t + Duration::from_secs(2);
        assert_eq!(m.pick_join_targets(&mut rng, later, 5), vec![contact(3)]);
        let much_later = t + Duration::from_secs(10);
        let mut again = m.pick_join_targets(&mut rng, much_later, 5);
        again.sort_by_key(|c| c.id);
        assert_eq!(again, vec![contact(2), contact(3)]);
    }

    #[test]
    fn known_peers_are_the_fallback_after_candidates() {
        let t = crate::test_support::epoch();
        let mut rng = StdRng::seed_from_u64(0);
        let mut m = Membership::new(Key([0; 32]), 10);
        m.add_known(contact(9));
        m.add_candidate(&mut rng, contact(4));
        assert_eq!(m.pick_join_targets(&mut rng, t, 1), vec![contact(4)]);
        let both = m.pick_join_targets(&mut rng, t, 2);
        assert_eq!(both, vec![contact(4), contact(9)]);
    }

    #[test]
    fn removing_a_member_forgets_it() {
        let t = crate::test_support::epoch();
        let mut m = Membership::new(Key([0; 32]), 10);
        m.add_member(t, contact(5), 10);
        assert!(m.remove(&contact(5).id));
        assert!(!m.remove(&contact(5).id));
        assert_eq!(m.len(), 0);
    }
}
