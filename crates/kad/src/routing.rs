//! The routing table: 256 k-buckets of contacts, sorted by XOR distance from the local id.
//!
//! # Buckets
//! Bucket `i` holds the contacts whose distance from the local id has its highest set bit
//! at position `i` ([`Distance::bucket_index`]); the local id itself has no bucket and is
//! never added. Each bucket keeps at most k entries, least-recently-seen first, so the
//! head is the contact most likely to have gone away.
//!
//! # Two ways to meet a contact
//! - [`Seen::Direct`]: we heard from it (it sent a request or answered one). It moves to
//!   the tail and its failure count is reset; a new address replaces the old one.
//! - [`Seen::Indirect`]: another node mentioned it in a reply. It is inserted only if its
//!   bucket has room; a third party never moves or re-addresses an entry. This keeps a
//!   lookup's replies from causing a storm of pings.
//!
//! # Full buckets
//! A newcomer heard from directly while its bucket is full goes to the bucket's small
//! replacement cache. If the bucket's oldest entry has been silent for [`PING_IF_SILENT_FOR`]
//! and no ping is already out for this bucket, [`RoutingTable::offer`] returns
//! [`Insert::Pending`] and the caller pings that entry: an answer keeps it (it becomes the
//! most recently seen), a failure evicts it and promotes the newest replacement. Entries
//! heard from recently are not pinged at all, so a busy node sends no pings.
//!
//! # Failures
//! Every request that gets no usable answer counts one failure against its contact; after
//! [`MAX_FAILURES`] in a row the entry is removed and the newest replacement takes its place.

use crate::timers::after;
use std::time::{Duration, Instant};
use voidmesh_proto::{Contact, Distance, Key, NodeId};

/// Consecutive failed requests after which a contact is dropped from its bucket.
pub const MAX_FAILURES: u8 = 2;

/// Contacts kept per bucket to replace entries that fail.
pub const REPLACEMENT_CACHE_LEN: usize = 8;

/// A full bucket's oldest entry is pinged for a newcomer only if we have not heard from it
/// for this long; a contact that answered recently is assumed alive.
pub const PING_IF_SILENT_FOR: Duration = Duration::from_secs(60);

/// Number of buckets: one per bit of the id.
const NUM_BUCKETS: usize = 256;

/// How we came to know a contact, which decides how much we trust it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// It talked to us (a request from it, or its answer to ours).
    Direct,
    /// Someone else named it in a reply.
    Indirect,
}

/// What [`RoutingTable::offer`] did with a contact.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// It was already in its bucket (moved to the tail if heard from directly).
    Updated,
    /// It was added to a bucket with room.
    Inserted,
    /// Its bucket is full; it waits in the replacement cache and the caller must ping
    /// `oldest`, then report the outcome with [`RoutingTable::offer`] (answer) or
    /// [`RoutingTable::ping_failed`] (no answer).
    Pending {
        /// The bucket's least recently seen entry.
        oldest: Contact,
    },
    /// Its bucket is full and no ping is needed now; a direct contact waits in the
    /// replacement cache, an indirect one is dropped.
    Full,
    /// It is the local node.
    Ignored,
}

/// One contact in a bucket.
#[derive(Debug, Clone)]
struct Entry {
    /// Who it is and where to reach it.
    contact: Contact,
    /// When we last heard from it directly (or when it was inserted); decides whether a
    /// newcomer is worth a ping.
    last_seen: Instant,
    /// Requests in a row that got no usable answer; reaching [`MAX_FAILURES`] evicts it.
    failures: u8,
}

