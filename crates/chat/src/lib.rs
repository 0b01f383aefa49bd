//! The voidmesh chat: people find each other by `name#id` through the DHT and talk over
//! direct, authenticated QUIC sessions; public rooms spread signed posts by gossip;
//! everything sent and received is kept in SQLite.
//!
//! # Layout
//! - [`user`]: the user key, its short id and `name#id` handles.
//! - [`presence`]: the signed presence record and the directory entry that leads to it.
//! - [`session`]: the session handshake (user keys bound to node ids) and its checks.
//! - [`sessions`]: the open sessions, one per peer, and the ids that name them.
//! - [`room`]: signed room posts and the gossip data type of a room.
//! - [`history`]: the SQLite history.
//! - [`command`] / [`event`]: what the user asks for and what the engine reports.
//! - [`engine`]: the running chat: sessions, rooms, presence upkeep.
//! - [`peer`]: a whole peer in one process (DHT + gossip + chat), as `voidmesh chat` runs it.
//! - [`plain`] and [`tui`]: the line mode and the terminal UI.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod clock;
pub mod command;
pub mod conversations;
pub mod engine;
pub mod event;
pub mod history;
pub mod liveness;
pub mod peer;
pub mod plain;
pub mod presence;
pub mod room;
pub mod session;
pub mod sessions;
pub mod signals;
pub mod tui;
pub mod user;

pub use command::{Command, Target};
pub use engine::{ChatConfig, ChatUi};
pub use event::Event;
pub use user::{Handle, UserId, UserKey};

/// Errors of the chat library.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// A handle, id or name that does not parse.
    #[error("{0}")]
    BadHandle(String),
    /// The user key file cannot be read or written.
    #[error("user key: {0}")]
    UserKey(String),
    /// The history database failed.
    #[error("history: {0}")]
    History(String),
    /// The peer could not start.
    #[error("{0}")]
    Start(String),
    /// The terminal failed.
    #[error("terminal: {0}")]
    Terminal(String),
}
