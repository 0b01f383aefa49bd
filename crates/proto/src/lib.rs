//! Wire formats of voidmesh, and nothing else: no sockets, no clocks.
//!
//! # Layout
//! - [`id`]: 256-bit identifiers ([`Key`], [`NodeId`]) and XOR distance.
//! - [`frame`]: the `size | type` headers of API and peer messages, checked before parsing.
//! - [`dht_api`]: the VoidPhone DHT API messages (650–653), byte-exact with the spec.
//! - [`kad_msg`]: Kademlia peer-to-peer messages (660–680), see `docs/protocol.md`.
//! - [`chat_msg`]: chat session messages (700–709) and signed room posts.
//! - [`signed`]: signed mutable records (key, signature, wire form).
//! - [`wire`]: small cursor helpers shared by the decoders.
//!
//! Every decoder takes a whole frame and either returns a typed message or a
//! [`DecodeError`]; none of them panics on any input (property-tested).
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod chat_msg;
pub mod dht_api;
pub mod frame;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod gossip_api;
pub mod gossip_msg;
pub mod id;
pub mod kad_msg;
pub mod signed;
pub mod wire;

pub use chat_msg::{ChatMessage, RoomPost};
pub use dht_api::DhtMessage;
pub use frame::{DecodeError, API_HEADER_LEN, PEER_HEADER_LEN};
pub use gossip_api::GossipApiMessage;
pub use gossip_msg::{GossipPeerMessage, Proof};
pub use id::{id_puzzle_ok, leading_zero_bits, Distance, Key, NodeId, PublicKey};
pub use kad_msg::{Contact, KadMessage, Version};
pub use signed::{SignedRecord, SignedRecordError};
