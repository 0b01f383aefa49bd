//! The open sessions of one user: one per peer, and every session id that names it.
//!
//! Two people often type `/chat` to each other at the same moment. Each side then accepts
//! the other's SESSION OPEN and gets its own accepted too, so two ids name one
//! conversation, and the order in which each side learns of them is a race. The table
//! keeps every id either side agreed to valid until the session ends, and sends with the
//! latest one, so both ends talk whatever the order (before, one side could drop the
//! id the other kept sending with, and the session ended with "no such session").
//!
//! An id we offered is also recognised while our open is still on its way back: the peer
//! may accept it and send a text before the acceptance reaches us.

use crate::user::Handle;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use voidmesh_proto::chat_msg::SessionId;
use voidmesh_proto::NodeId;

/// An open session with one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The id our texts carry: the latest one both sides agreed to.
    pub id: SessionId,
    /// The peer's node, proven by the QUIC handshake.
    pub node: NodeId,
    /// Where the peer's chat endpoint listens.
    pub addr: SocketAddr,
    /// Our last text counter.
    pub sent: u64,
}

/// Whether an agreed session is a new conversation or joins the open one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agreed {
    /// No session with the peer was open (or it was with another node): a new one.
    New,
    /// A session with the peer on the same node was open; the new id now names it too.
    Joined,
}

/// Most ids one session keeps valid: the peer may open again and again, and each open
/// would otherwise add an id for good.
pub const MAX_IDS_PER_SESSION: usize = 4;

/// Open sessions by peer, and the ids that name them.
#[derive(Debug, Default)]
pub struct Sessions {
    by_peer: HashMap<Handle, Open>,
    ids: HashMap<SessionId, Handle>,
    /// Opens we sent and have no answer to yet.
    offered: HashMap<SessionId, Offer>,
}

/// An open session and the ids that name it, oldest first.
#[derive(Debug)]
struct Open {
    session: Session,
    ids: VecDeque<SessionId>,
}

/// A SESSION OPEN we sent.
#[derive(Debug)]
struct Offer {
    peer: Handle,
    node: NodeId,
    addr: SocketAddr,
}

impl Sessions {
    /// Records that `peer` and we agreed to session `id` (we opened it and the peer
    /// accepted, or the peer opened it and we accepted). Our texts carry `id` from now on;
    /// the last [`MAX_IDS_PER_SESSION`] ids agreed with the same node stay valid until the
    /// session ends.
    pub fn agreed(
        &mut self,
        peer: Handle,
        id: SessionId,
        node: NodeId,
        addr: SocketAddr,
    ) -> Agreed {
        let outcome = match self.by_peer.get_mut(&peer) {
            Some(open) if open.session.node == node => {
                open.session.id = id;
                open.session.addr = addr;
                if !open.ids.contains(&id) {
                    open.ids.push_back(id);
                }
                if open.ids.len() > MAX_IDS_PER_SESSION {
                    if let Some(oldest) = open.ids.pop_front() {
                        self.ids.remove(&oldest);
                    }
                }
                Agreed::Joined
            }
            _ => {
                let session = Session {
                    id,
                    node,
                    addr,
                    sent: 0,
                };
                let open = Open {
                    session,
                    ids: VecDeque::from([id]),
                };
                // A session with another node of this user: its ids can never match again.
                if let Some(old) = self.by_peer.insert(peer.clone(), open) {
                    self.forget(&old);
                }
                Agreed::New
            }
        };
        self.ids.insert(id, peer);
        outcome
    }

    /// Records that we sent a SESSION OPEN for `id` to `peer` at `node`; see
    /// [`accepted_offer`](Self::accepted_offer) and [`withdraw`](Self::withdraw).
    pub fn offer(&mut self, peer: Handle, id: SessionId, node: NodeId, addr: SocketAddr) {
        self.offered.insert(id, Offer { peer, node, addr });
    }

    /// Our open for `id` got its answer (accepted or not): it is no longer pending.
    pub fn withdraw(&mut self, id: &SessionId) {
        self.offered.remove(id);
    }

    /// `from` used `id` before its acceptance reached us: if we offered `id` to that node,
    /// the peer accepted it, so the session is agreed now. Returns the peer and whether
    /// the session is new.
    pub fn accepted_offer(&mut self, id: &SessionId, from: &NodeId) -> Option<(Handle, Agreed)> {
        if self.offered.get(id)?.node != *from {
            return None;
        }
        let offer = self.offered.remove(id)?;
        let agreed = self.agreed(offer.peer.clone(), *id, offer.node, offer.addr);
        Some((offer.peer, agreed))
    }

    /// The peer of session `id`, if that session is open and `from` is its node.
    pub fn peer_of(&self, id: &SessionId, from: &NodeId) -> Option<Handle> {
        let peer = self.ids.get(id)?;
        let open = self.by_peer.get(peer)?;
        (open.session.node == *from).then(|| peer.clone())
    }

    /// The open session with `peer`.
    pub fn get_mut(&mut self, peer: &Handle) -> Option<&mut Session> {
        self.by_peer.get_mut(peer).map(|open| &mut open.session)
    }

    /// The id our texts to `peer` carry, if a session is open.
    pub fn current_id(&self, peer: &Handle) -> Option<SessionId> {
        self.by_peer.get(peer).map(|open| open.session.id)
    }

    /// Whether a session with `peer` is open.
    pub fn is_open(&self, peer: &Handle) -> bool {
        self.by_peer.contains_key(peer)
    }

    /// The peers with an open session, sorted.
    pub fn peers(&self) -> Vec<Handle> {
        let mut peers: Vec<Handle> = self.by_peer.keys().cloned().collect();
        peers.sort();
        peers
    }

