//! Live connections by node id, so that every request to a peer after the first one
//! reuses a connection, whichever side opened it.
//!
//! # Rules
//! - At most one cached connection per peer. If both sides dialed each other at the same
//!   moment, both keep the connection opened by the node with the smaller id, so the
//!   pair converges on one connection (the other idles out).
//! - A handshake from a peer whose cached connection is older than one handshake can take
//!   is no simultaneous dial: the peer started over (it restarted, or dropped the old
//!   connection), so the new connection replaces the old one, which is never reused.
//! - `addrs` maps the address a connection was made with (for connections the peer
//!   opened: its source address, which is its listening address since each node dials
//!   from its listening socket) to the proved node id, for requests that do not name
//!   the peer. An entry lives as long as a connection backs it.
//! - `dials` holds the handshakes in progress by address; concurrent requests to an
//!   address wait for the same one.
//! - Dead connections leave when their connection task ends ([`Cache::forget`]), and are
//!   skipped by [`Cache::live`] until then.
//! - Each entry remembers when it was last used (a request either way). Above the
//!   connection limit, [`Cache::evict_idle`] gives up the least recently used entries that
//!   have been idle long enough to have no request in flight.

use crate::endpoint::DialResult;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use voidmesh_proto::NodeId;

/// One cached connection.
struct Peer {
    /// The connection.
    conn: quinn::Connection,
    /// Whether we opened it; decides which of two simultaneous connections stays.
    outbound: bool,
    /// When it was cached.
    since: Instant,
    /// When a request last went either way on it.
    last_used: Instant,
}

/// The connection cache of one endpoint (see the module doc).
#[derive(Default)]
pub(crate) struct Cache {
    /// The connection used for each peer.
    peers: HashMap<NodeId, Peer>,
    /// Node id proved at each address by a cached connection.
    addrs: HashMap<SocketAddr, NodeId>,
    /// Dials in progress, by address.
    dials: HashMap<SocketAddr, watch::Receiver<Option<DialResult>>>,
}

impl Cache {
    /// A live connection to `to`: to the node `expect` if given (at any address, since
    /// the id is what matters), else to whichever node was proved at `to`.
    /// Marks it used at `now`.
    pub(crate) fn live(
        &mut self,
        to: SocketAddr,
        expect: Option<NodeId>,
        now: Instant,
    ) -> Option<(quinn::Connection, NodeId)> {
        let to = canonical(to);
        let id = expect.or_else(|| self.addrs.get(&to).copied())?;
        let peer = self.peers.get_mut(&id)?;
        if peer.conn.close_reason().is_some() {
            return None;
        }
        if expect.is_none() && remote(&peer.conn) != to {
            return None;
        }
        peer.last_used = now;
        Some((peer.conn.clone(), id))
    }

    /// The node proved at `to` by a live cached connection, if any.
    pub(crate) fn proved_at(&self, to: SocketAddr) -> Option<NodeId> {
        let to = canonical(to);
        let id = self.addrs.get(&to)?;
        let peer = self.peers.get(id)?;
        (peer.conn.close_reason().is_none() && remote(&peer.conn) == to).then_some(*id)
    }

    /// Marks `conn` used at `now` if it is the one cached for `peer` (the peer sent us a
    /// request on it).
    pub(crate) fn touch(&mut self, peer: NodeId, conn: &quinn::Connection, now: Instant) {
        if let Some(p) = self.peers.get_mut(&peer) {
            if p.conn.stable_id() == conn.stable_id() {
                p.last_used = now;
            }
        }
    }

