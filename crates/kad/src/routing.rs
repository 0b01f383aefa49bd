//! The routing table: 256 k-buckets of contacts, sorted by XOR distance from the local id.
//!
//! Buckets are allocated lazily, from the farthest (255) down to the nearest one used: in a
//! network of n nodes only about log2(n) + a few buckets ever hold a contact, so a table
//! costs a few kilobytes instead of 256 buckets' worth (this adds up in the simulator's
//! 100 000 nodes). A bucket not allocated yet behaves as an empty one created with the
//! table.
//!
//! # Buckets
//! Bucket `i` holds the contacts whose distance from the local id has its highest set bit
//! at position `i` ([`Distance::bucket_index`](voidmesh_proto::Distance::bucket_index)); the local id itself has no bucket and is
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
//! Without a replacement, an entry is removed only once it has also not been heard from
//! for [`STALE_AFTER`]: until then it stays (and is asked again), so a node cut off for a
//! while — a partition, a link down — is found again when it comes back, instead of the
//! two halves forgetting each other for good (the Kademlia paper's rule: stale contacts
//! give way to replacements only).
//!
//! # Who may enter at all (Sybil and Eclipse defences)
//! - **Id puzzle**: a contact whose id does not solve the network's static puzzle
//!   ([`voidmesh_proto::id_puzzle_ok`] at the table's difficulty) is refused
//!   ([`Reject::IdPuzzle`]), in a bucket and in a replacement cache alike.
//! - **Subnet limit**: a bucket holds at most `max_per_subnet` contacts from one /24
//!   (IPv4) or /48 (IPv6) network; IPv4-mapped IPv6 addresses count as IPv4, loopback
//!   addresses are exempt ([`subnet_of`]). A newcomer from a subnet that is at its limit
//!   is refused ([`Reject::SubnetFull`]), an entry is not re-addressed into such a subnet,
//!   and a replacement is promoted only if its subnet has room. One operator with one
//!   address block therefore cannot fill a bucket, however many ids it mines.

use crate::timers::after;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use voidmesh_proto::{id_puzzle_ok, Contact, Key, NodeId};

/// Consecutive failed requests after which a contact is dropped from its bucket.
pub const MAX_FAILURES: u8 = 2;

/// How long a failing entry with no replacement stays in its bucket since it was last
/// heard from (see "Failures" above).
pub const STALE_AFTER: Duration = Duration::from_secs(600);

/// Contacts kept per bucket to replace entries that fail.
pub const REPLACEMENT_CACHE_LEN: usize = 8;

/// A full bucket's oldest entry is pinged for a newcomer only if we have not heard from it
/// for this long; a contact that answered recently is assumed alive.
pub const PING_IF_SILENT_FOR: Duration = Duration::from_secs(60);

/// Number of buckets: one per bit of the id.
const NUM_BUCKETS: usize = 256;

/// A network block whose contacts share a per-bucket limit: the first 3 bytes of an IPv4
/// address or the first 6 bytes of an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subnet {
    /// An IPv4 /24.
    V4([u8; 3]),
    /// An IPv6 /48.
    V6([u8; 6]),
}

/// The subnet `addr` counts against, or `None` for a loopback address (exempt from the
/// limit, so many local nodes can run on one machine). An IPv4-mapped IPv6 address counts
/// as the IPv4 address it carries.
pub fn subnet_of(addr: &SocketAddr) -> Option<Subnet> {
    let ip = match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    if ip.is_loopback() {
        return None;
    }
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Some(Subnet::V4([o[0], o[1], o[2]]))
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            Some(Subnet::V6([o[0], o[1], o[2], o[3], o[4], o[5]]))
        }
    }
}

/// Why [`RoutingTable::offer`] refused a contact outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Its id does not solve the id puzzle.
    IdPuzzle,
    /// Its bucket already holds `max_per_subnet` contacts from its subnet.
    SubnetFull,
}

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
    /// It may not enter the table (neither a bucket nor a replacement cache).
    Rejected(Reject),
}