/// One k-bucket.
#[derive(Debug, Clone)]
struct Bucket {
    /// At most k entries, least recently seen first.
    entries: Vec<Entry>,
    /// Contacts heard from while the bucket was full, most recent last, at most
    /// [`REPLACEMENT_CACHE_LEN`]; the newest replaces an evicted entry.
    replacements: Vec<Contact>,
    /// The entry being pinged for a newcomer, so that one bucket has one ping out at a time.
    pinging: Option<NodeId>,
    /// When a lookup last targeted an id in this bucket's range; a bucket left alone for
    /// the refresh interval gets a lookup of a random id in its range.
    last_lookup: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Bucket {
            entries: Vec::new(),
            replacements: Vec::new(),
            pinging: None,
            last_lookup: now,
        }
    }

    fn position(&self, id: &NodeId) -> Option<usize> {
        self.entries.iter().position(|e| e.contact.id == *id)
    }

    /// Puts `contact` at the tail of the replacement cache, dropping the oldest if needed.
    fn cache_replacement(&mut self, contact: Contact) {
        self.replacements.retain(|c| c.id != contact.id);
        if self.replacements.len() >= REPLACEMENT_CACHE_LEN {
            self.replacements.remove(0);
        }
        self.replacements.push(contact);
    }

    /// Removes the entry at `pos` and promotes the newest replacement into its place.
    fn evict(&mut self, pos: usize, now: Instant) -> Evicted {
        let removed = self.entries.remove(pos);
        if self.pinging == Some(removed.contact.id) {
            self.pinging = None;
        }
        let promoted = self.replacements.pop();
        if let Some(contact) = promoted {
            self.entries.push(Entry {
                contact,
                last_seen: now,
                failures: 0,
            });
        }
        Evicted {
            removed: removed.contact,
            promoted,
        }
    }
}

/// An entry removed from the table, and the replacement that took its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    /// The contact that was dropped.
    pub removed: Contact,
    /// The replacement promoted into its bucket, if the cache had one.
    pub promoted: Option<Contact>,
}

/// The 256 k-buckets of one node.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    /// The id distances are measured from; never stored in a bucket.
    local_id: NodeId,
    /// Most entries per bucket (k).
    k: usize,
    /// Indexed by [`Distance::bucket_index`].
    buckets: Vec<Bucket>,
    /// Number of entries over all buckets, so `len` is O(1).
    len: usize,
}

impl RoutingTable {
    /// An empty table around `local_id` with buckets of `k` entries.
    pub fn new(local_id: NodeId, k: usize, now: Instant) -> Self {
        RoutingTable {
            local_id,
            k: k.max(1),
            buckets: (0..NUM_BUCKETS).map(|_| Bucket::new(now)).collect(),
            len: 0,
        }
    }

    /// The bucket `id` belongs in; `None` for the local id.
    pub fn bucket_of(&self, id: &NodeId) -> Option<usize> {
        self.local_id.distance(id).bucket_index()
    }

