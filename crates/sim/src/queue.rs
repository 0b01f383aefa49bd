//! The event queue: `(deliver_at, seq, event)` in a binary heap, earliest first.
//!
//! `seq` is a counter assigned at insertion, so events due at the same virtual instant
//! come out in the order they were scheduled. That tie-break is what makes two runs with
//! the same seed identical.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

/// One scheduled event.
#[derive(Debug)]
struct Entry<E> {
    /// Virtual time at which the event fires.
    at: Duration,
    /// Insertion order; breaks ties between events due at the same time.
    seq: u64,
    /// The payload.
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest entry.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A priority queue of events keyed by virtual time, FIFO among equal times.
#[derive(Debug)]
pub struct EventQueue<E> {
    /// The pending events.
    heap: BinaryHeap<Entry<E>>,
    /// The next insertion number.
    next_seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules `event` at virtual time `at`.
    pub fn push(&mut self, at: Duration, event: E) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { at, seq, event });
    }

    /// Removes and returns the earliest event.
    pub fn pop(&mut self) -> Option<(Duration, E)> {
        self.heap.pop().map(|e| (e.at, e.event))
    }

    /// When the earliest event fires.
    pub fn peek_time(&self) -> Option<Duration> {
        self.heap.peek().map(|e| e.at)
    }

    /// Number of pending events.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_event_comes_first() {
        let mut q = EventQueue::new();
        q.push(Duration::from_millis(30), "c");
        q.push(Duration::from_millis(10), "a");
        q.push(Duration::from_millis(20), "b");
        assert_eq!(q.peek_time(), Some(Duration::from_millis(10)));
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, vec!["a", "b", "c"]);
    }

    #[test]
    fn equal_times_keep_insertion_order() {
        let mut q = EventQueue::new();
        for i in 0..100 {
            q.push(Duration::from_millis(1), i);
        }
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, (0..100).collect::<Vec<_>>());
        assert!(q.is_empty());
    }
}
