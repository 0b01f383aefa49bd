//! Records held by this node, with their expiry and republish schedules.
//!
//! # Rules
//! - A record lives until its expiry; an expired record is never returned and is dropped
//!   on read and by [`RecordStore::expire`].
//! - Newest wins: a plain record replaces the held one only if its version is at least as
//!   new. An equal version is the same record again (idempotent): the value is kept and
//!   the expiry becomes the later of the two.
//! - Signed records ([`SignedRecord`], checked by the caller before they get here): one
//!   replaces the held one only with a higher sequence number; the same sequence number
//!   with identical bytes is idempotent, with different bytes it is refused (first come,
//!   first kept). A signed record replaces a plain one under its key (the signature proves
//!   the key is its owner's), and a plain record never replaces a signed one
//!   ([`StoreOutcome::RefusedSigned`]).
//! - The store is bounded twice: at most `max_records` records and at most `max_bytes`
//!   bytes ([`Self::size_of`]: value, signature fields and a fixed [`RECORD_OVERHEAD`]).
//! - **Fair shares.** A record stored for a remote node ([`Origin::Peer`]) is charged to
//!   that node's share and its subnet's (/24, /48; loopback exempt): a share is
//!   1/[`PEER_SHARE_DIVISOR`] of each bound for one node id, 1/[`SUBNET_SHARE_DIVISOR`]
//!   for one subnet. Shares only matter once the store is full; an empty store takes
//!   what comes. When a newcomer does not fit, records are evicted (with a warning in the
//!   log) in this order, and if that is not enough the newcomer is refused and nothing is
//!   evicted:
//!   1. a newcomer whose sender (or subnet) would be over its share may displace only
//!      that sender's (or subnet's) own records, soonest-expiring first;
//!   2. otherwise records of senders and subnets over their share go first, the most
//!      over first, each soonest-expiring first, until they are within their share;
//!   3. then remote records expiring before the newcomer, soonest first — for this
//!      node's own PUT ([`Record::publisher`]), any remote record: a remote record never
//!      outranks this node's own by its TTL;
//!   4. this node's own records are displaced only by its own newer PUTs expiring later.
//! - Every record is due for republishing `republish_interval` after it was last stored;
//!   a copy received from a peer pushes a replica's republish back, since that peer just
//!   did the work (the Kademlia paper's optimisation). The original publisher's schedule
//!   is never pushed back.
//!
//! Expiries and republish times sit in ordered sets, so the next deadline is found in
//! O(log n) and no timer ever scans every record.
//!
//! Every change to what is held is also written to a journal of [`StoreChange`]s, which
//! the owner drains ([`RecordStore::take_change`]) to keep a durable copy or a read path
//! in step: the store decides, copies follow.

use crate::routing::Subnet;
use crate::timers::after;
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};
use voidmesh_proto::signed::SIGNED_RECORD_FIXED_LEN;
use voidmesh_proto::{Key, NodeId, SignedRecord, Version};

/// One remote node may hold 1/this of each bound of a full store (see the module doc).
pub const PEER_SHARE_DIVISOR: usize = 16;

/// One subnet may hold 1/this of each bound of a full store.
pub const SUBNET_SHARE_DIVISOR: usize = 8;

/// Where a record offered to the store comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This node: its own PUT, a copy restored from disk, its own republish.
    Local,
    /// A STORE from the remote node `id` at an address in `subnet` (`None`: exempt,
    /// e.g. loopback); charged to their shares.
    Peer(NodeId, Option<Subnet>),
    /// From the network without one sender to charge (a read repair of the local copy).
    Network,
}

impl Origin {
    fn is_remote(self) -> bool {
        !matches!(self, Origin::Local)
    }
}

/// What a sender (or a subnet) holds in the store.
#[derive(Debug, Clone, Default)]
struct Share {
    count: usize,
    bytes: usize,
    /// `(expiry, key)` of its records, soonest first.
    expiries: BTreeSet<(Instant, Key)>,
}

/// Bytes every record is charged besides its value (key, bookkeeping, index entries).
pub const RECORD_OVERHEAD: usize = 128;

/// One stored value and what we need to keep it alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The value.
    pub value: Bytes,
    /// Its version; a STORE with an older one is refused. For a signed record, its
    /// sequence number.
    pub version: Version,
    /// When it is dropped.
    pub expires: Instant,
    /// How many nodes it should live on; used when republishing.
    pub replication: u8,
    /// True if this node's own [`put`](crate::Kademlia::put) created it: the publisher
    /// republishes with a fresh lookup, replicas only to the closest nodes they know.
    pub publisher: bool,
}

/// A record's stored form, with its republish time.
#[derive(Debug, Clone)]
struct Held {
    /// The record itself (for a signed record: its value, sequence number and local expiry).
    record: Record,
    /// The signed record, for a key that holds one.
    signed: Option<SignedRecord>,
    /// When it is next republished; its entry in [`RecordStore::republish`].
    republish_at: Instant,
    /// The remote node it is held for, and its subnet (see [`Origin::Peer`]).
    owner: Option<(NodeId, Option<Subnet>)>,
}

