//! The read path API connections use without crossing to the driver task.
//!
//! The driver owns the [`Kademlia`](voidmesh_kad::Kademlia) state machine and its rules;
//! after every turn it *publishes* what the machine's record store holds (from the
//! store-change journal) into [`LocalReads`]. API connections read it directly:
//! - a GET for a key held here is answered at once when a GET would not ask the network
//!   anyway (this node knows no other node, or `read_quorum` is 1);
//! - a PUT read from any connection is noted here before it is handed to the driver
//!   ([`LocalReads::note_put`]), so a GET read after it on any connection sees it
//!   (read-your-writes at the node that accepted the PUT), whether or not the driver has
//!   taken it yet. The driver forgets the note once the state machine has the record.
//!
//! Copies are ranked like the state machine ranks them: a signed record above any plain
//! one, then by version.

use bytes::Bytes;
use foldhash::fast::RandomState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};
use voidmesh_kad::{Record, SignedRecord};
use voidmesh_proto::{Key, Version};

/// Shards of the published map: readers on different keys rarely meet on one lock.
const SHARDS: usize = 16;

/// How recent a copy is: signed records outrank plain ones, then the version (for a
/// signed record, its sequence number).
pub(crate) type Rank = (bool, Version);

/// One readable copy.
#[derive(Debug, Clone)]
pub(crate) struct Copy {
    /// The value.
    pub value: Bytes,
    /// How recent it is.
    pub rank: Rank,
    /// When it stops being readable.
    pub expires: Instant,
}

impl Copy {
    /// The copy of a record the state machine holds.
    pub fn of(record: &Record, signed: Option<&SignedRecord>) -> Copy {
        Copy {
            value: record.value.clone(),
            rank: (signed.is_some(), record.version),
            expires: record.expires,
        }
    }
}

/// What a connection found for a key.
#[derive(Debug)]
pub(crate) struct LocalRead {
    /// The newest unexpired copy held or noted here.
    pub copy: Option<Copy>,
    /// True if the GET may be answered from `copy` alone (hit or miss), as the state
    /// machine would answer it without asking anyone.
    pub final_answer: bool,
}

/// See the module doc. Shared by the driver (writer) and the API connections (readers).
#[derive(Debug)]
pub(crate) struct LocalReads {
    /// What the state machine holds, as of the driver's last turn.
    published: [RwLock<HashMap<Key, Copy, RandomState>>; SHARDS],
    /// PUTs read from API connections that the driver has not taken yet.
    noted: Mutex<HashMap<Key, Copy>>,
    /// Entries in `noted`, so a read skips its lock when there are none.
    noted_len: AtomicUsize,
    /// Whether a GET with a local copy finishes without asking the network.
    local_is_final: AtomicBool,
    /// The longest TTL the state machine keeps a record for.
    max_ttl: Duration,
}

impl LocalReads {
    /// An empty read path for a state machine that caps TTLs at `max_ttl`. Until the
    /// driver says otherwise, every GET goes to the driver.
    pub fn new(max_ttl: Duration) -> LocalReads {
        LocalReads {
            published: std::array::from_fn(|_| RwLock::new(HashMap::default())),
            noted: Mutex::new(HashMap::new()),
            noted_len: AtomicUsize::new(0),
            local_is_final: AtomicBool::new(false),
            max_ttl,
        }
    }

    fn shard(&self, key: &Key) -> &RwLock<HashMap<Key, Copy, RandomState>> {
        &self.published[usize::from(key.0[0]) % SHARDS]
    }

    /// The newest copy under `key` readable at `now`, and whether it is the answer.
    pub fn read(&self, now: Instant, key: &Key) -> LocalRead {
        let published = read_lock(self.shard(key))
            .get(key)
            .filter(|c| c.expires > now)
            .cloned();
        // Acquire pairs with the Release in `note_put`: a note made before this read
        // began is seen.
        let noted = if self.noted_len.load(Ordering::Acquire) == 0 {
            None
        } else {
            lock(&self.noted)
                .get(key)
                .filter(|c| c.expires > now)
                .cloned()
        };
        LocalRead {
            copy: newest(published, noted),
            final_answer: self.local_is_final.load(Ordering::Acquire),
        }
    }

