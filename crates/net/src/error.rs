//! Errors of the transport.

use std::net::SocketAddr;
use thiserror::Error;
use voidmesh_proto::NodeId;

/// Errors of the transport.
#[derive(Debug, Error)]
pub enum NetError {
    /// The socket could not be bound or used.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    /// The [`crate::EndpointConfig`] cannot be used.
    #[error("invalid endpoint configuration: {0}")]
    Config(String),
    /// The TLS configuration could not be built from the hostkey.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// No connection could be set up (unreachable, refused, or closed before the
    /// handshake finished).
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// Where we dialed.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The peer answered but the TLS handshake failed: another ALPN, a certificate that
    /// is not an Ed25519 self-signed one, or a bad handshake signature.
    #[error("handshake with {addr} failed: {reason}")]
    Handshake {
        /// Where we dialed.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The peer at the address proved a different node id than the one expected; nothing
    /// was sent to it.
    #[error("peer at {addr} is {actual}, not the expected {expected}")]
    WrongPeer {
        /// Where we dialed.
        addr: SocketAddr,
        /// The id the caller asked for.
        expected: NodeId,
        /// The id the peer proved.
        actual: NodeId,
    },
    /// No complete reply within the request timeout (dialing included).
    #[error("timed out")]
    Timeout,
    /// The connection to the peer broke while the message was in flight.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The peer took the request but dropped it without replying.
    #[error("the peer did not reply")]
    NoReply,
    /// The stream failed (reset or stopped by the peer).
    #[error("stream failed: {0}")]
    Stream(String),
    /// A message (ours or the peer's) is larger than the configured limit.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// Size of the message, from its header or its length.
        size: usize,
        /// The configured `max_message_size`.
        max: usize,
    },
    /// A message is not one whole `size u32 | type u16 | body` frame.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The endpoint was closed.
    #[error("endpoint is closed")]
    Closed,
}
