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
//! # Wire use of QUIC
//! A request is a bidirectional stream carrying one frame then FIN; the reply is one
//! frame then FIN on the same stream. A one-way message is a unidirectional stream with
//! one frame then FIN. A stream whose frame is refused (size below 6 or above the limit,
//! bytes after the frame) is reset with an error code; a request the application drops
//! is reset with the "no reply" code ([`NetError::NoReply`] at the requester).
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod cache;
mod endpoint;
mod error;
mod frame;
pub mod identity;
mod tls;

pub use endpoint::{
    Endpoint, DEFAULT_MAX_CONNECTIONS, INBOUND_QUEUE, MAX_ONE_WAY_PER_CONNECTION,
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
    /// The reply frame.
    pub message: Bytes,
}

/// A message a peer sent us.
#[derive(Debug)]
pub struct Inbound {
    /// The sender's node id, proved by its certificate.
    pub from: NodeId,
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
    /// Sends `reply` on the request's stream and finishes it. A reply larger than
    /// `max_message_size` is not sent (the stream is reset).
    pub fn send(self, reply: Bytes) {
        let _ = self.tx.send(reply);
    }
}
