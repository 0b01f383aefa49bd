//! The node's UDP sockets: one per `p2p_address`, shared by the modules (DHT, gossip,
//! chat) whose sections name the same address.
//!
//! On a shared socket the DHT and gossip each take the overlay requests of their own
//! message types, and each QUIC user (the DHT's and gossip's large values, chat
//! sessions) speaks its own ALPN on the one quinn endpoint; see
//! [`voidmesh_net::overlay::Overlay::subscribe`] and
//! [`voidmesh_net::StreamSocket::add`]. A socket closes when its last user closes.

use crate::NodeError;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio::sync::mpsc;
use voidmesh_net::overlay::{DatagramRequest, Overlay, OverlayConfig};
use voidmesh_net::{Endpoint, EndpointConfig, Identity, Inbound, StreamSocket};
use voidmesh_proto::NodeId;

/// The sockets bound so far while a process starts its modules, by the address asked
/// for and the address bound: each `:0` gets a socket of its own, which a later module
/// configured with the bound address shares. Hold it only while the modules start: a
/// socket closes when its last module has closed and this registry is gone.
#[derive(Default)]
pub struct P2pSockets {
    bound: Mutex<HashMap<SocketAddr, P2pSocket>>,
}

impl P2pSockets {
    /// No socket yet.
    pub fn new() -> P2pSockets {
        P2pSockets::default()
    }

    /// The socket at `addr`: the one bound earlier here for the same address, or a new
    /// one (with `config`; a shared socket keeps the settings of its first user).
    ///
    /// # Errors
    /// [`NodeError::Bind`] when the address cannot be bound, or is already bound here
    /// for another hostkey (one socket speaks for one node id).
    pub fn bind(
        &self,
        what: &'static str,
        identity: &Identity,
        addr: SocketAddr,
        config: OverlayConfig,
    ) -> Result<P2pSocket, NodeError> {
        let bind_error = |reason: String| NodeError::Bind { what, addr, reason };
        let mut bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(socket) = bound.get(&addr) {
            if socket.node_id != identity.node_id() {
                return Err(bind_error(
                    "already used by this process with another hostkey".into(),
                ));
            }
            return Ok(socket.clone());
        }
        let socket = P2pSocket::bind(identity, addr, config).map_err(bind_error)?;
        if addr.port() != 0 {
            bound.insert(addr, socket.clone());
        }
        // A module configured with the address the OS picked shares it too.
        bound.insert(socket.local_addr(), socket.clone());
        Ok(socket)
    }
}

/// One UDP socket: the datagram overlay and the QUIC endpoint on it.
#[derive(Clone, Debug)]
pub struct P2pSocket {
    overlay: Overlay,
    streams: StreamSocket,
    node_id: NodeId,
}

impl P2pSocket {
    /// Binds a socket of its own at `addr` (see [`P2pSockets::bind`] for a shared one).
    ///
    /// # Errors
    /// The OS's or the QUIC setup's reason, as text.
    pub fn bind(
        identity: &Identity,
        addr: SocketAddr,
        config: OverlayConfig,
    ) -> Result<P2pSocket, String> {
        let overlay = Overlay::open(identity, addr, config).map_err(|e| e.to_string())?;
        let quic = overlay
            .quic_socket()
            .ok_or_else(|| "the overlay's QUIC side is taken".to_owned())?;
        let streams = StreamSocket::bind_on(identity, quic).map_err(|e| e.to_string())?;
        Ok(P2pSocket {
            overlay,
            streams,
            node_id: identity.node_id(),
        })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.overlay.local_addr()
    }

    /// A module's share of the overlay: the peer requests whose payload `accepts`.
    pub fn overlay(
        &self,
        accepts: fn(&[u8]) -> bool,
    ) -> (Overlay, mpsc::Receiver<DatagramRequest>) {
        self.overlay.subscribe(accepts)
    }

    /// A module's QUIC protocol on this socket (its own ALPN).
    ///
    /// # Errors
    /// When the settings are refused or the ALPN is already served here.
    pub fn streams(
        &self,
        config: EndpointConfig,
    ) -> Result<(Endpoint, mpsc::Receiver<Inbound>), voidmesh_net::NetError> {
        self.streams.add(config)
    }
}
