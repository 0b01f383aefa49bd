//! The overlay transport: hostkey identity, a QUIC endpoint whose certificates prove node
//! ids, and authenticated request/response (one QUIC stream per request).
//!
//! Knows nothing about Kademlia or gossip: it moves framed peer messages
//! (`size u32 | type u16 | body`, see `voidmesh_proto::frame`) between verified node ids.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

// PLACEHOLDER: the public API below is the contract with crates/node.
// The implementation replaces the bodies and may add modules and methods.

use bytes::Bytes;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use voidmesh_proto::NodeId;

/// Errors of the transport.
#[derive(Debug, Error)]
pub enum NetError {
    /// Placeholder.
    #[error("not implemented")]
    Todo,
}

/// Errors loading or creating a hostkey.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// Placeholder.
    #[error("not implemented")]
    Todo,
}

/// This node's Ed25519 hostkey and the node id derived from it.
pub struct Identity {}

impl Identity {
    /// A fresh random hostkey.
    pub fn generate() -> Identity {
        unimplemented!()
    }
    /// Parses a PKCS#8 PEM Ed25519 private key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Identity, IdentityError> {
        let _ = pem;
        unimplemented!()
    }
    /// The key as PKCS#8 PEM.
    pub fn to_pkcs8_pem(&self) -> String {
        unimplemented!()
    }
    /// Reads a PEM hostkey file.
    pub fn load(path: &Path) -> Result<Identity, IdentityError> {
        let _ = path;
        unimplemented!()
    }
    /// Writes the PEM hostkey to `path` (mode 0600), failing if it exists.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let _ = path;
        unimplemented!()
    }
    /// SHA-256 of the public key's DER SubjectPublicKeyInfo.
    pub fn node_id(&self) -> NodeId {
        unimplemented!()
    }
}

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

/// Sends the one reply to an inbound request.
#[derive(Debug)]
pub struct Responder {
    tx: oneshot::Sender<Bytes>,
}

impl Responder {
    /// Sends `reply` on the request's stream and finishes it.
    pub fn send(self, reply: Bytes) {
        let _ = self.tx.send(reply);
    }
}

/// A cloneable handle to a QUIC endpoint; the endpoint closes when the last handle drops
/// or on [`Endpoint::close`].
#[derive(Clone)]
pub struct Endpoint {}

impl Endpoint {
    /// Binds a UDP socket at `addr` and starts accepting peers. Inbound messages arrive on
    /// the returned channel.
    pub fn bind(
        identity: &Identity,
        addr: SocketAddr,
        config: EndpointConfig,
    ) -> Result<(Endpoint, mpsc::Receiver<Inbound>), NetError> {
        let _ = (identity, addr, config);
        unimplemented!()
    }
    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        unimplemented!()
    }
    /// Sends a request to `to` and waits for the reply. With `expect`, the peer must prove
    /// that id; without, its id is learned from the handshake.
    pub async fn request(
        &self,
        to: SocketAddr,
        expect: Option<NodeId>,
        message: Bytes,
    ) -> Result<Response, NetError> {
        let _ = (to, expect, message);
        unimplemented!()
    }
    /// Sends a one-way message (no reply).
    pub async fn send(
        &self,
        to: SocketAddr,
        expect: Option<NodeId>,
        message: Bytes,
    ) -> Result<NodeId, NetError> {
        let _ = (to, expect, message);
        unimplemented!()
    }
    /// Closes every connection and the socket.
    pub fn close(&self) {
        unimplemented!()
    }
}
