//! The VoidPhone API servers: framing, the shared TCP listener, and one handler per module.

pub mod codec;
pub mod dht;
pub mod gossip;
pub mod server;

pub use codec::{ApiCodec, FrameError};