    /// Number of contacts in the table (replacement caches not counted).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the table holds no contact.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every contact in the table, bucket by bucket, nearest bucket first.
    pub fn iter(&self) -> impl Iterator<Item = &Contact> + '_ {
        self.buckets
            .iter()
            .flat_map(|b| b.entries.iter().map(|e| &e.contact))
    }

    /// The contacts of bucket `index`, least recently seen first.
    pub fn bucket_contacts(&self, index: usize) -> impl Iterator<Item = &Contact> + '_ {
        self.buckets
            .get(index)
            .into_iter()
            .flat_map(|b| b.entries.iter().map(|e| &e.contact))
    }

    /// True if `id` is in a bucket (not only in a replacement cache).
    pub fn contains(&self, id: &NodeId) -> bool {
        self.bucket_of(id)
            .is_some_and(|i| self.buckets[i].position(id).is_some())
    }

    /// Offers a contact; see the module doc for the rules.
    pub fn offer(&mut self, now: Instant, contact: Contact, seen: Seen) -> Insert {
        let Some(index) = self.bucket_of(&contact.id) else {
            return Insert::Ignored;
        };
        let k = self.k;
        let bucket = &mut self.buckets[index];
        if let Some(pos) = bucket.position(&contact.id) {
            if seen == Seen::Direct {
                let mut entry = bucket.entries.remove(pos);
                entry.contact.addr = contact.addr;
                entry.last_seen = now;
                entry.failures = 0;
                bucket.entries.push(entry);
                if bucket.pinging == Some(contact.id) {
                    bucket.pinging = None;
                }
            }
            return Insert::Updated;
        }
        if bucket.entries.len() < k {
            bucket.replacements.retain(|c| c.id != contact.id);
            bucket.entries.push(Entry {
                contact,
                last_seen: now,
                failures: 0,
            });
            self.len += 1;
            return Insert::Inserted;
        }
        if seen == Seen::Indirect {
            return Insert::Full;
        }
        bucket.cache_replacement(contact);
        match bucket.entries.first() {
            Some(oldest)
                if bucket.pinging.is_none()
                    && now.saturating_duration_since(oldest.last_seen) >= PING_IF_SILENT_FOR =>
            {
                bucket.pinging = Some(oldest.contact.id);
                Insert::Pending {
                    oldest: oldest.contact,
                }
            }
            _ => Insert::Full,
        }
    }

    /// The ping sent for [`Insert::Pending`] got no answer: evicts that entry and promotes
    /// the newest replacement.
    pub fn ping_failed(&mut self, now: Instant, id: &NodeId) -> Option<Evicted> {
        let index = self.bucket_of(id)?;
        let bucket = &mut self.buckets[index];
        if bucket.pinging == Some(*id) {
            bucket.pinging = None;
        }
        let pos = bucket.position(id)?;
        let evicted = bucket.evict(pos, now);
        if evicted.promoted.is_none() {
            self.len -= 1;
        }
        Some(evicted)
    }

    /// A request to `id` got no usable answer. After [`MAX_FAILURES`] in a row the entry is
    /// evicted (and returned); a contact only in a replacement cache is dropped from it.
    pub fn record_failure(&mut self, now: Instant, id: &NodeId) -> Option<Evicted> {
        let index = self.bucket_of(id)?;
        let bucket = &mut self.buckets[index];
        let Some(pos) = bucket.position(id) else {
            bucket.replacements.retain(|c| c.id != *id);
            return None;
        };
        let entry = &mut bucket.entries[pos];
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures < MAX_FAILURES {
            return None;
        }
        let evicted = bucket.evict(pos, now);
        if evicted.promoted.is_none() {
            self.len -= 1;
        }
        Some(evicted)
    }

    /// Up to `count` contacts nearest to `target`, nearest first, leaving out `exclude`.
    ///
    /// Visits whole buckets in order of their distance range from `target`, so only
    /// about `count` contacts are sorted, not the whole table: with `i` the bucket of
    /// `target`, bucket `i` holds the nearest, then buckets below `i` (all at distance
    /// `[2^i, 2^(i+1))`), then buckets above `i` in increasing order.
    pub fn closest(&self, target: &Key, count: usize, exclude: Option<&NodeId>) -> Vec<Contact> {
        let mut found: Vec<(Distance, Contact)> = Vec::with_capacity(count + self.k);
        let take = |bucket: &Bucket, found: &mut Vec<(Distance, Contact)>| {
            for e in &bucket.entries {
                if Some(&e.contact.id) != exclude {
                    found.push((target.distance(&e.contact.id), e.contact));
                }
            }
        };
        match self.local_id.distance(target).bucket_index() {
            None => {
                for bucket in &self.buckets {
                    if found.len() >= count {
                        break;
                    }
                    take(bucket, &mut found);
                }
            }
            Some(i) => {
                take(&self.buckets[i], &mut found);
                if found.len() < count {
                    for bucket in &self.buckets[..i] {
                        take(bucket, &mut found);
                    }
                }
                for bucket in &self.buckets[i + 1..] {
                    if found.len() >= count {
                        break;
                    }
                    take(bucket, &mut found);
                }
            }
        }
        found.sort_unstable_by_key(|(distance, _)| *distance);
        found.truncate(count);
        found.into_iter().map(|(_, c)| c).collect()
    }

    /// Index of the nearest non-empty bucket (where the closest neighbour lives).
    pub fn nearest_bucket(&self) -> Option<usize> {
        self.buckets.iter().position(|b| !b.entries.is_empty())
    }

    /// Notes that a lookup of `target` started, which counts as a refresh of its bucket.
    pub fn touch(&mut self, target: &Key, now: Instant) {
        if let Some(i) = self.bucket_of(target) {
            self.buckets[i].last_lookup = now;
        }
    }

    /// Buckets worth refreshing (from the nearest non-empty one up to the farthest) with
    /// no lookup in their range for `interval`.
    pub fn stale_buckets(&self, now: Instant, interval: Duration) -> Vec<usize> {
        let Some(nearest) = self.nearest_bucket() else {
            return Vec::new();
        };
        (nearest..NUM_BUCKETS)
            .filter(|&i| now.saturating_duration_since(self.buckets[i].last_lookup) >= interval)
            .collect()
    }

    /// When the next bucket becomes stale, or `None` for an empty table.
    pub fn next_refresh(&self, interval: Duration) -> Option<Instant> {
        let nearest = self.nearest_bucket()?;
        self.buckets[nearest..]
            .iter()
            .map(|b| after(b.last_lookup, interval))
            .min()
    }

    /// An id whose distance from the local id falls in bucket `index`, with random lower
    /// bits taken from `random`.
    pub fn id_in_bucket(&self, index: usize, random: [u8; 32]) -> Key {
        let mut d = random;
        // Bit `index` counts from the least significant bit of the big-endian array.
        let byte = 31 - index / 8;
        let bit = (index % 8) as u8;
        for b in d.iter_mut().take(byte) {
            *b = 0;
        }
        let keep = (1u16 << bit) as u8 - 1;
        d[byte] = (d[byte] & keep) | (1 << bit);
        let mut id = self.local_id.0;
        for (x, y) in id.iter_mut().zip(d) {
            *x ^= y;
        }
        Key(id)
    }

    /// Checks the table's invariants; used by the tests.
    #[cfg(test)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        let mut total = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            if bucket.entries.len() > self.k {
                return Err(format!("bucket {i} holds {}", bucket.entries.len()));
            }
            for e in &bucket.entries {
                if e.contact.id == self.local_id {
                    return Err("the local id is in the table".into());
                }
                if self.bucket_of(&e.contact.id) != Some(i) {
                    return Err(format!("{:?} is in bucket {i}", e.contact.id));
                }
                if !seen.insert(e.contact.id) {
                    return Err(format!("{:?} appears twice", e.contact.id));
                }
                total += 1;
            }
        }
        if total != self.len {
            return Err(format!("len is {} but {} entries", self.len, total));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::epoch;
    use proptest::prelude::*;
    use std::net::SocketAddr;

    fn contact(id: Key, port: u16) -> Contact {
        Contact {
            id,
            addr: SocketAddr::from(([10, 0, 0, 1], port)),
        }
    }

    /// An id in bucket `index` of the zero id, made distinct by `n`.
    fn id_in(index: usize, n: u8) -> Key {
        let table = RoutingTable::new(Key([0; 32]), 20, epoch());
        let mut random = [0u8; 32];
        random[31] = n;
        random[30] = n;
        table.id_in_bucket(index, random)
    }

    #[test]
    fn should_not_add_self() {
        let local = Key([3; 32]);
        let mut t = RoutingTable::new(local, 20, epoch());
        assert_eq!(
            t.offer(epoch(), contact(local, 1), Seen::Direct),
            Insert::Ignored
        );
        assert!(t.is_empty());
    }

    #[test]
    fn should_not_add_more_than_k() {
        let now = epoch();
        let mut t = RoutingTable::new(Key([0; 32]), 4, now);
        for n in 0..10 {
            let _ = t.offer(now, contact(id_in(255, n), 1), Seen::Direct);
        }
        assert_eq!(t.bucket_contacts(255).count(), 4);
        t.check_invariants().unwrap();
    }

    #[test]
    fn heard_from_contact_moves_to_tail() {
        let now = epoch();
        let mut t = RoutingTable::new(Key([0; 32]), 4, now);
        for n in 0..3 {
            let _ = t.offer(now, contact(id_in(200, n), 1), Seen::Direct);
        }
        assert_eq!(
            t.offer(now, contact(id_in(200, 0), 1), Seen::Direct),
            Insert::Updated
        );
        let order: Vec<Key> = t.bucket_contacts(200).map(|c| c.id).collect();
        assert_eq!(order, vec![id_in(200, 1), id_in(200, 2), id_in(200, 0)]);
    }

    #[test]
    fn indirect_contact_does_not_move_or_readdress() {
        let now = epoch();
        let mut t = RoutingTable::new(Key([0; 32]), 4, now);
        let _ = t.offer(now, contact(id_in(9, 0), 1), Seen::Direct);
        let _ = t.offer(now, contact(id_in(9, 1), 1), Seen::Direct);
        let _ = t.offer(now, contact(id_in(9, 0), 99), Seen::Indirect);
        let order: Vec<Contact> = t.bucket_contacts(9).copied().collect();
        assert_eq!(
            order,
            vec![contact(id_in(9, 0), 1), contact(id_in(9, 1), 1)]
        );
    }

    #[test]
    fn same_id_with_new_address_updates_the_address() {
        let now = epoch();
        let mut t = RoutingTable::new(Key([0; 32]), 4, now);
        let _ = t.offer(now, contact(id_in(9, 0), 1), Seen::Direct);
        let _ = t.offer(now, contact(id_in(9, 0), 2), Seen::Direct);
        assert_eq!(
            t.iter().copied().collect::<Vec<_>>(),
            vec![contact(id_in(9, 0), 2)]
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn full_bucket_pings_oldest_before_evicting() {
        let start = epoch();
        let mut t = RoutingTable::new(Key([0; 32]), 2, start);
        let _ = t.offer(start, contact(id_in(100, 0), 1), Seen::Direct);
        let _ = t.offer(start, contact(id_in(100, 1), 1), Seen::Direct);
        let later = start + PING_IF_SILENT_FOR;
        assert_eq!(
            t.offer(later, contact(id_in(100, 2), 1), Seen::Direct),
            Insert::Pending {
                oldest: contact(id_in(100, 0), 1)
            }
        );
        // Nothing is evicted until the ping fails, and one ping at a time per bucket.
        assert!(t.contains(&id_in(100, 0)));
        assert_eq!(
            t.offer(later, contact(id_in(100, 3), 1), Seen::Direct),
            Insert::Full
        );
        let evicted = t.ping_failed(later, &id_in(100, 0)).unwrap();
        assert_eq!(evicted.removed.id, id_in(100, 0));
        // The newest replacement takes the slot.
        assert_eq!(evicted.promoted.map(|c| c.id), Some(id_in(100, 3)));
        assert!(t.contains(&id_in(100, 3)));
        assert_eq!(t.len(), 2);
        t.check_invariants().unwrap();
    }

    #[test]
    fn answered_ping_keeps_the_oldest() {
        let start = epoch();
        let mut t = RoutingTable::new(Key([0; 32]), 2, start);
        let _ = t.offer(start, contact(id_in(100, 0), 1), Seen::Direct);
        let _ = t.offer(start, contact(id_in(100, 1), 1), Seen::Direct);
        let later = start + PING_IF_SILENT_FOR;
        let _ = t.offer(later, contact(id_in(100, 2), 1), Seen::Direct);
        // The pong: the pinged entry is heard from.
        let _ = t.offer(later, contact(id_in(100, 0), 1), Seen::Direct);
        let order: Vec<Key> = t.bucket_contacts(100).map(|c| c.id).collect();
        assert_eq!(order, vec![id_in(100, 1), id_in(100, 0)]);
        assert!(!t.contains(&id_in(100, 2)));
    }

    #[test]
    fn recently_seen_oldest_is_not_pinged() {
        let now = epoch();
        let mut t = RoutingTable::new(Key([0; 32]), 1, now);
        let _ = t.offer(now, contact(id_in(50, 0), 1), Seen::Direct);
        assert_eq!(
            t.offer(now, contact(id_in(50, 1), 1), Seen::Direct),
            Insert::Full
        );
    }

    #[test]
    fn repeated_failures_evict_and_promote_replacement() {
        let now = epoch();
        let mut t = RoutingTable::new(Key([0; 32]), 1, now);
        let _ = t.offer(now, contact(id_in(50, 0), 1), Seen::Direct);
        let _ = t.offer(now, contact(id_in(50, 1), 1), Seen::Direct);
        for _ in 1..MAX_FAILURES {
            assert_eq!(t.record_failure(now, &id_in(50, 0)), None);
        }
        let evicted = t.record_failure(now, &id_in(50, 0)).unwrap();
        assert_eq!(evicted.promoted.map(|c| c.id), Some(id_in(50, 1)));
        assert!(t.contains(&id_in(50, 1)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn success_resets_the_failure_count() {
        let now = epoch();
        let mut t = RoutingTable::new(Key([0; 32]), 1, now);
        let id = id_in(50, 0);
        let _ = t.offer(now, contact(id, 1), Seen::Direct);
        for _ in 0..5 {
            assert_eq!(t.record_failure(now, &id), None);
            let _ = t.offer(now, contact(id, 1), Seen::Direct);
        }
        assert!(t.contains(&id));
    }

    #[test]
    fn closest_is_sorted_and_excludes() {
        let now = epoch();
        let local = Key([0x55; 32]);
        let mut t = RoutingTable::new(local, 20, now);
        let mut all = Vec::new();
        for n in 0..200u8 {
            let mut raw = [n.wrapping_mul(37); 32];
            raw[31] = n;
            raw[0] = n.wrapping_mul(101);
            let c = contact(Key(raw), 1);
            if t.offer(now, c, Seen::Direct) == Insert::Inserted {
                all.push(c);
            }
        }
        for probe in [Key([0; 32]), Key([0xff; 32]), local, Key([0x54; 32])] {
            let exclude = all[3].id;
            let got = t.closest(&probe, 20, Some(&exclude));
            let mut expect: Vec<Contact> =
                all.iter().filter(|c| c.id != exclude).copied().collect();
            expect.sort_by_key(|c| probe.distance(&c.id));
            expect.truncate(20);
            assert_eq!(got, expect);
        }
    }

    #[test]
    fn id_in_bucket_lands_in_that_bucket() {
        let t = RoutingTable::new(Key([0xa5; 32]), 20, epoch());
        for i in 0..256 {
            let id = t.id_in_bucket(i, [0xff; 32]);
            assert_eq!(t.bucket_of(&id), Some(i));
            let id = t.id_in_bucket(i, [0; 32]);
            assert_eq!(t.bucket_of(&id), Some(i));
        }
    }

    proptest! {
        #[test]
        fn buckets_stay_sets_of_at_most_k_in_the_right_place(
            local in any::<[u8; 32]>(),
            ops in proptest::collection::vec((any::<[u8; 32]>(), 0u8..4, any::<bool>(), 0u8..3), 1..300),
        ) {
            let start = epoch();
            let local = Key(local);
            let mut t = RoutingTable::new(local, 4, start);
            let mut known: Vec<Key> = vec![local];
            for (step, (raw, shared_prefix, direct, action)) in ops.into_iter().enumerate() {
                let now = start + Duration::from_secs(step as u64 * 7);
                // Bias ids towards few buckets (and sometimes reuse one) so buckets fill.
                let mut raw = raw;
                raw[..usize::from(shared_prefix)].copy_from_slice(&local.0[..usize::from(shared_prefix)]);
                let id = if action == 2 { known[raw[31] as usize % known.len()] } else { Key(raw) };
                known.push(id);
                match action {
                    0 | 2 => {
                        let seen = if direct { Seen::Direct } else { Seen::Indirect };
                        if let Insert::Pending { oldest } = t.offer(now, contact(id, 1), seen) {
                            if direct {
                                let _ = t.ping_failed(now, &oldest.id);
                            }
                        }
                    }
                    _ => {
                        let _ = t.record_failure(now, &id);
                    }
                }
                if let Err(e) = t.check_invariants() {
                    return Err(TestCaseError::fail(e));
                }
            }
        }
    }
}
