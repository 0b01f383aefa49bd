//! What dissemination remembers: item ids, the bounded item cache with the validation
//! state of each item, and the seen-set that deduplicates.
//!
//! # Item ids
//! An item's network-wide id is `SHA-256(origin [32] | data type u16 | nonce u64 | data)`
//! ([`item_id`]). It is computed from the PEER ANNOUNCE fields by every receiver, never
//! trusted from the wire, so one id always names one content.
//!
//! # Memory
//! The cache holds at most `cache_size` items (oldest evicted first); the seen-set at most
//! `max_seen` ids, each forgotten `seen_ttl` after it was first seen. Pending validations
//! live inside cached items, so they are bounded by the cache too.

use crate::subscriptions::ClientId;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};
use voidmesh_proto::NodeId;

/// The network-wide id of one item.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemId(pub [u8; 32]);

impl fmt::Debug for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Computes an item's id: `SHA-256(origin | data type u16 BE | nonce u64 BE | data)`.
pub fn item_id(origin: &NodeId, data_type: u16, nonce: u64, data: &[u8]) -> ItemId {
    let mut hasher = Sha256::new();
    hasher.update(origin.as_bytes());
    hasher.update(data_type.to_be_bytes());
    hasher.update(nonce.to_be_bytes());
    hasher.update(data);
    ItemId(hasher.finalize().into())
}

/// Where an item stands in the validate-then-forward rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemState {
    /// Delivered to local subscribers; waiting for their verdicts.
    Pending {
        /// The message id the subscribers' VALIDATIONs refer to.
        message_id: u16,
        /// Subscribers that got the item and have not answered yet.
        awaiting: BTreeSet<ClientId>,
        /// How many answered "valid" so far.
        valid: usize,
        /// When the item is dropped if verdicts are still missing.
        deadline: Instant,
    },
    /// Validated (or announced locally): it has been, or is being, spread.
    Spread,
    /// Found invalid, or not validated in time: never forwarded.
    Dropped,
}

/// One item in the cache.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// The item's id (derived from the fields below).
    pub(crate) id: ItemId,
    /// Node id of the peer whose client announced it.
    pub(crate) origin: NodeId,
    /// The origin's nonce.
    pub(crate) nonce: u64,
    /// Application data type.
    pub(crate) data_type: u16,
    /// The item itself.
    pub(crate) data: Bytes,
    /// Hops the item may still travel from this node (0: do not forward).
    pub(crate) hops: u8,
    /// Validation state.
    pub(crate) state: ItemState,
    /// Peers known to have the item (it came from them, or was sent to them): never sent
    /// the item (again), which makes "forwarded at most once per peer" hold.
    pub(crate) peers: BTreeSet<NodeId>,
    /// PEER ANNOUNCE messages this node sent for the item.
    pub(crate) sends: u32,
}

/// The bounded item cache, oldest evicted first.
#[derive(Debug)]
pub(crate) struct ItemCache {
    /// Items by id.
    items: BTreeMap<ItemId, Item>,
    /// Ids in insertion order, oldest first: the eviction order.
    order: VecDeque<ItemId>,
    /// Most items held.
    capacity: usize,
    /// Message id → pending item: routes a VALIDATION, and keeps ids of pending items unique.
    pending_by_message_id: BTreeMap<u16, ItemId>,
    /// Validation deadlines of pending items, earliest first.
    deadlines: BTreeSet<(Instant, ItemId)>,
}