/// One change to what the store holds, in the order it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreChange {
    /// `key` now holds a record that differs from before: new, a newer version, or the
    /// same record with a later expiry or the publisher flag set. Read it back (e.g.
    /// [`RecordStore::peek`]) for its current form.
    Held(Key),
    /// `key` holds nothing any more.
    Removed(Key, Removal),
}

impl StoreChange {
    /// The key the change is about.
    pub fn key(&self) -> Key {
        match self {
            StoreChange::Held(key) | StoreChange::Removed(key, _) => *key,
        }
    }
}

/// Why a record left the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Its expiry passed.
    Expired,
    /// It was evicted to make room for a record expiring later.
    Evicted,
}

/// What happened to a record offered to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// The record is new, or newer than the one held, and replaced it.
    Stored,
    /// The same version was already held; its expiry was extended if later.
    Unchanged,
    /// A newer version (or, for a signed record, a different record with the same
    /// sequence number) is held.
    RefusedOlder,
    /// The store is full (records or bytes) and every record that would have to go
    /// outlives this one.
    RefusedFull,
    /// The record has already expired (a TTL of zero).
    RefusedExpired,
    /// A plain record offered for a key that holds a signed record.
    RefusedSigned,
    /// A signed record that does not check out (signature, key), or that could not be
    /// checked because the node has no Unix time yet.
    RefusedInvalid,
}

impl StoreOutcome {
    /// True if the record is held after the offer.
    pub fn is_held(self) -> bool {
        matches!(self, StoreOutcome::Stored | StoreOutcome::Unchanged)
    }
}

/// The records of one node.
#[derive(Debug, Clone)]
pub struct RecordStore {
    /// Records by key.
    records: HashMap<Key, Held>,
    /// `(expiry, key)` of every record: the first is the next to expire, and the first
    /// evicted when the store is full.
    expiries: BTreeSet<(Instant, Key)>,
    /// `(republish time, key)` of every record.
    republish: BTreeSet<(Instant, Key)>,
    /// Most records held.
    max_records: usize,
    /// Most bytes held (see [`Self::size_of`]).
    max_bytes: usize,
    /// Bytes held now.
    bytes: usize,
    /// Time between republishes of one record.
    republish_interval: Duration,
    /// Changes not yet taken by the owner, oldest first.
    changes: VecDeque<StoreChange>,
    /// What each remote sender holds.
    by_peer: HashMap<NodeId, Share>,
    /// What each subnet's senders hold.
    by_subnet: HashMap<Subnet, Share>,
}

/// The victims chosen so far while making room, and the totals once they are gone.
struct Room {
    count: usize,
    bytes: usize,
    victims: Vec<Key>,
    /// Victims, and the key being replaced (never a victim).
    chosen: HashSet<Key>,
}

impl Room {
    fn fits(&self, store: &RecordStore) -> bool {
        self.count <= store.max_records && self.bytes <= store.max_bytes
    }

    /// Chooses `victim` unless chosen already; the bytes it frees.
    fn take(&mut self, store: &RecordStore, victim: Key) -> Option<usize> {
        if !self.chosen.insert(victim) {
            return None;
        }
        let held = store.records.get(&victim)?;
        let size = RecordStore::size_of(&held.record, held.signed.as_ref());
        self.count -= 1;
        self.bytes -= size;
        self.victims.push(victim);
        Some(size)
    }
}

/// How a newcomer compares with the record held under its key.
enum Verdict {
    /// It replaces the held record (or there is none).
    Replace,
    /// It is the held record again.
    Same,
    /// It is refused.
    Refuse(StoreOutcome),
}

impl RecordStore {
    /// An empty store of at most `max_records` records and no bound on bytes (see
    /// [`with_max_bytes`](Self::with_max_bytes)).
    pub fn new(max_records: usize, republish_interval: Duration) -> Self {
        RecordStore {
            records: HashMap::new(),
            expiries: BTreeSet::new(),
            republish: BTreeSet::new(),
            max_records,
            max_bytes: usize::MAX,
            bytes: 0,
            republish_interval,
            changes: VecDeque::new(),
            by_peer: HashMap::new(),
            by_subnet: HashMap::new(),
        }
    }

    /// Bounds the bytes held (see [`Self::size_of`]).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Number of records held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes held, as counted against the byte bound.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What one record is charged against the byte bound: its value, the signature
    /// fields of a signed record, and [`RECORD_OVERHEAD`].
    pub fn size_of(record: &Record, signed: Option<&SignedRecord>) -> usize {
        let signed = signed.map_or(0, |s| SIGNED_RECORD_FIXED_LEN + s.salt.len());
        RECORD_OVERHEAD + record.value.len() + signed
    }

    /// The unexpired record under `key` (plain or signed); an expired one is dropped.
    pub fn get(&mut self, now: Instant, key: &Key) -> Option<&Record> {
        self.get_held(now, key).map(|(record, _)| record)
    }

