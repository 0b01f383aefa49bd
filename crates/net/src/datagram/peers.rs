//! The bounded per-peer state: cached pair keys, the replay window, the token a peer
//! gave us. Evicts the least recently used unprotected peer first.

use super::keys::{AeadKey, PeerKey, TOKEN_LEN};
use std::collections::{BTreeMap, HashMap};

/// How many of a peer's highest accepted request counters are remembered.
pub const REPLAY_WINDOW: usize = 16;

/// Replay state of one sender: the [`REPLAY_WINDOW`] highest counters accepted from it.
///
/// A counter is accepted once: it must not be in the window, and when the window is
/// full it must be above the lowest counter in it. Empty slots hold 0, and counter 0 is
/// never accepted (senders start at 1).
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplayWindow {
    /// Accepted counters, unordered; 0 marks an empty slot.
    seen: [u64; REPLAY_WINDOW],
}

/// Why a counter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayVerdict {
    /// Never seen and inside the window.
    Fresh,
    /// Already accepted.
    Seen,
    /// Below every remembered counter of a full window (or 0): cannot tell, so refused.
    BelowWindow,
}

impl ReplayWindow {
    /// Whether `counter` would be accepted (does not record it).
    pub(crate) fn check(&self, counter: u64) -> ReplayVerdict {
        if counter == 0 {
            return ReplayVerdict::BelowWindow;
        }
        if self.seen.contains(&counter) {
            return ReplayVerdict::Seen;
        }
        if self.seen.iter().all(|&c| c > counter) {
            return ReplayVerdict::BelowWindow;
        }
        ReplayVerdict::Fresh
    }

    /// Records an accepted counter (after [`check`](Self::check) said fresh and the
    /// datagram authenticated) in place of the lowest one (an empty slot first).
    pub(crate) fn record(&mut self, counter: u64) {
        if let Some(lowest) = self.seen.iter_mut().min_by_key(|c| **c) {
            if *lowest < counter {
                *lowest = counter;
            }
        }
    }
}

/// Everything kept about one peer (about 300 bytes).
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// Its key and node id.
    pub(crate) key: PeerKey,
    /// Ours → its.
    pub(crate) send: AeadKey,
    /// Its → ours.
    pub(crate) recv: AeadKey,
    /// Requests accepted from it.
    pub(crate) window: ReplayWindow,
    /// The last token it handed us, with the time we received it (µs).
    pub(crate) token: Option<([u8; TOKEN_LEN], u64)>,
    /// Evicted only when no unprotected peer is left.
    pub(crate) protected: bool,
    /// Position in the LRU order.
    stamp: u64,
}

/// Bounded map from public key to [`Peer`].
#[derive(Debug)]
pub(crate) struct PeerCache {
    /// The peers.
    peers: HashMap<[u8; 32], Peer>,
    /// `(protected, stamp) → key`: the first entry is the next to evict.
    order: BTreeMap<(bool, u64), [u8; 32]>,
    /// Next LRU stamp.
    clock: u64,
    /// Most peers kept.
    capacity: usize,
    /// How many peers were evicted so far.
    evictions: u64,
}

impl PeerCache {
    /// An empty cache holding at most `capacity` peers (at least 1).
    pub(crate) fn new(capacity: usize) -> PeerCache {
        PeerCache {
            peers: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
            capacity: capacity.max(1),
            evictions: 0,
        }
    }

    /// Number of peers held.
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// Peers evicted so far.
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions
    }

    /// The peer, without touching its LRU position.
    pub(crate) fn peek(&self, key: &[u8; 32]) -> Option<&Peer> {
        self.peers.get(key)
    }

    /// The peer, moved to the most recently used position.
    pub(crate) fn get_mut(&mut self, key: &[u8; 32]) -> Option<&mut Peer> {
        let peer = self.peers.get_mut(key)?;
        self.order.remove(&(peer.protected, peer.stamp));
        self.clock += 1;
        peer.stamp = self.clock;
        self.order.insert((peer.protected, peer.stamp), *key);
        Some(peer)
    }

    /// Inserts a new peer (the caller checked it is absent), evicting if full.
    pub(crate) fn insert(&mut self, key: PeerKey, send: AeadKey, recv: AeadKey) -> &mut Peer {
        let bytes = key.to_bytes();
        if let Some(old) = self.peers.remove(&bytes) {
            self.order.remove(&(old.protected, old.stamp));
        }
        while self.peers.len() >= self.capacity {
            let Some((_, victim)) = self.order.pop_first() else {
                break;
            };
            self.peers.remove(&victim);
            self.evictions += 1;
        }
        self.clock += 1;
        let stamp = self.clock;
        self.order.insert((false, stamp), bytes);
        self.peers.entry(bytes).or_insert(Peer {
            key,
            send,
            recv,
            window: ReplayWindow::default(),
            token: None,
            protected: false,
            stamp,
        })
    }

    /// Marks or unmarks a present peer as protected. Returns whether it was present.
    pub(crate) fn set_protected(&mut self, key: &[u8; 32], protected: bool) -> bool {
        let Some(peer) = self.peers.get_mut(key) else {
            return false;
        };
        self.order.remove(&(peer.protected, peer.stamp));
        peer.protected = protected;
        self.order.insert((peer.protected, peer.stamp), *key);
        true
    }
}