impl ItemCache {
    /// An empty cache holding at most `capacity` items (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        ItemCache {
            items: BTreeMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            pending_by_message_id: BTreeMap::new(),
            deadlines: BTreeSet::new(),
        }
    }

    /// Items held.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Items waiting for validation.
    pub(crate) fn pending_len(&self) -> usize {
        self.pending_by_message_id.len()
    }

    /// The item with this id, if cached.
    pub(crate) fn get(&self, id: &ItemId) -> Option<&Item> {
        self.items.get(id)
    }

    /// The item with this id, if cached.
    pub(crate) fn get_mut(&mut self, id: &ItemId) -> Option<&mut Item> {
        self.items.get_mut(id)
    }

    /// True if `message_id` names a pending item.
    pub(crate) fn message_id_in_use(&self, message_id: u16) -> bool {
        self.pending_by_message_id.contains_key(&message_id)
    }

    /// The pending item a VALIDATION with `message_id` refers to.
    pub(crate) fn pending_item(&self, message_id: u16) -> Option<ItemId> {
        self.pending_by_message_id.get(&message_id).copied()
    }

    /// Adds an item, evicting the oldest when full. Returns the evicted item.
    /// An item already cached is left as it is.
    pub(crate) fn insert(&mut self, item: Item) -> Option<Item> {
        if self.items.contains_key(&item.id) {
            return None;
        }
        let evicted = if self.items.len() >= self.capacity {
            self.evict_oldest()
        } else {
            None
        };
        if let ItemState::Pending {
            message_id,
            deadline,
            ..
        } = &item.state
        {
            self.pending_by_message_id.insert(*message_id, item.id);
            self.deadlines.insert((*deadline, item.id));
        }
        self.order.push_back(item.id);
        self.items.insert(item.id, item);
        evicted
    }

    fn evict_oldest(&mut self) -> Option<Item> {
        let id = self.order.pop_front()?;
        let item = self.items.remove(&id)?;
        self.forget_pending(&item);
        Some(item)
    }

    fn forget_pending(&mut self, item: &Item) {
        if let ItemState::Pending {
            message_id,
            deadline,
            ..
        } = &item.state
        {
            self.pending_by_message_id.remove(message_id);
            self.deadlines.remove(&(*deadline, item.id));
        }
    }

    /// Ends the pending state of `id` with `state` (Spread or Dropped). Returns the
    /// message id it had, or `None` if the item was not pending.
    pub(crate) fn settle(&mut self, id: &ItemId, state: ItemState) -> Option<u16> {
        let item = self.items.get(id)?;
        let ItemState::Pending { message_id, .. } = item.state else {
            return None;
        };
        let item = item.clone();
        self.forget_pending(&item);
        if let Some(item) = self.items.get_mut(id) {
            item.state = state;
        }
        Some(message_id)
    }

    /// Pending items whose deadline is at or before `now`.
    pub(crate) fn expired(&self, now: Instant) -> Vec<ItemId> {
        self.deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .map(|(_, id)| *id)
            .collect()
    }

    /// The earliest validation deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.iter().next().map(|(deadline, _)| *deadline)
    }

    /// Ids of all pending items, in message id order.
    pub(crate) fn pending_ids(&self) -> Vec<ItemId> {
        self.pending_by_message_id.values().copied().collect()
    }
}

/// Item ids seen recently, forgotten after a fixed time or when the set is full.
#[derive(Debug)]
pub(crate) struct SeenSet {
    /// The ids remembered.
    ids: HashSet<ItemId>,
    /// (expiry, id) in insertion order; since the lifetime is fixed and `now` never goes
    /// back, this is also expiry order.
    queue: VecDeque<(Instant, ItemId)>,
    /// How long an id is remembered.
    ttl: Duration,
    /// Most ids remembered.
    capacity: usize,
}

