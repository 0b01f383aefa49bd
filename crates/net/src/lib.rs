//! The overlay transport: hostkey identity, a QUIC endpoint whose certificates prove node
//! ids, and authenticated request/response (one QUIC stream per request).
//!
//! Knows nothing about Kademlia or gossip: it moves framed peer messages
//! (`size u32 | type u16 | body`, see `voidmesh_proto::frame`) between verified node ids.
//!
//! # Layout
//! - [`identity`]: the Ed25519 hostkey (PEM PKCS#8) and `node_id = SHA-256(SPKI)`.
//! - `tls`: self-signed certificates and the verifiers that turn a handshake into a
//!   proved node id (mutual TLS 1.3, Ed25519 only).
//! - `endpoint`: the quinn endpoint, its tasks, request/response and one-way messages.
//! - `cache`: live connections by node id, shared dials.
//! - `frame`: reading one bounded frame per stream.
//!
//! # Transport protocol (for a second implementation)
//! - QUIC v1 over UDP; one socket per node both accepts and dials, so the source address
//!   of a node's connections is its listening address.
//! - TLS 1.3 only, mutual: each side presents one self-signed X.509 certificate whose key
//!   is the node's Ed25519 hostkey and signs the handshake with it (signature scheme
//!   `ed25519` only). No chain, name or validity checks. The peer's node id is
//!   `SHA-256(DER SubjectPublicKeyInfo)` of that key (44-byte SPKI for Ed25519). ALPN is
//!   the configured protocol name; a peer with another one fails the handshake.
//! - A request is a bidirectional stream carrying one peer frame
//!   (`size u32 | type u16 | body`, size counts the header) then FIN; the reply is one
//!   frame then FIN on the same stream. A one-way message is a unidirectional stream
//!   carrying one frame then FIN. Frames above the receiver's limit (128 KiB by default)
//!   are refused.
//! - Stream error codes (RESET_STREAM / STOP_SENDING): 1 message too large, 2 malformed
//!   (size below 6, stream ended inside the frame, bytes after it), 3 no reply (the
//!   application dropped the request, or did not answer within the request timeout).
//! - Connection close codes: 0 endpoint closed, 4 no usable certificate, 5 idle
//!   connection evicted (the closing side discards anything that arrives after it, so a
//!   request in flight may be retried on a new connection), 6 disconnected by the
//!   application (e.g. the peer misbehaved).
//! - No keep-alives: a connection with no traffic for the idle timeout (60 s by default)
//!   closes silently. Stateless-reset keys are derived from the hostkey, so a node that
//!   restarts with the same key resets its peers' stale connections at once.
//!
//! # Resources
//! Each open connection costs about 34 KB in this process (quinn's per-connection state,
//! TLS keys, a task), so 100 nodes fully meshed in one process take about 345 MB. The
//! cost is per connection, not per request: [`Endpoint::set_max_connections`] bounds it
//! by closing the least recently used idle connections. A warm request/response on
//! loopback takes about 60–90 µs.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod cache;
pub mod datagram;
mod endpoint;
mod error;
mod frame;
pub mod identity;
pub mod overlay;
mod tls;

pub use endpoint::{
    Endpoint, StreamSocket, DEFAULT_MAX_CONNECTIONS, INBOUND_QUEUE, MAX_ONE_WAY_PER_CONNECTION,
    MAX_REQUESTS_PER_CONNECTION,
};
pub use error::NetError;
pub use identity::{node_id_from_public_key, node_id_from_spki, Identity, IdentityError};

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;
use voidmesh_proto::NodeId;

/// Settings of one endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// ALPN protocol name; endpoints only talk to peers speaking the same one.
    pub alpn: Vec<u8>,
    /// How long a request may wait for its response.
    pub request_timeout: Duration,
    /// Largest message accepted in either direction, header included.
    pub max_message_size: usize,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for EndpointConfig {
    /// ALPN `voidmesh/1`, 1 s request timeout, [`voidmesh_proto::frame::MAX_PEER_MESSAGE`]
    /// bytes, 60 s idle timeout.
    fn default() -> Self {
        EndpointConfig {
            alpn: b"voidmesh/1".to_vec(),
            request_timeout: Duration::from_secs(1),
            max_message_size: voidmesh_proto::frame::MAX_PEER_MESSAGE,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A verified answer to a request.
#[derive(Debug)]
pub struct Response {
    /// The node that answered (proved by its certificate).
    pub from: NodeId,
    /// Its public key (proved by its certificate; `from` is derived from it).
    pub key: voidmesh_proto::PublicKey,
    /// The reply frame.
    pub message: Bytes,
}

/// A message a peer sent us.
#[derive(Debug)]
pub struct Inbound {
    /// The sender's node id, proved by its certificate.
    pub from: NodeId,
    /// The sender's public key (proved likewise; `from` is derived from it).
    pub key: voidmesh_proto::PublicKey,
    /// The sender's address as seen on the connection.
    pub addr: SocketAddr,
    /// The message frame.
    pub message: Bytes,
    /// Where to send the reply; `None` for one-way messages.
    pub reply: Option<Responder>,
}

/// Sends the one reply to an inbound request. Dropping it without sending resets the
/// request's stream, and the requester gets [`NetError::NoReply`] at once.
#[derive(Debug)]
pub struct Responder {
    /// Read by the stream's task, which writes the reply.
    tx: oneshot::Sender<Bytes>,
}

impl Responder {
    /// Sends `reply` on the request's stream and finishes it. A reply that is not one
    /// whole frame of at most `max_message_size` bytes is not sent (the stream is reset,
    /// and the requester gets [`NetError::NoReply`]).
    pub fn send(self, reply: Bytes) {
        let _ = self.tx.send(reply);
    }
}