    /// The unexpired signed record under `key`, if the key holds one.
    pub fn get_signed(&mut self, now: Instant, key: &Key) -> Option<&SignedRecord> {
        self.get_held(now, key).and_then(|(_, signed)| signed)
    }

    /// The unexpired record under `key` with its signed form, if it has one; an expired
    /// record is dropped.
    pub fn get_held(
        &mut self,
        now: Instant,
        key: &Key,
    ) -> Option<(&Record, Option<&SignedRecord>)> {
        let expired = self.records.get(key)?.record.expires <= now;
        if expired {
            self.remove(key);
            self.changes
                .push_back(StoreChange::Removed(*key, Removal::Expired));
            return None;
        }
        self.records
            .get(key)
            .map(|h| (&h.record, h.signed.as_ref()))
    }

    /// The record under `key` with its signed form, expired or not (nothing is dropped).
    pub fn held(&self, key: &Key) -> Option<(&Record, Option<&SignedRecord>)> {
        self.records
            .get(key)
            .map(|h| (&h.record, h.signed.as_ref()))
    }

    /// Like [`get_held`](Self::get_held) without dropping an expired record (it is just
    /// not returned).
    pub fn peek(&self, now: Instant, key: &Key) -> Option<(&Record, Option<&SignedRecord>)> {
        self.records
            .get(key)
            .filter(|h| h.record.expires > now)
            .map(|h| (&h.record, h.signed.as_ref()))
    }

    /// Offers a plain record. `from_peer` is true for a STORE received from another node
    /// (it pushes a replica's republish back); see the module doc for the rules.
    pub fn put(&mut self, now: Instant, key: Key, record: Record, origin: Origin) -> StoreOutcome {
        self.offer(now, key, record, None, origin)
    }

    /// Offers a signed record, already verified by the caller (signature, key, expiry).
    /// `record` is its local form: the value, `Version(seq)`, the local expiry, the
    /// replication hint and the publisher flag.
    pub fn put_signed(
        &mut self,
        now: Instant,
        signed: SignedRecord,
        record: Record,
        origin: Origin,
    ) -> StoreOutcome {
        let key = signed.key();
        self.offer(now, key, record, Some(signed), origin)
    }

    fn verdict(held: &Held, record: &Record, signed: Option<&SignedRecord>) -> Verdict {
        match (&held.signed, signed) {
            (Some(_), None) => Verdict::Refuse(StoreOutcome::RefusedSigned),
            (None, Some(_)) => Verdict::Replace,
            (Some(old), Some(new)) => {
                if new.seq > old.seq {
                    Verdict::Replace
                } else if new.seq == old.seq && new == old {
                    Verdict::Same
                } else {
                    Verdict::Refuse(StoreOutcome::RefusedOlder)
                }
            }
            (None, None) => {
                if record.version > held.record.version {
                    Verdict::Replace
                } else if record.version == held.record.version {
                    Verdict::Same
                } else {
                    Verdict::Refuse(StoreOutcome::RefusedOlder)
                }
            }
        }
    }

    fn offer(
        &mut self,
        now: Instant,
        key: Key,
        record: Record,
        signed: Option<SignedRecord>,
        origin: Origin,
    ) -> StoreOutcome {
        let from_peer = origin.is_remote();
        let owner = match origin {
            Origin::Peer(id, subnet) if !record.publisher => Some((id, subnet)),
            _ => None,
        };
        if record.expires <= now {
            return StoreOutcome::RefusedExpired;
        }
        let republish_at = after(now, self.republish_interval);
        let verdict = match self.records.get(&key) {
            Some(held) => Self::verdict(held, &record, signed.as_ref()),
            None => Verdict::Replace,
        };
        match verdict {
            Verdict::Refuse(outcome) => outcome,
            Verdict::Same => {
                let Some(held) = self.records.get_mut(&key) else {
                    return StoreOutcome::RefusedFull;
                };
                let old_expiry = held.record.expires;
                let old_republish = held.republish_at;
                let kept_owner = held.owner;
                let old_publisher = held.record.publisher;
                held.record.expires = held.record.expires.max(record.expires);
                held.record.publisher |= record.publisher;
                if held.record.expires != old_expiry || held.record.publisher != old_publisher {
                    self.changes.push_back(StoreChange::Held(key));
                }
                if from_peer && !held.record.publisher {
                    held.republish_at = republish_at;
                }
                let (new_expiry, new_republish) = (held.record.expires, held.republish_at);
                if new_expiry != old_expiry {
                    self.expiries.remove(&(old_expiry, key));
                    self.expiries.insert((new_expiry, key));
                    self.for_each_share(kept_owner, |share| {
                        share.expiries.remove(&(old_expiry, key));
                        share.expiries.insert((new_expiry, key));
                    });
                }
                if new_republish != old_republish {
                    self.republish.remove(&(old_republish, key));
                    self.republish.insert((new_republish, key));
                }
                StoreOutcome::Unchanged
            }
            Verdict::Replace => {
                let size = Self::size_of(&record, signed.as_ref());
                if !self.make_room(&key, size, record.expires, record.publisher, owner) {
                    tracing::warn!(?key, size, "record store full; refused a record expiring sooner than those it would displace");
                    return StoreOutcome::RefusedFull;
                }
                self.remove(&key);
                self.bytes += size;
                self.expiries.insert((record.expires, key));
                self.republish.insert((republish_at, key));
                let expires = record.expires;
                self.for_each_share(owner, |share| {
                    share.count += 1;
                    share.bytes += size;
                    share.expiries.insert((expires, key));
                });
                self.records.insert(
                    key,
                    Held {
                        record,
                        signed,
                        republish_at,
                        owner,
                    },
                );
                self.changes.push_back(StoreChange::Held(key));
                StoreOutcome::Stored
            }
        }
    }