    /// Whether no connection is cached.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// While more than `max` connections are cached, removes the least recently used one
    /// among those unused for at least `idle_for`, and returns the removed connections
    /// (for the caller to close). Busy connections are never taken, so the cache may stay
    /// above `max` for a while.
    pub(crate) fn evict_idle(
        &mut self,
        max: usize,
        idle_for: Duration,
        now: Instant,
    ) -> Vec<quinn::Connection> {
        if self.peers.len() <= max {
            return Vec::new();
        }
        let mut idle: Vec<(Instant, NodeId)> = self
            .peers
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.last_used) >= idle_for)
            .map(|(id, p)| (p.last_used, *id))
            .collect();
        idle.sort_unstable();
        let excess = self.peers.len() - max;
        let mut evicted = Vec::new();
        for (_, id) in idle.into_iter().take(excess) {
            if let Some(p) = self.peers.remove(&id) {
                let addr = remote(&p.conn);
                if self.addrs.get(&addr) == Some(&id) {
                    self.addrs.remove(&addr);
                }
                evicted.push(p.conn);
            }
        }
        evicted
    }

    /// The dial to `to` in progress, if any.
    pub(crate) fn dial_in_progress(
        &self,
        to: SocketAddr,
    ) -> Option<watch::Receiver<Option<DialResult>>> {
        self.dials.get(&canonical(to)).cloned()
    }

    /// Records a dial to `to` that others may wait on.
    pub(crate) fn start_dial(&mut self, to: SocketAddr, rx: watch::Receiver<Option<DialResult>>) {
        self.dials.insert(canonical(to), rx);
    }

    /// Forgets the dial to `to` (it has finished).
    pub(crate) fn end_dial(&mut self, to: SocketAddr) {
        self.dials.remove(&canonical(to));
    }

    /// Caches an established connection to `peer`. `we_are_smaller` is whether our id is
    /// below the peer's: the connection opened by the smaller id wins a tie between
    /// connections cached less than `handshake_time` apart; an older one is replaced.
    pub(crate) fn insert(
        &mut self,
        conn: quinn::Connection,
        peer: NodeId,
        (outbound, we_are_smaller): (bool, bool),
        handshake_time: Duration,
        now: Instant,
    ) {
        let keep_old = match self.peers.get(&peer) {
            Some(old)
                if old.conn.close_reason().is_none()
                    && now.saturating_duration_since(old.since) < handshake_time =>
            {
                let preferred_outbound = we_are_smaller;
                old.outbound == preferred_outbound || outbound != preferred_outbound
            }
            _ => false,
        };
        if keep_old {
            return;
        }
        if let Some(old) = self.peers.get(&peer) {
            let old_addr = remote(&old.conn);
            if self.addrs.get(&old_addr) == Some(&peer) {
                self.addrs.remove(&old_addr);
            }
        }
        self.addrs.insert(remote(&conn), peer);
        self.peers.insert(
            peer,
            Peer {
                conn,
                outbound,
                since: now,
                last_used: now,
            },
        );
    }

    /// Drops `conn` from the cache if it is the one cached for `peer`.
    pub(crate) fn forget(&mut self, peer: NodeId, conn: &quinn::Connection) {
        let cached = self
            .peers
            .get(&peer)
            .is_some_and(|p| p.conn.stable_id() == conn.stable_id());
        if cached {
            self.peers.remove(&peer);
            let addr = remote(conn);
            if self.addrs.get(&addr) == Some(&peer) {
                self.addrs.remove(&addr);
            }
        }
    }

    /// Removes and returns the connection cached for `peer`.
    pub(crate) fn take(&mut self, peer: &NodeId) -> Option<quinn::Connection> {
        let conn = self.peers.remove(peer)?.conn;
        let addr = remote(&conn);
        if self.addrs.get(&addr) == Some(peer) {
            self.addrs.remove(&addr);
        }
        Some(conn)
    }

    /// Forgets everything (the endpoint is closing) and returns the connections that
    /// were cached.
    pub(crate) fn clear(&mut self) -> Vec<quinn::Connection> {
        self.addrs.clear();
        self.dials.clear();
        self.peers.drain().map(|(_, entry)| entry.conn).collect()
    }
}

/// The peer address of `conn`, IPv4-mapped IPv6 addresses written as IPv4.
pub(crate) fn remote(conn: &quinn::Connection) -> SocketAddr {
    canonical(conn.remote_address())
}

/// `addr` with an IPv4-mapped IPv6 address (as seen on dual-stack sockets) written as
/// IPv4, so that the same peer has one address whichever way the socket reports it.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_mapped_addresses_are_written_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:4000".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let v6: SocketAddr = "[::1]:4000".parse().unwrap();
        assert_eq!(canonical(mapped), v4);
        assert_eq!(canonical(v4), v4);
        assert_eq!(canonical(v6), v6);
    }
}