impl SeenSet {
    /// An empty set.
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        SeenSet {
            ids: HashSet::new(),
            queue: VecDeque::new(),
            ttl,
            capacity: capacity.max(1),
        }
    }

    /// Remembers `id`. Returns false if it was already there.
    pub(crate) fn insert(&mut self, now: Instant, id: ItemId) -> bool {
        self.expire(now);
        if self.ids.contains(&id) {
            return false;
        }
        while self.ids.len() >= self.capacity {
            match self.queue.pop_front() {
                Some((_, old)) => {
                    self.ids.remove(&old);
                }
                None => break,
            }
        }
        self.ids.insert(id);
        self.queue.push_back((now + self.ttl, id));
        true
    }

    /// True if `id` was seen and not yet forgotten.
    #[cfg(test)]
    pub(crate) fn contains(&self, id: &ItemId) -> bool {
        self.ids.contains(id)
    }

    /// Forgets the ids whose time is up.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some((expiry, id)) = self.queue.front().copied() {
            if expiry > now {
                break;
            }
            self.queue.pop_front();
            self.ids.remove(&id);
        }
    }

    /// Ids remembered.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use voidmesh_proto::Key;

    fn item(n: u8, pending: Option<(u16, Instant)>) -> Item {
        let id = item_id(&Key([1; 32]), 1, u64::from(n), &[n]);
        Item {
            id,
            origin: Key([1; 32]),
            nonce: u64::from(n),
            data_type: 1,
            data: Bytes::from(vec![n]),
            hops: 3,
            state: match pending {
                Some((message_id, deadline)) => ItemState::Pending {
                    message_id,
                    awaiting: BTreeSet::from([ClientId(1)]),
                    valid: 0,
                    deadline,
                },
                None => ItemState::Spread,
            },
            peers: BTreeSet::new(),
            sends: 0,
        }
    }

    #[test]
    fn item_id_depends_on_every_field() {
        let base = item_id(&Key([1; 32]), 1, 1, b"x");
        assert_ne!(base, item_id(&Key([2; 32]), 1, 1, b"x"));
        assert_ne!(base, item_id(&Key([1; 32]), 2, 1, b"x"));
        assert_ne!(base, item_id(&Key([1; 32]), 1, 2, b"x"));
        assert_ne!(base, item_id(&Key([1; 32]), 1, 1, b"y"));
        assert_eq!(base, item_id(&Key([1; 32]), 1, 1, b"x"));
    }

    #[test]
    fn cache_evicts_the_oldest_item() {
        let mut cache = ItemCache::new(2);
        let (a, b, c) = (item(1, None), item(2, None), item(3, None));
        assert!(cache.insert(a.clone()).is_none());
        assert!(cache.insert(b.clone()).is_none());
        let evicted = cache.insert(c.clone()).map(|i| i.id);
        assert_eq!(evicted, Some(a.id));
        assert!(cache.get(&a.id).is_none());
        assert!(cache.get(&b.id).is_some() && cache.get(&c.id).is_some());
    }

    #[test]
    fn evicting_a_pending_item_frees_its_message_id() {
        let t = crate::test_support::epoch();
        let mut cache = ItemCache::new(1);
        cache.insert(item(1, Some((7, t))));
        assert!(cache.message_id_in_use(7));
        cache.insert(item(2, None));
        assert!(!cache.message_id_in_use(7));
        assert_eq!(cache.next_deadline(), None);
    }

    #[test]
    fn settling_ends_the_pending_state_once() {
        let t = crate::test_support::epoch();
        let mut cache = ItemCache::new(4);
        let a = item(1, Some((7, t)));
        cache.insert(a.clone());
        assert_eq!(cache.expired(t), vec![a.id]);
        assert_eq!(cache.settle(&a.id, ItemState::Dropped), Some(7));
        assert_eq!(cache.settle(&a.id, ItemState::Spread), None);
        assert_eq!(
            cache.get(&a.id).map(|i| i.state.clone()),
            Some(ItemState::Dropped)
        );
        assert!(cache.expired(t).is_empty());
        assert_eq!(cache.pending_item(7), None);
    }

    #[test]
    fn seen_ids_are_forgotten_after_their_ttl() {
        let t = crate::test_support::epoch();
        let mut seen = SeenSet::new(Duration::from_secs(10), 100);
        let id = ItemId([1; 32]);
        assert!(seen.insert(t, id));
        assert!(!seen.insert(t + Duration::from_secs(9), id));
        seen.expire(t + Duration::from_secs(10));
        assert!(!seen.contains(&id));
    }

    proptest! {
        #[test]
        fn seen_set_never_exceeds_its_capacity(
            cap in 1usize..50,
            steps in proptest::collection::vec((any::<u8>(), 0u64..3), 0..300),
        ) {
            let mut now = crate::test_support::epoch();
            let mut seen = SeenSet::new(Duration::from_secs(5), cap);
            for (n, dt) in steps {
                now += Duration::from_secs(dt);
                seen.insert(now, ItemId([n; 32]));
                prop_assert!(seen.len() <= cap);
                prop_assert_eq!(seen.len(), seen.queue.len());
            }
        }

        #[test]
        fn cache_never_exceeds_its_capacity_and_keeps_pending_ids_consistent(
            cap in 1usize..20,
            steps in proptest::collection::vec((any::<u8>(), any::<bool>(), any::<bool>()), 0..200),
        ) {
            let t = crate::test_support::epoch();
            let mut cache = ItemCache::new(cap);
            for (n, pending, settle) in steps {
                let it = item(n, pending.then_some((u16::from(n), t)));
                let id = it.id;
                if !cache.message_id_in_use(u16::from(n)) {
                    cache.insert(it);
                }
                if settle {
                    cache.settle(&id, ItemState::Spread);
                }
                prop_assert!(cache.len() <= cap);
                prop_assert!(cache.pending_len() <= cache.len());
                prop_assert_eq!(cache.pending_len(), cache.deadlines.len());
                for id in cache.pending_ids() {
                    let is_pending = matches!(
                        cache.get(&id).map(|i| &i.state),
                        Some(ItemState::Pending { .. })
                    );
                    prop_assert!(is_pending);
                }
            }
        }
    }
}