    /// Runs `f` on the shares `owner` is charged to (its node's, and its subnet's).
    fn for_each_share(
        &mut self,
        owner: Option<(NodeId, Option<Subnet>)>,
        mut f: impl FnMut(&mut Share),
    ) {
        let Some((id, subnet)) = owner else {
            return;
        };
        f(self.by_peer.entry(id).or_default());
        if let Some(subnet) = subnet {
            f(self.by_subnet.entry(subnet).or_default());
        }
    }

    /// The share of one node (`divisor` = [`PEER_SHARE_DIVISOR`]) or one subnet, as
    /// `(records, bytes)`.
    fn share_limit(&self, divisor: usize) -> (usize, usize) {
        (
            (self.max_records / divisor).max(1),
            (self.max_bytes / divisor).max(1),
        )
    }

    /// Makes room for a record of `size` bytes expiring at `expires` under `key` (which
    /// replaces whatever `key` holds), by the rules of the module doc; `local` for this
    /// node's own PUT, `owner` for a remote sender. Returns false, evicting nothing, if
    /// that is not enough.
    fn make_room(
        &mut self,
        key: &Key,
        size: usize,
        expires: Instant,
        local: bool,
        owner: Option<(NodeId, Option<Subnet>)>,
    ) -> bool {
        let mut room = Room {
            count: self.records.len() + 1,
            bytes: self.bytes.saturating_add(size),
            victims: Vec::new(),
            chosen: HashSet::new(),
        };
        if let Some(held) = self.records.get(key) {
            room.count -= 1;
            room.bytes -= Self::size_of(&held.record, held.signed.as_ref());
            room.chosen.insert(*key);
        }
        if room.fits(self) {
            return true;
        }
        // 1. A sender over its share displaces only its own records.
        if let Some((id, subnet)) = owner {
            let over = |share: Option<&Share>, (count, bytes): (usize, usize)| {
                share.is_some_and(|s| s.count + 1 > count || s.bytes + size > bytes)
            };
            let peer_share = self.share_limit(PEER_SHARE_DIVISOR);
            let subnet_share = self.share_limit(SUBNET_SHARE_DIVISOR);
            let own = if over(self.by_peer.get(&id), peer_share) {
                self.by_peer.get(&id)
            } else {
                subnet
                    .and_then(|n| self.by_subnet.get(&n))
                    .filter(|share| over(Some(share), subnet_share))
            };
            if let Some(own) = own {
                for (_, victim) in &own.expiries {
                    if room.fits(self) {
                        break;
                    }
                    room.take(self, *victim);
                }
                return self.commit(room, key);
            }
        }
        // 2. Senders and subnets over their share give way first.
        self.evict_over_share(&mut room, PEER_SHARE_DIVISOR, |s| &s.by_peer);
        self.evict_over_share(&mut room, SUBNET_SHARE_DIVISOR, |s| &s.by_subnet);
        // 3. Remote records expiring before the newcomer (any, for an own PUT).
        for (when, victim) in &self.expiries {
            if room.fits(self) || (!local && *when >= expires) {
                break;
            }
            if self
                .records
                .get(victim)
                .is_some_and(|h| !h.record.publisher)
            {
                room.take(self, *victim);
            }
        }
        // 4. Own records, for an own newer PUT expiring later.
        if local {
            for (when, victim) in &self.expiries {
                if room.fits(self) || *when >= expires {
                    break;
                }
                room.take(self, *victim);
            }
        }
        self.commit(room, key)
    }

    /// Step 2 of the eviction order for one kind of share (nodes or subnets).
    fn evict_over_share<S: std::hash::Hash + Eq + Copy>(
        &self,
        room: &mut Room,
        divisor: usize,
        shares: impl Fn(&Self) -> &HashMap<S, Share>,
    ) {
        let (max_count, max_bytes) = self.share_limit(divisor);
        // The most over their share first.
        let mut over: Vec<(usize, S)> = shares(self)
            .iter()
            .filter(|(_, s)| s.count > max_count || s.bytes > max_bytes)
            .map(|(k, s)| {
                (
                    s.bytes.saturating_sub(max_bytes) + s.count.saturating_sub(max_count),
                    *k,
                )
            })
            .collect();
        over.sort_by_key(|(overage, _)| std::cmp::Reverse(*overage));
        for (_, who) in over {
            let Some(share) = shares(self).get(&who) else {
                continue;
            };
            let (mut count, mut bytes) = (share.count, share.bytes);
            for (_, victim) in &share.expiries {
                if room.fits(self) || (count <= max_count && bytes <= max_bytes) {
                    break;
                }
                if let Some(freed) = room.take(self, *victim) {
                    count -= 1;
                    bytes -= freed;
                }
            }
        }
    }

