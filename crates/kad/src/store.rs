//! Records held by this node, with their expiry and republish schedules.
//!
//! # Rules
//! - A record lives until its expiry; an expired record is never returned and is dropped
//!   on read and by [`RecordStore::expire`].
//! - Newest wins: a record replaces the held one only if its version is at least as new.
//!   An equal version is the same record again (idempotent): the value is kept and the
//!   expiry becomes the later of the two.
//! - At most `max_records` are held. When full, the record expiring soonest (the newcomer
//!   included) is the one left out.
//! - Every record is due for republishing `republish_interval` after it was last stored;
//!   a copy received from a peer pushes a replica's republish back, since that peer just
//!   did the work (the Kademlia paper's optimisation). The original publisher's schedule
//!   is never pushed back.
//!
//! Expiries and republish times sit in ordered sets, so the next deadline is found in
//! O(log n) and no timer ever scans every record.

use crate::timers::after;
use bytes::Bytes;
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};
use voidmesh_proto::{Key, Version};

/// One stored value and what we need to keep it alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The value.
    pub value: Bytes,
    /// Its version; a STORE with an older one is refused.
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
    /// The record itself.
    record: Record,
    /// When it is next republished; its entry in [`RecordStore::republish`].
    republish_at: Instant,
}

/// What happened to a record offered to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// The record is new, or newer than the one held, and replaced it.
    Stored,
    /// The same version was already held; its expiry was extended if later.
    Unchanged,
    /// A newer version is held.
    RefusedOlder,
    /// The store is full and every held record outlives this one.
    RefusedFull,
    /// The record has already expired (a TTL of zero).
    RefusedExpired,
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
    /// `(expiry, key)` of every record: the first is the next to expire, and the one
    /// evicted when the store is full.
    expiries: BTreeSet<(Instant, Key)>,
    /// `(republish time, key)` of every record.
    republish: BTreeSet<(Instant, Key)>,
    /// Most records held.
    max_records: usize,
    /// Time between republishes of one record.
    republish_interval: Duration,
}

impl RecordStore {
    /// An empty store.
    pub fn new(max_records: usize, republish_interval: Duration) -> Self {
        RecordStore {
            records: HashMap::new(),
            expiries: BTreeSet::new(),
            republish: BTreeSet::new(),
            max_records,
            republish_interval,
        }
    }

    /// Number of records held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The unexpired record under `key`; an expired one is dropped.
    pub fn get(&mut self, now: Instant, key: &Key) -> Option<&Record> {
        let expired = self.records.get(key)?.record.expires <= now;
        if expired {
            self.remove(key);
            return None;
        }
        self.records.get(key).map(|h| &h.record)
    }

    /// Offers a record. `from_peer` is true for a STORE received from another node (it
    /// pushes a replica's republish back); see the module doc for the rules.
    pub fn put(&mut self, now: Instant, key: Key, record: Record, from_peer: bool) -> StoreOutcome {
        if record.expires <= now {
            return StoreOutcome::RefusedExpired;
        }
        let republish_at = after(now, self.republish_interval);
        match self.records.entry(key) {
            Entry::Occupied(mut held) => {
                let held = held.get_mut();
                let old_expiry = held.record.expires;
                let old_republish = held.republish_at;
                let outcome = if record.version < held.record.version {
                    return StoreOutcome::RefusedOlder;
                } else if record.version == held.record.version {
                    held.record.expires = held.record.expires.max(record.expires);
                    held.record.publisher |= record.publisher;
                    if from_peer && !held.record.publisher {
                        held.republish_at = republish_at;
                    }
                    StoreOutcome::Unchanged
                } else {
                    held.record = record;
                    held.republish_at = republish_at;
                    StoreOutcome::Stored
                };
                let (new_expiry, new_republish) = (held.record.expires, held.republish_at);
                if new_expiry != old_expiry {
                    self.expiries.remove(&(old_expiry, key));
                    self.expiries.insert((new_expiry, key));
                }
                if new_republish != old_republish {
                    self.republish.remove(&(old_republish, key));
                    self.republish.insert((new_republish, key));
                }
                outcome
            }
            Entry::Vacant(_) => {
                if self.records.len() >= self.max_records {
                    let Some(&(soonest, victim)) = self.expiries.first() else {
                        return StoreOutcome::RefusedFull;
                    };
                    if soonest >= record.expires {
                        tracing::warn!(key = ?key, "record store full; refused a record expiring sooner than all held");
                        return StoreOutcome::RefusedFull;
                    }
                    tracing::warn!(evicted = ?victim, "record store full; evicted the record expiring soonest");
                    self.remove(&victim);
                }
                self.expiries.insert((record.expires, key));
                self.republish.insert((republish_at, key));
                self.records.insert(
                    key,
                    Held {
                        record,
                        republish_at,
                    },
                );
                StoreOutcome::Stored
            }
        }
    }

    fn remove(&mut self, key: &Key) -> Option<Record> {
        let held = self.records.remove(key)?;
        self.expiries.remove(&(held.record.expires, *key));
        self.republish.remove(&(held.republish_at, *key));
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
            dropped += 1;
        }
        dropped
    }

    /// When the next record expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.first().map(|(t, _)| *t)
    }

    /// When the next record is due for republishing.
    pub fn next_republish(&self) -> Option<Instant> {
        self.republish.first().map(|(t, _)| *t)
    }

    /// The records due for republishing at `now` (unexpired ones only), each rescheduled
    /// one interval later.
    pub fn take_due_republish(&mut self, now: Instant) -> Vec<(Key, Record)> {
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
                due.push((key, held.record.clone()));
            }
        }
        due
    }

    /// Every record held, unexpired or not yet swept.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Record)> + '_ {
        self.records.iter().map(|(k, h)| (k, &h.record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::epoch;

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
            true,
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
            let _ = s.put(now, Key([n; 32]), record(b"v", 1, expires), true);
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
            s.put(now, key, record(b"new", 5, later), true),
            StoreOutcome::Stored
        );
        assert_eq!(
            s.put(now, key, record(b"old", 4, later), true),
            StoreOutcome::RefusedOlder
        );
        assert_eq!(s.get(now, &key).unwrap().value, Bytes::from_static(b"new"));
        assert_eq!(
            s.put(now, key, record(b"newer", 6, later), true),
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
        let _ = s.put(now, key, record(b"v", 5, far), true);
        assert_eq!(
            s.put(
                now,
                key,
                record(b"v", 5, now + Duration::from_secs(10)),
                true
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
        let _ = s.put(now, Key([1; 32]), record(b"a", 1, secs(10)), true);
        let _ = s.put(now, Key([2; 32]), record(b"b", 1, secs(20)), true);
        // Expires before both: refused.
        assert_eq!(
            s.put(now, Key([3; 32]), record(b"c", 1, secs(5)), true),
            StoreOutcome::RefusedFull
        );
        assert_eq!(
            s.put(now, Key([4; 32]), record(b"d", 1, secs(30)), true),
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
        let _ = s.put(now, Key([1; 32]), record(b"a", 1, far), true);
        let mut own = record(b"b", 1, far);
        own.publisher = true;
        let _ = s.put(now, Key([2; 32]), own.clone(), false);
        let half = now + hour / 2;
        let _ = s.put(half, Key([1; 32]), record(b"a", 1, far), true);
        let _ = s.put(half, Key([2; 32]), record(b"b", 1, far), true);
        let due: Vec<Key> = s
            .take_due_republish(now + hour)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(due, vec![Key([2; 32])]);
        assert_eq!(s.next_republish(), Some(half + hour));
    }
}