    /// Ends the session with `peer`: none of its ids is valid any more.
    pub fn end(&mut self, peer: &Handle) -> Option<Session> {
        let open = self.by_peer.remove(peer)?;
        self.forget(&open);
        Some(open.session)
    }

    /// Drops the ids of a session that is over.
    fn forget(&mut self, open: &Open) {
        for id in &open.ids {
            self.ids.remove(id);
        }
    }

    /// Ends every session, returning them.
    pub fn end_all(&mut self) -> Vec<Session> {
        self.ids.clear();
        self.offered.clear();
        self.by_peer.drain().map(|(_, open)| open.session).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bob() -> Handle {
        Handle::new("bob", &[2; 32])
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:7002".parse().unwrap()
    }

    const BOB_NODE: NodeId = voidmesh_proto::Key([9; 32]);

    /// Both sides opened at once, in either order of arrival: the ids of both opens
    /// name the session, texts go out with the latest, the session opens once.
    #[test]
    fn simultaneous_opens_keep_both_ids_whatever_the_order() {
        for (first, second) in [([1; 16], [2; 16]), ([2; 16], [1; 16])] {
            let mut table = Sessions::default();
            assert_eq!(table.agreed(bob(), first, BOB_NODE, addr()), Agreed::New);
            assert_eq!(
                table.agreed(bob(), second, BOB_NODE, addr()),
                Agreed::Joined
            );
            assert_eq!(table.peer_of(&first, &BOB_NODE), Some(bob()));
            assert_eq!(table.peer_of(&second, &BOB_NODE), Some(bob()));
            assert_eq!(table.current_id(&bob()), Some(second));
            assert_eq!(table.peers(), vec![bob()]);
        }
    }

    /// A peer that opens again and again does not make the table grow.
    #[test]
    fn a_session_keeps_only_its_latest_ids() {
        let mut table = Sessions::default();
        for n in 0..100u8 {
            table.agreed(bob(), [n; 16], BOB_NODE, addr());
        }
        assert_eq!(table.ids.len(), MAX_IDS_PER_SESSION);
        assert_eq!(table.peer_of(&[99; 16], &BOB_NODE), Some(bob()));
        assert_eq!(table.peer_of(&[96; 16], &BOB_NODE), Some(bob()));
        assert_eq!(table.peer_of(&[95; 16], &BOB_NODE), None);
        table.end(&bob());
        assert!(table.ids.is_empty());
    }

    #[test]
    fn the_text_counter_survives_a_joined_open() {
        let mut table = Sessions::default();
        table.agreed(bob(), [1; 16], BOB_NODE, addr());
        table.get_mut(&bob()).unwrap().sent = 3;
        table.agreed(bob(), [2; 16], BOB_NODE, addr());
        assert_eq!(table.get_mut(&bob()).unwrap().sent, 3);
    }

    #[test]
    fn ending_invalidates_every_id() {
        let mut table = Sessions::default();
        table.agreed(bob(), [1; 16], BOB_NODE, addr());
        table.agreed(bob(), [2; 16], BOB_NODE, addr());
        let ended = table.end(&bob()).unwrap();
        assert_eq!(ended.id, [2; 16]);
        assert_eq!(table.peer_of(&[1; 16], &BOB_NODE), None);
        assert_eq!(table.peer_of(&[2; 16], &BOB_NODE), None);
        assert!(!table.is_open(&bob()));
        assert_eq!(table.end(&bob()), None);
    }

    #[test]
    fn an_id_only_counts_from_the_node_of_its_session() {
        let mut table = Sessions::default();
        table.agreed(bob(), [1; 16], BOB_NODE, addr());
        assert_eq!(table.peer_of(&[1; 16], &voidmesh_proto::Key([8; 32])), None);
        assert_eq!(table.peer_of(&[7; 16], &BOB_NODE), None);
    }

    /// The peer accepted our open and sent a text before the acceptance reached us.
    #[test]
    fn an_offered_id_counts_once_its_node_uses_it() {
        let mut table = Sessions::default();
        table.offer(bob(), [1; 16], BOB_NODE, addr());
        assert_eq!(table.peer_of(&[1; 16], &BOB_NODE), None);
        let stranger = voidmesh_proto::Key([8; 32]);
        assert_eq!(table.accepted_offer(&[1; 16], &stranger), None);
        assert_eq!(
            table.accepted_offer(&[1; 16], &BOB_NODE),
            Some((bob(), Agreed::New))
        );
        assert_eq!(table.peer_of(&[1; 16], &BOB_NODE), Some(bob()));
        // The acceptance arriving afterwards changes nothing.
        table.withdraw(&[1; 16]);
        assert_eq!(
            table.agreed(bob(), [1; 16], BOB_NODE, addr()),
            Agreed::Joined
        );
        assert_eq!(table.accepted_offer(&[1; 16], &BOB_NODE), None);
    }

    #[test]
    fn a_withdrawn_offer_counts_for_nothing() {
        let mut table = Sessions::default();
        table.offer(bob(), [1; 16], BOB_NODE, addr());
        table.withdraw(&[1; 16]);
        assert_eq!(table.accepted_offer(&[1; 16], &BOB_NODE), None);
    }

    /// The same user on another node (a new machine) starts a new session; ids of the
    /// old node are dropped.
    #[test]
    fn another_node_of_the_peer_starts_afresh() {
        let mut table = Sessions::default();
        table.agreed(bob(), [1; 16], BOB_NODE, addr());
        let other = voidmesh_proto::Key([8; 32]);
        assert_eq!(table.agreed(bob(), [2; 16], other, addr()), Agreed::New);
        assert_eq!(table.peer_of(&[1; 16], &BOB_NODE), None);
        assert_eq!(table.peer_of(&[2; 16], &other), Some(bob()));
    }
}