    /// Evicts the victims chosen if they make room; whether the newcomer fits.
    fn commit(&mut self, room: Room, key: &Key) -> bool {
        if !room.fits(self) {
            return false;
        }
        for victim in room.victims {
            tracing::warn!(evicted = ?victim, for_key = ?key, "record store full; evicted a record to make room");
            self.remove(&victim);
            self.changes
                .push_back(StoreChange::Removed(victim, Removal::Evicted));
        }
        true
    }

    fn remove(&mut self, key: &Key) -> Option<Record> {
        let held = self.records.remove(key)?;
        let size = Self::size_of(&held.record, held.signed.as_ref());
        self.bytes -= size;
        self.expiries.remove(&(held.record.expires, *key));
        self.republish.remove(&(held.republish_at, *key));
        let expires = held.record.expires;
        self.for_each_share(held.owner, |share| {
            share.count -= 1;
            share.bytes -= size;
            share.expiries.remove(&(expires, *key));
        });
        if let Some((id, subnet)) = held.owner {
            if self.by_peer.get(&id).is_some_and(|s| s.count == 0) {
                self.by_peer.remove(&id);
            }
            if let Some(n) = subnet {
                if self.by_subnet.get(&n).is_some_and(|s| s.count == 0) {
                    self.by_subnet.remove(&n);
                }
            }
        }
        Some(held.record)
    }