    /// Notes a PUT of `value` with `ttl` (capped like the state machine caps it) and
    /// `version`, read from an API connection, before it is handed to the driver.
    pub fn note_put(&self, key: Key, value: &Bytes, ttl: Duration, version: Version) {
        if ttl.is_zero() {
            return;
        }
        let copy = Copy {
            value: value.clone(),
            rank: (false, version),
            expires: Instant::now() + ttl.min(self.max_ttl),
        };
        let mut noted = lock(&self.noted);
        let keep_held = noted.get(&key).is_some_and(|held| held.rank > copy.rank);
        if !keep_held {
            noted.insert(key, copy);
        }
        self.noted_len.store(noted.len(), Ordering::Release);
    }

    /// The driver has handed the PUT of `rank` under `key` to the state machine (which
    /// published the outcome): the note is no longer needed.
    pub fn forget_put(&self, key: &Key, rank: Rank) {
        let mut noted = lock(&self.noted);
        if noted.get(key).is_some_and(|held| held.rank == rank) {
            noted.remove(key);
        }
        self.noted_len.store(noted.len(), Ordering::Release);
    }

    /// The driver publishes what the state machine holds under `key` (`None`: nothing).
    pub fn publish(&self, key: Key, copy: Option<Copy>) {
        let mut shard = write_lock(self.shard(&key));
        match copy {
            Some(copy) => {
                shard.insert(key, copy);
            }
            None => {
                shard.remove(&key);
            }
        }
    }

    /// The driver says whether a GET with a local copy finishes without the network.
    pub fn set_local_is_final(&self, is_final: bool) {
        self.local_is_final.store(is_final, Ordering::Release);
    }
}

/// The more recent of two copies.
pub(crate) fn newest(a: Option<Copy>, b: Option<Copy>) -> Option<Copy> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.rank > a.rank { b } else { a }),
        (a, b) => a.or(b),
    }
}

// A poisoned lock means a panic elsewhere already broke an invariant of this process;
// the maps themselves stay consistent (every update is one insert or remove), so reading
// on is safe.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_lock<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(value: &'static [u8], version: u64, expires: Instant) -> Copy {
        Copy {
            value: Bytes::from_static(value),
            rank: (false, Version(version)),
            expires,
        }
    }

    #[test]
    fn a_noted_put_is_read_until_the_driver_publishes_it() {
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        let reads = LocalReads::new(Duration::from_secs(60));
        let key = Key([1; 32]);
        reads.publish(key, Some(copy(b"old", 1, later)));
        reads.note_put(
            key,
            &Bytes::from_static(b"new"),
            Duration::from_secs(9),
            Version(2),
        );
        assert_eq!(reads.read(now, &key).copy.unwrap().value, &b"new"[..]);
        // The driver published the state machine's record, then forgot the note.
        reads.publish(key, Some(copy(b"new", 2, later)));
        reads.forget_put(&key, (false, Version(2)));
        assert_eq!(reads.read(now, &key).copy.unwrap().value, &b"new"[..]);
        // An older note never hides a newer copy.
        reads.note_put(
            key,
            &Bytes::from_static(b"older"),
            Duration::from_secs(9),
            Version(1),
        );
        assert_eq!(reads.read(now, &key).copy.unwrap().value, &b"new"[..]);
    }

    #[test]
    fn expired_copies_are_not_read() {
        let now = Instant::now();
        let reads = LocalReads::new(Duration::from_secs(60));
        let key = Key([2; 32]);
        reads.publish(key, Some(copy(b"v", 1, now + Duration::from_millis(5))));
        assert!(reads.read(now, &key).copy.is_some());
        assert!(reads
            .read(now + Duration::from_millis(5), &key)
            .copy
            .is_none());
    }
}
