//! The voidmesh daemon: configuration, the VoidPhone API servers, and the tasks that
//! drive the sans-IO state machines (`voidmesh-kad`, `voidmesh-gossip`) over the QUIC
//! overlay (`voidmesh-net`).
//!
//! # Layout
//! - [`config`]: the INI file, typed, with precise errors.
//! - [`identity`]: which hostkey to use.
//! - [`dht`]: the DHT as a service: endpoint, driver task, [`dht::DhtHandle`].
//! - [`gossip`]: the gossip module as a service: endpoint, driver task, [`gossip::GossipHandle`].
//! - [`api`]: API framing, the shared TCP listener, the DHT and gossip connection handlers.
//! - [`service`]: whole modules (node + API server + joining), as `voidmesh dht`,
//!   `voidmesh gossip` and `voidmesh node` run them.
//! - [`socket`]: the UDP sockets, one per address, shared by the modules that name it.
//! - [`storage`]: records and contacts on disk (redb), group-committed.
//! - [`testnet`]: many modules in one process.
//! - [`client`]: a DHT API client (demo, benchmarks, tests).
//! - [`fuzz_checks`]: what the config and hostkey fuzz targets check.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod api;
pub mod client;
pub mod config;
pub mod dht;
pub mod fuzz_checks;
pub mod gossip;
pub mod identity;
pub mod private;
pub mod service;
pub mod socket;
pub mod storage;
pub mod testnet;

use std::net::SocketAddr;
use thiserror::Error;

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum NodeError {
    /// A socket could not be bound.
    #[error("cannot bind the {what} address {addr}: {reason}")]
    Bind {
        /// Which socket.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The OS's reason.
        reason: String,
    },
    /// The hostkey could not be loaded or created.
    #[error("hostkey: {0}")]
    Identity(String),
    /// The record store could not be opened.
    #[error("{0}")]
    Storage(String),
    /// Joining the network failed.
    #[error("joining the network failed: {0}")]
    Join(String),
}