    /// Drops every record expired at `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        while let Some(&(when, key)) = self.expiries.first() {
            if when > now {
                break;
            }
            self.remove(&key);
            self.changes
                .push_back(StoreChange::Removed(key, Removal::Expired));
            dropped += 1;
        }
        dropped
    }

    /// The oldest change not taken yet (see [`StoreChange`]).
    pub fn take_change(&mut self) -> Option<StoreChange> {
        self.changes.pop_front()
    }

    /// When the next record expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.first().map(|(t, _)| *t)
    }

    /// When the next record is due for republishing.
    pub fn next_republish(&self) -> Option<Instant> {
        self.republish.first().map(|(t, _)| *t)
    }

    /// The records due for republishing at `now` (unexpired ones only), each with its
    /// signed form if it has one, each rescheduled one interval later.
    pub fn take_due_republish(&mut self, now: Instant) -> Vec<(Key, Record, Option<SignedRecord>)> {
        let mut due = Vec::new();
        while let Some(&(when, key)) = self.republish.first() {
            if when > now {
                break;
            }
            self.republish.remove(&(when, key));
            let Some(held) = self.records.get_mut(&key) else {
                continue;
            };
            held.republish_at = after(now, self.republish_interval);
            self.republish.insert((held.republish_at, key));
            if held.record.expires > now {
                due.push((key, held.record.clone(), held.signed.clone()));
            }
        }
        due
    }

    /// Every plain record held, unexpired or not yet swept.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Record)> + '_ {
        self.records
            .iter()
            .filter(|(_, h)| h.signed.is_none())
            .map(|(k, h)| (k, &h.record))
    }

    /// Checks the store's invariants; used by the tests.
    #[cfg(test)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let bytes: usize = self
            .records
            .values()
            .map(|h| Self::size_of(&h.record, h.signed.as_ref()))
            .sum();
        if bytes != self.bytes {
            return Err(format!(
                "bytes {} but records add up to {bytes}",
                self.bytes
            ));
        }
        if self.records.len() > self.max_records || self.bytes > self.max_bytes {
            return Err(format!(
                "{} records, {} bytes: over the bounds",
                self.records.len(),
                self.bytes
            ));
        }
        if self.expiries.len() != self.records.len() || self.republish.len() != self.records.len() {
            return Err("index sets out of step with the records".into());
        }
        for (key, held) in &self.records {
            if !self.expiries.contains(&(held.record.expires, *key))
                || !self.republish.contains(&(held.republish_at, *key))
            {
                return Err(format!("{key:?} missing from an index"));
            }
            if let Some(signed) = &held.signed {
                if signed.key() != *key {
                    return Err(format!("signed record under the wrong key {key:?}"));
                }
            }
        }
        Ok(())
    }

    /// Every signed record held with its local form, unexpired or not yet swept.
    pub fn iter_signed(&self) -> impl Iterator<Item = (&SignedRecord, &Record)> + '_ {
        self.records
            .values()
            .filter_map(|h| h.signed.as_ref().map(|s| (s, &h.record)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::epoch;
    use proptest::prelude::*;

    fn record(value: &'static [u8], version: u64, expires: Instant) -> Record {
        Record {
            value: Bytes::from_static(value),
            version: Version(version),
            expires,
            replication: 3,
            publisher: false,
        }
    }

    #[test]
    fn expired_record_is_not_returned() {
        let now = epoch();
        let mut s = RecordStore::new(10, Duration::from_secs(3600));
        let key = Key([1; 32]);
        let _ = s.put(
            now,
            key,
            record(b"v", 1, now + Duration::from_secs(5)),
            Origin::Network,
        );
        assert!(s.get(now + Duration::from_secs(4), &key).is_some());
        assert!(s.get(now + Duration::from_secs(5), &key).is_none());
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn expire_drops_only_expired_records() {
        let now = epoch();
        let mut s = RecordStore::new(10, Duration::from_secs(3600));
        for n in 1..=5u8 {
            let expires = now + Duration::from_secs(u64::from(n));
            let _ = s.put(now, Key([n; 32]), record(b"v", 1, expires), Origin::Network);
        }
        assert_eq!(s.expire(now + Duration::from_secs(3)), 3);
        assert_eq!(s.len(), 2);
        assert_eq!(s.next_expiry(), Some(now + Duration::from_secs(4)));
    }

    #[test]
    fn older_version_does_not_replace_newer() {
        let now = epoch();
        let later = now + Duration::from_secs(60);
        let mut s = RecordStore::new(10, Duration::from_secs(3600));
        let key = Key([1; 32]);
        assert_eq!(
            s.put(now, key, record(b"new", 5, later), Origin::Network),
            StoreOutcome::Stored
        );
        assert_eq!(
            s.put(now, key, record(b"old", 4, later), Origin::Network),
            StoreOutcome::RefusedOlder
        );
        assert_eq!(s.get(now, &key).unwrap().value, Bytes::from_static(b"new"));
        assert_eq!(
            s.put(now, key, record(b"newer", 6, later), Origin::Network),
            StoreOutcome::Stored
        );
        assert_eq!(
            s.get(now, &key).unwrap().value,
            Bytes::from_static(b"newer")
        );
    }

    #[test]
    fn equal_version_is_idempotent_and_keeps_later_expiry() {
        let now = epoch();
        let mut s = RecordStore::new(10, Duration::from_secs(3600));
        let key = Key([1; 32]);
        let far = now + Duration::from_secs(100);
        let _ = s.put(now, key, record(b"v", 5, far), Origin::Network);
        assert_eq!(
            s.put(
                now,
                key,
                record(b"v", 5, now + Duration::from_secs(10)),
                Origin::Network
            ),
            StoreOutcome::Unchanged
        );
        assert_eq!(s.get(now, &key).unwrap().expires, far);
        assert_eq!(s.next_expiry(), Some(far));
    }

    #[test]
    fn full_store_evicts_record_expiring_soonest() {
        let now = epoch();
        let mut s = RecordStore::new(2, Duration::from_secs(3600));
        let secs = |n| now + Duration::from_secs(n);
        let _ = s.put(
            now,
            Key([1; 32]),
            record(b"a", 1, secs(10)),
            Origin::Network,
        );
        let _ = s.put(
            now,
            Key([2; 32]),
            record(b"b", 1, secs(20)),
            Origin::Network,
        );
        // Expires before both: refused.
        assert_eq!(
            s.put(now, Key([3; 32]), record(b"c", 1, secs(5)), Origin::Network),
            StoreOutcome::RefusedFull
        );
        assert_eq!(
            s.put(
                now,
                Key([4; 32]),
                record(b"d", 1, secs(30)),
                Origin::Network
            ),
            StoreOutcome::Stored
        );
        assert!(s.get(now, &Key([1; 32])).is_none());
        assert!(s.get(now, &Key([2; 32])).is_some());
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn received_copy_postpones_replica_republish_but_not_publisher() {
        let now = epoch();
        let hour = Duration::from_secs(3600);
        let mut s = RecordStore::new(10, hour);
        let far = now + 10 * hour;
        let _ = s.put(now, Key([1; 32]), record(b"a", 1, far), Origin::Network);
        let mut own = record(b"b", 1, far);
        own.publisher = true;
        let _ = s.put(now, Key([2; 32]), own.clone(), Origin::Local);
        let half = now + hour / 2;
        let _ = s.put(half, Key([1; 32]), record(b"a", 1, far), Origin::Network);
        let _ = s.put(half, Key([2; 32]), record(b"b", 1, far), Origin::Network);
        let due: Vec<Key> = s
            .take_due_republish(now + hour)
            .into_iter()
            .map(|(k, _, _)| k)
            .collect();
        assert_eq!(due, vec![Key([2; 32])]);
        assert_eq!(s.next_republish(), Some(half + hour));
    }

    fn sized(len: usize, version: u64, expires: Instant) -> Record {
        Record {
            value: Bytes::from(vec![0; len]),
            ..record(b"", version, expires)
        }
    }

    #[test]
    fn byte_bound_evicts_the_records_expiring_soonest() {
        let now = epoch();
        let secs = |n| now + Duration::from_secs(n);
        let each = RECORD_OVERHEAD + 100;
        let mut s = RecordStore::new(100, Duration::from_secs(3600)).with_max_bytes(3 * each);
        for n in 1..=3u8 {
            let _ = s.put(
                now,
                Key([n; 32]),
                sized(100, 1, secs(u64::from(n) * 10)),
                Origin::Network,
            );
        }
        assert_eq!(s.bytes(), 3 * each);
        // Needs the room of two records: the two expiring soonest go.
        let big = sized(100 + each, 1, secs(100));
        assert_eq!(
            s.put(now, Key([9; 32]), big, Origin::Network),
            StoreOutcome::Stored
        );
        assert!(s.get(now, &Key([1; 32])).is_none());
        assert!(s.get(now, &Key([2; 32])).is_none());
        assert!(s.get(now, &Key([3; 32])).is_some());
        s.check_invariants().unwrap();
    }

    #[test]
    fn byte_bound_refuses_without_evicting_when_too_little_expires_sooner() {
        let now = epoch();
        let secs = |n| now + Duration::from_secs(n);
        let each = RECORD_OVERHEAD + 100;
        let mut s = RecordStore::new(100, Duration::from_secs(3600)).with_max_bytes(3 * each);
        for n in 1..=3u8 {
            let _ = s.put(
                now,
                Key([n; 32]),
                sized(100, 1, secs(u64::from(n) * 10)),
                Origin::Network,
            );
        }
        // Needs two records' room but only one expires before it: refused, all kept.
        let big = sized(100 + each, 1, secs(15));
        assert_eq!(
            s.put(now, Key([9; 32]), big, Origin::Network),
            StoreOutcome::RefusedFull
        );
        assert_eq!(s.len(), 3);
        // Larger than the whole bound: refused.
        let huge = sized(3 * each, 1, secs(1000));
        assert_eq!(
            s.put(now, Key([8; 32]), huge, Origin::Network),
            StoreOutcome::RefusedFull
        );
        assert_eq!(s.len(), 3);
        s.check_invariants().unwrap();
    }

    #[test]
    fn replacing_a_record_counts_only_the_new_bytes() {
        let now = epoch();
        let far = now + Duration::from_secs(100);
        let each = RECORD_OVERHEAD + 100;
        let mut s = RecordStore::new(100, Duration::from_secs(3600)).with_max_bytes(2 * each);
        let _ = s.put(now, Key([1; 32]), sized(100, 1, far), Origin::Network);
        let _ = s.put(now, Key([2; 32]), sized(100, 1, far), Origin::Network);
        // A newer version of the same size fits in the place of the old one.
        assert_eq!(
            s.put(now, Key([1; 32]), sized(100, 2, far), Origin::Network),
            StoreOutcome::Stored
        );
        assert_eq!(s.bytes(), 2 * each);
        s.check_invariants().unwrap();
    }

    fn signed(seq: u64, value: &'static [u8]) -> SignedRecord {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        SignedRecord::sign(
            &key,
            Bytes::from_static(b"s"),
            seq,
            10,
            Bytes::from_static(value),
        )
        .unwrap()
    }

    fn local(signed: &SignedRecord, expires: Instant) -> Record {
        Record {
            value: signed.value.clone(),
            version: Version(signed.seq),
            ..record(b"", 0, expires)
        }
    }

    #[test]
    fn signed_records_need_a_higher_sequence_and_are_never_shadowed_by_plain_ones() {
        let now = epoch();
        let far = now + Duration::from_secs(100);
        let mut s = RecordStore::new(10, Duration::from_secs(3600));
        let v2 = signed(2, b"two");
        let key = v2.key();
        let _ = s.put(now, key, record(b"plain", 7, far), Origin::Network);
        assert_eq!(
            s.put_signed(now, v2.clone(), local(&v2, far), Origin::Network),
            StoreOutcome::Stored
        );
        assert_eq!(
            s.put(now, key, record(b"plain", 8, far), Origin::Network),
            StoreOutcome::RefusedSigned
        );
        let v1 = signed(1, b"one");
        assert_eq!(
            s.put_signed(now, v1.clone(), local(&v1, far), Origin::Network),
            StoreOutcome::RefusedOlder
        );
        let other2 = signed(2, b"other");
        assert_eq!(
            s.put_signed(now, other2.clone(), local(&other2, far), Origin::Network),
            StoreOutcome::RefusedOlder
        );
        assert_eq!(
            s.put_signed(now, v2.clone(), local(&v2, far), Origin::Network),
            StoreOutcome::Unchanged
        );
        assert_eq!(s.get_signed(now, &key), Some(&v2));
        assert_eq!(s.iter().count(), 0);
        assert_eq!(s.iter_signed().count(), 1);
        s.check_invariants().unwrap();
    }

    /// Offers `n` records of `bytes` bytes from `origin`, keys `[tag, i]`; how many
    /// were taken.
    fn flood(
        s: &mut RecordStore,
        now: Instant,
        origin: Origin,
        tag: u8,
        n: u16,
        ttl: Duration,
    ) -> usize {
        (0..n)
            .filter(|i| {
                let mut key = [tag; 32];
                key[..2].copy_from_slice(&i.to_be_bytes());
                let record = sized(10, 1, now + ttl);
                s.put(now, Key(key), record, origin).is_held()
            })
            .count()
    }

    fn held_with_tag(s: &RecordStore, tag: u8) -> usize {
        s.records.keys().filter(|k| k.0[2..] == [tag; 30]).count()
    }

    #[test]
    fn one_identity_cannot_push_out_other_peers_or_this_nodes_own_records() {
        let now = epoch();
        let mut s = RecordStore::new(160, Duration::from_secs(3600));
        let honest = Origin::Peer(Key([1; 32]), Some(Subnet::V4([10, 0, 1])));
        let attacker = Origin::Peer(Key([2; 32]), Some(Subnet::V4([10, 0, 2])));
        let hour = Duration::from_secs(3600);
        assert_eq!(flood(&mut s, now, honest, 0xB0, 10, hour), 10);
        // The attack: 24-hour records, far more than the store holds. The empty part
        // fills; past that, the attacker displaces only its own records.
        flood(&mut s, now, attacker, 0xA0, 1000, 24 * hour);
        assert_eq!(s.len(), 160);
        assert_eq!(
            held_with_tag(&s, 0xB0),
            10,
            "the honest peer's records are kept"
        );
        // This node's own PUTs (TTL shorter than the attacker's) are stored.
        let mut own = sized(10, 1, now + hour);
        own.publisher = true;
        assert!(s.put(now, Key([0xC0; 32]), own, Origin::Local).is_held());
        // Another honest peer, with short TTLs, still gets its records in.
        let other = Origin::Peer(Key([3; 32]), Some(Subnet::V4([10, 0, 3])));
        assert_eq!(
            flood(&mut s, now, other, 0xD0, 5, Duration::from_secs(60)),
            5
        );
        assert_eq!(held_with_tag(&s, 0xB0), 10);
        s.check_invariants().unwrap();
    }

    #[test]
    fn a_thousand_identities_on_one_subnet_count_as_one_share() {
        let now = epoch();
        let mut s = RecordStore::new(160, Duration::from_secs(3600));
        let hour = Duration::from_secs(3600);
        let honest = Origin::Peer(Key([1; 32]), Some(Subnet::V4([10, 0, 1])));
        assert_eq!(flood(&mut s, now, honest, 0xB0, 10, hour), 10);
        for i in 0..1000u16 {
            let mut id = [7u8; 32];
            id[..2].copy_from_slice(&i.to_be_bytes());
            let sybil = Origin::Peer(Key(id), Some(Subnet::V4([192, 0, 2])));
            let mut key = [0xA0; 32];
            key[..2].copy_from_slice(&i.to_be_bytes());
            let _ = s.put(now, Key(key), sized(10, 1, now + 24 * hour), sybil);
        }
        assert_eq!(
            held_with_tag(&s, 0xB0),
            10,
            "the honest peer's records are kept"
        );
        let other = Origin::Peer(Key([3; 32]), Some(Subnet::V4([10, 0, 3])));
        assert_eq!(
            flood(&mut s, now, other, 0xD0, 5, Duration::from_secs(60)),
            5
        );
        s.check_invariants().unwrap();
    }

    proptest! {
        /// Whatever is offered, the store stays within both bounds and its indexes and
        /// byte count stay consistent.
        #[test]
        fn store_stays_within_its_bounds(
            ops in proptest::collection::vec((0u8..12, 0usize..600, 1u64..4, 1u64..60, 0u8..7), 1..200),
            max_records in 1usize..8,
            max_bytes in 0usize..3000,
        ) {
            let start = epoch();
            let mut s = RecordStore::new(max_records, Duration::from_secs(30)).with_max_bytes(max_bytes);
            for (step, (key, len, version, ttl, action)) in ops.into_iter().enumerate() {
                let now = start + Duration::from_secs(step as u64);
                let expires = now + Duration::from_secs(ttl);
                match action {
                    0 => { let _ = s.expire(now); }
                    1 => { let _ = s.take_due_republish(now); }
                    2 => {
                        let r = signed(version, b"sig");
                        let _ = s.put_signed(now, r.clone(), local(&r, expires), Origin::Network);
                    }
                    _ => {
                        // Three senders on two subnets, the network, and this node.
                        let origin = match action {
                            3 => Origin::Network,
                            4 | 5 => Origin::Peer(
                                Key([key % 3; 32]),
                                Some(Subnet::V4([10, 0, key % 2])),
                            ),
                            _ => Origin::Local,
                        };
                        let mut record = sized(len, version, expires);
                        record.publisher = origin == Origin::Local && key % 2 == 0;
                        let _ = s.put(now, Key([key; 32]), record, origin);
                    }
                }
                if let Err(e) = s.check_invariants() {
                    return Err(TestCaseError::fail(e));
                }
            }
        }
    }
}
