//! A set of node numbers with O(1) insert, remove and uniform random pick.
//!
//! The simulator keeps a few of these (live nodes, joined nodes, joined honest nodes) to
//! choose who starts a lookup, whom a newcomer joins through, and who leaves.

use rand::rngs::StdRng;
use rand::Rng;

/// Marks a node number that is not in the set.
const ABSENT: u32 = u32::MAX;

/// A set of node numbers; iteration order depends only on the sequence of inserts and
/// removes, so it is deterministic.
#[derive(Debug, Default, Clone)]
pub struct Members {
    /// The members, in no particular order.
    list: Vec<u32>,
    /// `pos[node]` is the node's index in `list`, or [`ABSENT`].
    pos: Vec<u32>,
}

impl Members {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether `node` is a member.
    pub fn contains(&self, node: u32) -> bool {
        self.pos.get(node as usize).is_some_and(|&p| p != ABSENT)
    }

    /// Adds `node`; returns false if it was already there.
    pub fn insert(&mut self, node: u32) -> bool {
        if self.contains(node) {
            return false;
        }
        let i = node as usize;
        if self.pos.len() <= i {
            self.pos.resize(i + 1, ABSENT);
        }
        self.pos[i] = self.list.len() as u32;
        self.list.push(node);
        true
    }

    /// Removes `node`; returns false if it was not there.
    pub fn remove(&mut self, node: u32) -> bool {
        if !self.contains(node) {
            return false;
        }
        let at = self.pos[node as usize] as usize;
        self.list.swap_remove(at);
        if let Some(&moved) = self.list.get(at) {
            self.pos[moved as usize] = at as u32;
        }
        self.pos[node as usize] = ABSENT;
        true
    }

    /// A uniformly random member.
    pub fn pick(&self, rng: &mut StdRng) -> Option<u32> {
        if self.list.is_empty() {
            None
        } else {
            Some(self.list[rng.gen_range(0..self.list.len())])
        }
    }

    /// A uniformly random member other than `not`, if there is one (a few tries).
    pub fn pick_other(&self, rng: &mut StdRng, not: u32) -> Option<u32> {
        for _ in 0..32 {
            match self.pick(rng) {
                Some(n) if n != not => return Some(n),
                Some(_) => {}
                None => return None,
            }
        }
        None
    }

    /// The members.
    pub fn as_slice(&self) -> &[u32] {
        &self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn insert_remove_contains() {
        let mut m = Members::new();
        assert!(m.insert(5));
        assert!(!m.insert(5));
        assert!(m.insert(2));
        assert!(m.insert(9));
        assert!(m.remove(5));
        assert!(!m.remove(5));
        assert!(!m.contains(5));
        assert!(m.contains(2) && m.contains(9));
        assert_eq!(m.len(), 2);
        assert!(m.remove(9));
        assert!(m.remove(2));
        assert!(m.is_empty());
    }

    #[test]
    fn pick_returns_members_only() {
        let mut m = Members::new();
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(m.pick(&mut rng), None);
        for n in 0..10 {
            m.insert(n);
        }
        m.remove(3);
        for _ in 0..100 {
            let n = m.pick(&mut rng).unwrap();
            assert!(n != 3 && n < 10);
        }
        let mut one = Members::new();
        one.insert(4);
        assert_eq!(one.pick_other(&mut rng, 4), None);
    }
}