/// One contact in a bucket.
#[derive(Debug, Clone)]
struct Entry {
    /// Who it is and where to reach it.
    contact: Contact,
    /// `subnet_of(contact.addr)`, kept so that the subnet limit costs no address parsing.
    subnet: Option<Subnet>,
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

    /// True if one more contact at `addr` would stay within `limit` per subnet (0: no
    /// limit), not counting the entry at `skip`.
    fn subnet_has_room(&self, addr: &SocketAddr, limit: usize, skip: Option<usize>) -> bool {
        if limit == 0 {
            return true;
        }
        let Some(subnet) = subnet_of(addr) else {
            return true;
        };
        let used = self
            .entries
            .iter()
            .enumerate()
            .filter(|(i, e)| Some(*i) != skip && e.subnet == Some(subnet))
            .count();
        used < limit
    }

    /// Puts `contact` at the tail of the replacement cache, dropping the oldest if needed.
    fn cache_replacement(&mut self, contact: Contact) {
        self.replacements.retain(|c| c.id != contact.id);
        if self.replacements.len() >= REPLACEMENT_CACHE_LEN {
            self.replacements.remove(0);
        }
        self.replacements.push(contact);
    }

    /// Removes the entry at `pos` and promotes the newest replacement whose subnet has
    /// room (`limit` per subnet) into its place.
    fn evict(&mut self, pos: usize, now: Instant, limit: usize) -> Evicted {
        let removed = self.entries.remove(pos);
        if self.pinging == Some(removed.contact.id) {
            self.pinging = None;
        }
        let promoted = (0..self.replacements.len())
            .rev()
            .find(|&i| self.subnet_has_room(&self.replacements[i].addr, limit, None))
            .map(|i| self.replacements.remove(i));
        if let Some(contact) = promoted {
            self.entries.push(Entry {
                contact,
                subnet: subnet_of(&contact.addr),
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

/// A XOR distance as four big-endian 64-bit words: orders exactly like [`Distance`](voidmesh_proto::Distance), but
/// compares without a call to `memcmp` (sorting and ordered maps of candidates are hot in
/// lookups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SortKey([u64; 4]);

impl SortKey {
    /// The distance between `a` and `b`.
    #[inline]
    pub(crate) fn between(a: &Key, b: &Key) -> Self {
        #[inline(always)]
        fn word(k: &Key, i: usize) -> u64 {
            let mut w = [0u8; 8];
            w.copy_from_slice(&k.0[i * 8..i * 8 + 8]);
            u64::from_be_bytes(w)
        }
        SortKey([
            word(a, 0) ^ word(b, 0),
            word(a, 1) ^ word(b, 1),
            word(a, 2) ^ word(b, 2),
            word(a, 3) ^ word(b, 3),
        ])
    }

    /// The same as [`Distance::bucket_index`](voidmesh_proto::Distance::bucket_index): the
    /// position of the highest set bit, `None` for zero.
    #[inline]
    pub(crate) fn bucket_index(&self) -> Option<usize> {
        let (i, w) = self.0.iter().enumerate().find(|(_, w)| **w != 0)?;
        Some(255 - (i * 64 + w.leading_zeros() as usize))
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
    /// The allocated buckets, `first..256`: `buckets[j]` is bucket `first + j` (see
    /// [`Distance::bucket_index`](voidmesh_proto::Distance::bucket_index)). Buckets below `first` are empty.
    buckets: Vec<Bucket>,
    /// Index of the lowest allocated bucket (256 while none is).
    first: usize,
    /// When the table was made: the last lookup time of a bucket allocated later.
    created: Instant,
    /// Number of entries over all buckets, so `len` is O(1).
    len: usize,
    /// Leading zero bits SHA-256(id) must have for a contact to enter (0: any id).
    id_difficulty: u8,
    /// Most contacts of one subnet per bucket (0: no limit).
    max_per_subnet: usize,
}

impl RoutingTable {
    /// An empty table around `local_id` with buckets of `k` entries, accepting any id and
    /// any number of contacts per subnet (see [`with_rules`](Self::with_rules)).
    pub fn new(local_id: NodeId, k: usize, now: Instant) -> Self {
        RoutingTable {
            local_id,
            k: k.max(1),
            buckets: Vec::new(),
            first: NUM_BUCKETS,
            created: now,
            len: 0,
            id_difficulty: 0,
            max_per_subnet: 0,
        }
    }

    /// Sets the admission rules: the id puzzle's difficulty and the most contacts of one
    /// subnet per bucket (0: no limit). See the module doc.
    pub fn with_rules(mut self, id_difficulty: u8, max_per_subnet: usize) -> Self {
        self.id_difficulty = id_difficulty;
        self.max_per_subnet = max_per_subnet;
        self
    }

    /// True if `contact` could be admitted on its id alone (solves the id puzzle and is not
    /// the local node). Computes one SHA-256 when the difficulty is not zero.
    pub fn id_acceptable(&self, id: &NodeId) -> bool {
        *id != self.local_id && id_puzzle_ok(id, self.id_difficulty)
    }

    /// The bucket `id` belongs in; `None` for the local id.
    pub fn bucket_of(&self, id: &NodeId) -> Option<usize> {
        SortKey::between(&self.local_id, id).bucket_index()
    }

    /// Bucket `index`, if it is allocated (an unallocated one is empty).
    fn bucket(&self, index: usize) -> Option<&Bucket> {
        self.buckets.get(index.checked_sub(self.first)?)
    }

    /// Bucket `index` (below 256), allocating it and every bucket between it and the
    /// lowest allocated one.
    fn bucket_mut(&mut self, index: usize) -> &mut Bucket {
        if index < self.first {
            let created = self.created;
            let mut grown: Vec<Bucket> = Vec::with_capacity(NUM_BUCKETS - index);
            grown.extend((index..self.first).map(|_| Bucket::new(created)));
            grown.append(&mut self.buckets);
            self.buckets = grown;
            self.first = index;
        }
        &mut self.buckets[index - self.first]
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
        self.bucket(index)
            .into_iter()
            .flat_map(|b| b.entries.iter().map(|e| &e.contact))
    }

    /// True if `id` is in a bucket (not only in a replacement cache).
    pub fn contains(&self, id: &NodeId) -> bool {
        self.bucket_of(id)
            .and_then(|i| self.bucket(i))
            .is_some_and(|b| b.position(id).is_some())
    }

    /// Offers a contact; see the module doc for the rules.
    pub fn offer(&mut self, now: Instant, contact: Contact, seen: Seen) -> Insert {
        let Some(index) = self.bucket_of(&contact.id) else {
            return Insert::Ignored;
        };
        let k = self.k;
        let limit = self.max_per_subnet;
        let known = self.bucket(index).and_then(|b| b.position(&contact.id));
        if let Some(pos) = known {
            let bucket = self.bucket_mut(index);
            if seen == Seen::Direct {
                let mut entry = bucket.entries.remove(pos);
                // A new address is taken only if its subnet has room in this bucket.
                if entry.contact.addr != contact.addr
                    && bucket.subnet_has_room(&contact.addr, limit, None)
                {
                    entry.contact.addr = contact.addr;
                    entry.subnet = subnet_of(&contact.addr);
                }
                entry.last_seen = now;
                entry.failures = 0;
                bucket.entries.push(entry);
                if bucket.pinging == Some(contact.id) {
                    bucket.pinging = None;
                }
            }
            return Insert::Updated;
        }
        if !id_puzzle_ok(&contact.id, self.id_difficulty) {
            return Insert::Rejected(Reject::IdPuzzle);
        }
        let bucket = self.bucket_mut(index);
        if !bucket.subnet_has_room(&contact.addr, limit, None) {
            return Insert::Rejected(Reject::SubnetFull);
        }
        if bucket.entries.len() < k {
            bucket.replacements.retain(|c| c.id != contact.id);
            bucket.entries.push(Entry {
                contact,
                subnet: subnet_of(&contact.addr),
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

    /// Offers a contact another node named in a reply ([`Seen::Indirect`]) when the outcome
    /// does not matter: the same as [`offer`](Self::offer), but a full bucket is not
    /// searched (for an indirect contact a full bucket changes nothing, whether the contact
    /// is in it or not). Lookups learn twenty contacts per answer, most of them for full
    /// buckets, so this keeps the routing table off the hot path.
    pub fn learn(&mut self, now: Instant, contact: Contact) {
        let Some(index) = self.bucket_of(&contact.id) else {
            return;
        };
        if self
            .bucket(index)
            .is_some_and(|b| b.entries.len() >= self.k)
        {
            return;
        }
        let _ = self.offer(now, contact, Seen::Indirect);
    }

    /// The ping sent for [`Insert::Pending`] got no answer: evicts that entry and promotes
    /// the newest replacement.
    pub fn ping_failed(&mut self, now: Instant, id: &NodeId) -> Option<Evicted> {
        let index = self.bucket_of(id)?;
        let limit = self.max_per_subnet;
        self.bucket(index)?;
        let bucket = self.bucket_mut(index);
        if bucket.pinging == Some(*id) {
            bucket.pinging = None;
        }
        let pos = bucket.position(id)?;
        let evicted = bucket.evict(pos, now, limit);
        if evicted.promoted.is_none() {
            self.len -= 1;
        }
        Some(evicted)
    }

    /// A request to `id` got no usable answer. After [`MAX_FAILURES`] in a row the entry is
    /// evicted (and returned); a contact only in a replacement cache is dropped from it.
    pub fn record_failure(&mut self, now: Instant, id: &NodeId) -> Option<Evicted> {
        let index = self.bucket_of(id)?;
        let limit = self.max_per_subnet;
        self.bucket(index)?;
        let bucket = self.bucket_mut(index);
        let Some(pos) = bucket.position(id) else {
            bucket.replacements.retain(|c| c.id != *id);
            return None;
        };
        let entry = &mut bucket.entries[pos];
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures < MAX_FAILURES {
            return None;
        }
        let stale = now.saturating_duration_since(entry.last_seen) >= STALE_AFTER;
        let replaceable = bucket
            .replacements
            .iter()
            .any(|c| bucket.subnet_has_room(&c.addr, limit, Some(pos)));
        if !stale && !replaceable {
            return None;
        }
        let evicted = bucket.evict(pos, now, limit);
        if evicted.promoted.is_none() {
            self.len -= 1;
        }
        Some(evicted)
    }

    /// Up to `count` contacts nearest to `target`, nearest first, leaving out `exclude`.
    ///
    /// Visits the buckets in the exact order of their distance from `target`, sorts only
    /// the contacts of each bucket it takes, and stops once it has `count`. With `D` the
    /// distance from the local id to `target`, every contact of bucket `j` lies at a
    /// distance from `target` that agrees with `D` above bit `j` and differs at bit `j`; so
    /// all of bucket `a` is nearer than all of bucket `b < a` if bit `a` of `D` is set, and
    /// farther if it is clear. The order is therefore: the buckets of the set bits of `D`
    /// from the highest down, then the buckets of its clear bits from the lowest up.
    pub fn closest(&self, target: &Key, count: usize, exclude: Option<&NodeId>) -> Vec<Contact> {
        let mut found: Vec<Contact> = Vec::with_capacity(count.min(self.len));
        if count == 0 || self.buckets.is_empty() {
            return found;
        }
        let d = self.local_id.distance(target);
        let bit = |i: usize| d.0[31 - i / 8] >> (i % 8) & 1 == 1;
        let set = (self.first..NUM_BUCKETS).rev().filter(|&i| bit(i));
        let clear = (self.first..NUM_BUCKETS).filter(|&i| !bit(i));
        // (distance, position in the bucket): small entries, cheap to select and sort.
        let mut sorted: Vec<(SortKey, usize)> = Vec::with_capacity(self.k);
        for index in set.chain(clear) {
            let entries = &self.buckets[index - self.first].entries;
            sorted.clear();
            sorted.extend(
                entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| Some(&e.contact.id) != exclude)
                    .map(|(at, e)| (SortKey::between(target, &e.contact.id), at)),
            );
            let want = count - found.len();
            if sorted.len() > want {
                // Only the `want` nearest of this bucket are needed: select, then sort those.
                sorted.select_nth_unstable(want - 1);
                sorted.truncate(want);
            }
            sorted.sort_unstable();
            found.extend(sorted.iter().map(|&(_, at)| entries[at].contact));
            if found.len() >= count {
                break;
            }
        }
        found
    }

    /// Index of the nearest non-empty bucket (where the closest neighbour lives).
    pub fn nearest_bucket(&self) -> Option<usize> {
        self.buckets
            .iter()
            .position(|b| !b.entries.is_empty())
            .map(|j| self.first + j)
    }

    /// Notes that a lookup of `target` started, which counts as a refresh of its bucket.
    pub fn touch(&mut self, target: &Key, now: Instant) {
        if let Some(i) = self.bucket_of(target) {
            self.bucket_mut(i).last_lookup = now;
        }
    }

    /// Buckets worth refreshing (from the nearest non-empty one up to the farthest) with
    /// no lookup in their range for `interval`.
    pub fn stale_buckets(&self, now: Instant, interval: Duration) -> Vec<usize> {
        let Some(nearest) = self.nearest_bucket() else {
            return Vec::new();
        };
        (nearest..NUM_BUCKETS)
            .filter(|&i| {
                let last = self.buckets[i - self.first].last_lookup;
                now.saturating_duration_since(last) >= interval
            })
            .collect()
    }

    /// When the next bucket becomes stale, or `None` for an empty table.
    pub fn next_refresh(&self, interval: Duration) -> Option<Instant> {
        let nearest = self.nearest_bucket()?;
        self.buckets[nearest - self.first..]
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
        if self.first + self.buckets.len() != NUM_BUCKETS {
            return Err(format!(
                "{} buckets allocated from {}",
                self.buckets.len(),
                self.first
            ));
        }
        for (j, bucket) in self.buckets.iter().enumerate() {
            let i = self.first + j;
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
                if !id_puzzle_ok(&e.contact.id, self.id_difficulty) {
                    return Err(format!("{:?} fails the id puzzle", e.contact.id));
                }
                let subnet = subnet_of(&e.contact.addr);
                if e.subnet != subnet {
                    return Err(format!("{:?} has a stale subnet", e.contact.id));
                }
                let same = bucket
                    .entries
                    .iter()
                    .filter(|o| subnet.is_some() && subnet_of(&o.contact.addr) == subnet)
                    .count();
                if self.max_per_subnet > 0 && same > self.max_per_subnet {
                    return Err(format!("bucket {i} holds {same} contacts of {subnet:?}"));
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
        Contact::unkeyed(id, SocketAddr::from(([10, 0, 0, 1], port)))
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
    fn a_failing_contact_without_replacement_stays_until_it_is_stale() {
        let now = epoch();
        let mut t = RoutingTable::new(Key([0; 32]), 4, now);
        let id = id_in(50, 0);
        let _ = t.offer(now, contact(id, 1), Seen::Direct);
        // A partition: many failures, nobody to replace it: it stays, to be asked again.
        for _ in 0..10 {
            assert_eq!(t.record_failure(now + Duration::from_secs(30), &id), None);
        }
        assert!(t.contains(&id));
        // Not heard from for STALE_AFTER: the next failure removes it.
        let later = now + STALE_AFTER;
        assert_eq!(t.record_failure(later, &id).map(|e| e.removed.id), Some(id));
        assert!(!t.contains(&id));
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

    fn at(id: Key, ip: [u8; 4]) -> Contact {
        Contact::unkeyed(id, SocketAddr::from((ip, 4000)))
    }

    /// An id that solves the puzzle at `difficulty` iff `solves`, in bucket 255 of the zero id.
    fn puzzle_id(difficulty: u8, solves: bool, skip: usize) -> Key {
        (0u32..)
            .map(|n| {
                let mut raw = [0x80u8; 32];
                raw[28..].copy_from_slice(&n.to_be_bytes());
                Key(raw)
            })
            .filter(|id| id_puzzle_ok(id, difficulty) == solves)
            .nth(skip)
            .unwrap()
    }

    #[test]
    fn should_not_add_an_id_failing_the_puzzle() {
        let now = epoch();
        let mut t = RoutingTable::new(Key([0; 32]), 1, now).with_rules(6, 0);
        let bad = puzzle_id(6, false, 0);
        for seen in [Seen::Direct, Seen::Indirect] {
            assert_eq!(
                t.offer(now, contact(bad, 1), seen),
                Insert::Rejected(Reject::IdPuzzle)
            );
        }
        assert!(t.is_empty());
        let good = puzzle_id(6, true, 0);
        assert_eq!(
            t.offer(now, contact(good, 1), Seen::Direct),
            Insert::Inserted
        );
        // Not even the replacement cache of a full bucket takes a failing id: after the
        // entry's eviction nobody is promoted.
        let later = now + PING_IF_SILENT_FOR;
        assert_eq!(
            t.offer(later, contact(bad, 1), Seen::Direct),
            Insert::Rejected(Reject::IdPuzzle)
        );
        let evicted = t.ping_failed(later, &good).unwrap();
        assert_eq!(evicted.promoted, None);
        t.check_invariants().unwrap();
    }

    #[test]
    fn at_most_max_per_subnet_contacts_of_one_24_per_bucket() {
        let now = epoch();
        let mut t = RoutingTable::new(Key([0; 32]), 20, now).with_rules(0, 2);
        for n in 0..5 {
            let got = t.offer(now, at(id_in(255, n), [198, 51, 100, n]), Seen::Direct);
            let want = if n < 2 {
                Insert::Inserted
            } else {
                Insert::Rejected(Reject::SubnetFull)
            };
            assert_eq!(got, want, "contact {n}");
        }
        // Another /24, and the same /24 in another bucket, still have room.
        assert_eq!(
            t.offer(now, at(id_in(255, 9), [198, 51, 101, 1]), Seen::Direct),
            Insert::Inserted
        );
        assert_eq!(
            t.offer(now, at(id_in(254, 1), [198, 51, 100, 7]), Seen::Indirect),
            Insert::Inserted
        );
        t.check_invariants().unwrap();
    }

    #[test]
    fn loopback_is_exempt_from_the_subnet_limit() {
        let now = epoch();
        let mut t = RoutingTable::new(Key([0; 32]), 20, now).with_rules(0, 1);
        for n in 0..10 {
            let ip = if n % 2 == 0 {
                [127, 0, 0, 1]
            } else {
                [127, 5, 6, n]
            };
            assert_eq!(
                t.offer(now, at(id_in(255, n), ip), Seen::Direct),
                Insert::Inserted
            );
        }
        let v6 = Contact::unkeyed(id_in(255, 20), "[::1]:4000".parse().unwrap());
        assert_eq!(t.offer(now, v6, Seen::Direct), Insert::Inserted);
    }

    #[test]
    fn ipv6_subnet_is_the_first_48_bits_and_mapped_ipv4_counts_as_ipv4() {
        let a: SocketAddr = "[2001:db8:1:ffff::1]:1".parse().unwrap();
        let b: SocketAddr = "[2001:db8:1:0::2]:1".parse().unwrap();
        let c: SocketAddr = "[2001:db8:2::1]:1".parse().unwrap();
        assert_eq!(subnet_of(&a), subnet_of(&b));
        assert_ne!(subnet_of(&a), subnet_of(&c));
        let mapped: SocketAddr = "[::ffff:198.51.100.9]:1".parse().unwrap();
        let plain: SocketAddr = "198.51.100.200:1".parse().unwrap();
        assert_eq!(subnet_of(&mapped), subnet_of(&plain));
        assert_eq!(subnet_of(&"[::ffff:127.0.0.1]:1".parse().unwrap()), None);
    }

    #[test]
    fn entry_is_not_readdressed_into_a_full_subnet() {
        let now = epoch();
        let mut t = RoutingTable::new(Key([0; 32]), 20, now).with_rules(0, 1);
        let _ = t.offer(now, at(id_in(255, 0), [198, 51, 100, 1]), Seen::Direct);
        let _ = t.offer(now, at(id_in(255, 1), [203, 0, 113, 1]), Seen::Direct);
        // Contact 1 claims an address in contact 0's subnet: it keeps its old one.
        let _ = t.offer(now, at(id_in(255, 1), [198, 51, 100, 2]), Seen::Direct);
        assert!(t.iter().any(|c| *c == at(id_in(255, 1), [203, 0, 113, 1])));
        t.check_invariants().unwrap();
    }

    #[test]
    fn promotion_skips_replacements_whose_subnet_is_full() {
        let start = epoch();
        let mut t = RoutingTable::new(Key([0; 32]), 2, start).with_rules(0, 1);
        let _ = t.offer(start, at(id_in(255, 0), [198, 51, 100, 1]), Seen::Direct);
        let _ = t.offer(start, at(id_in(255, 1), [203, 0, 113, 1]), Seen::Direct);
        let later = start + PING_IF_SILENT_FOR;
        // Two newcomers wait: one from contact 1's subnet (cached, newest) and one from
        // a fresh subnet.
        let _ = t.offer(later, at(id_in(255, 2), [192, 0, 2, 1]), Seen::Direct);
        let _ = t.offer(later, at(id_in(255, 3), [203, 0, 113, 9]), Seen::Direct);
        let evicted = t.ping_failed(later, &id_in(255, 0)).unwrap();
        assert_eq!(evicted.promoted.map(|c| c.id), Some(id_in(255, 2)));
        t.check_invariants().unwrap();
    }

    proptest! {
        #[test]
        fn buckets_stay_sets_of_at_most_k_in_the_right_place(
            local in any::<[u8; 32]>(),
            ops in proptest::collection::vec((any::<[u8; 32]>(), 0u8..4, any::<bool>(), 0u8..3), 1..300),
            max_per_subnet in 0usize..3,
            id_difficulty in 0u8..3,
        ) {
            let start = epoch();
            let local = Key(local);
            let mut t = RoutingTable::new(local, 4, start).with_rules(id_difficulty, max_per_subnet);
            let mut known: Vec<Key> = vec![local];
            for (step, (raw, shared_prefix, direct, action)) in ops.into_iter().enumerate() {
                let now = start + Duration::from_secs(step as u64 * 7);
                // Bias ids towards few buckets (and sometimes reuse one) so buckets fill.
                let mut raw = raw;
                raw[..usize::from(shared_prefix)].copy_from_slice(&local.0[..usize::from(shared_prefix)]);
                let id = if action == 2 { known[raw[31] as usize % known.len()] } else { Key(raw) };
                known.push(id);
                // Few subnets, so the subnet limit bites.
                let c = at(id, [10, 0, raw[30] % 3, raw[29]]);
                match action {
                    0 | 2 => {
                        let seen = if direct { Seen::Direct } else { Seen::Indirect };
                        if let Insert::Pending { oldest } = t.offer(now, c, seen) {
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

        #[test]
        fn closest_equals_a_full_sort(
            local in any::<[u8; 32]>(),
            ids in proptest::collection::vec((any::<[u8; 32]>(), 0u8..24), 0..200),
            target in any::<[u8; 32]>(),
            target_prefix in 0u8..32,
            count in 0usize..40,
            exclude in any::<Option<proptest::sample::Index>>(),
        ) {
            let now = epoch();
            let local = Key(local);
            let mut t = RoutingTable::new(local, 8, now);
            for (raw, shared_prefix) in ids {
                // Spread the contacts over many buckets, near ones included.
                let mut raw = raw;
                raw[..usize::from(shared_prefix / 8)]
                    .copy_from_slice(&local.0[..usize::from(shared_prefix / 8)]);
                let _ = t.offer(now, contact(Key(raw), 1), Seen::Direct);
            }
            let mut target = target;
            target[..usize::from(target_prefix)].copy_from_slice(&local.0[..usize::from(target_prefix)]);
            let target = Key(target);
            let all: Vec<Contact> = t.iter().copied().collect();
            let exclude = exclude.filter(|_| !all.is_empty()).map(|i| all[i.index(all.len())].id);
            let mut expect: Vec<Contact> = all
                .iter()
                .filter(|c| Some(c.id) != exclude)
                .copied()
                .collect();
            expect.sort_by_key(|c| target.distance(&c.id));
            expect.truncate(count);
            prop_assert_eq!(t.closest(&target, count, exclude.as_ref()), expect);
        }

        #[test]
        fn learn_changes_the_table_exactly_as_an_indirect_offer(
            local in any::<[u8; 32]>(),
            ops in proptest::collection::vec((any::<[u8; 32]>(), 0u8..3, any::<bool>()), 1..200),
        ) {
            let start = epoch();
            let local = Key(local);
            let mut a = RoutingTable::new(local, 3, start).with_rules(0, 2);
            let mut b = a.clone();
            for (step, (raw, shared_prefix, direct)) in ops.into_iter().enumerate() {
                let now = start + Duration::from_secs(step as u64 * 13);
                let mut raw = raw;
                raw[..usize::from(shared_prefix)].copy_from_slice(&local.0[..usize::from(shared_prefix)]);
                let c = at(Key(raw), [10, 0, raw[30] % 4, raw[29]]);
                if direct {
                    prop_assert_eq!(a.offer(now, c, Seen::Direct), b.offer(now, c, Seen::Direct));
                } else {
                    let _ = a.offer(now, c, Seen::Indirect);
                    b.learn(now, c);
                }
                prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
            }
        }

        #[test]
        fn sort_key_orders_like_distance(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), c in any::<[u8; 32]>(), prefix in 0usize..33) {
            let (a, mut b, c) = (Key(a), b, Key(c));
            b[..prefix].copy_from_slice(&a.0[..prefix]);
            let b = Key(b);
            prop_assert_eq!(SortKey::between(&a, &b).bucket_index(), a.distance(&b).bucket_index());
            prop_assert_eq!(
                SortKey::between(&a, &b).cmp(&SortKey::between(&a, &c)),
                a.distance(&b).cmp(&a.distance(&c))
            );
        }
    }

    #[test]
    fn buckets_are_allocated_only_down_to_the_nearest_used() {
        let now = epoch();
        let mut t = RoutingTable::new(Key([0; 32]), 20, now);
        assert_eq!(t.buckets.len(), 0);
        assert_eq!(t.closest(&Key([1; 32]), 20, None), vec![]);
        let _ = t.offer(now, contact(id_in(250, 0), 1), Seen::Direct);
        assert_eq!(t.buckets.len(), 6);
        assert_eq!(t.nearest_bucket(), Some(250));
        // A refresh is due for every bucket from the nearest non-empty one, allocated or
        // not, at the same time as with all 256 allocated.
        let later = now + Duration::from_secs(3600);
        assert_eq!(
            t.stale_buckets(later, Duration::from_secs(3600)),
            (250..256).collect::<Vec<_>>()
        );
        assert_eq!(t.next_refresh(Duration::from_secs(3600)), Some(later));
        t.touch(&id_in(240, 0), later);
        assert_eq!(t.buckets.len(), 16);
        assert_eq!(t.bucket_contacts(240).count(), 0);
        assert_eq!(t.bucket_contacts(7).count(), 0);
        assert!(!t.contains(&id_in(3, 0)));
        assert_eq!(t.record_failure(later, &id_in(3, 0)), None);
        assert_eq!(t.ping_failed(later, &id_in(3, 0)), None);
        assert_eq!(t.buckets.len(), 16);
        t.check_invariants().unwrap();
    }
}
