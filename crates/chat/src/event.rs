//! What the chat engine reports to the user interface, and its one-line rendering (the
//! plain mode prints exactly these lines; the terminal UI shows them in its log).

use crate::command::Target;
use crate::history::Entry;
use crate::user::Handle;
use std::fmt;
use std::net::SocketAddr;

/// Why a user could not be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Absence {
    /// No presence record exists (never online, or expired).
    NotFound,
    /// The user withdrew their presence (a signed tombstone).
    Gone,
    /// Something was found but failed a check (wrong key, bad signature, expired, ...).
    NotAuthentic(String),
}

/// An event for the user interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer is up and its presence published.
    Ready {
        /// Our handle.
        me: Handle,
        /// Where our chat endpoint listens.
        addr: SocketAddr,
    },
    /// Progress or a remark.
    Info(String),
    /// A lookup found the user online.
    Found {
        /// Who.
        handle: Handle,
        /// Their chat address.
        addr: SocketAddr,
    },
    /// A lookup did not find the user.
    NotFound {
        /// Who.
        handle: Handle,
        /// Why.
        why: Absence,
    },
    /// A session opened.
    SessionOpened {
        /// With whom.
        peer: Handle,
        /// Whether the other side opened it.
        by_peer: bool,
    },
    /// A session ended.
    SessionEnded {
        /// With whom.
        peer: Handle,
        /// Whether the other side ended it (else we did, or it failed).
        by_peer: bool,
    },
    /// A line we sent, shown at once; [`Event::Delivered`] or [`Event::Failed`] follows.
    Sent {
        /// Where.
        to: Target,
        /// Our counter for it (per session, or per room).
        seq: u64,
        /// The text.
        text: String,
    },
    /// The receiver acknowledged a line (rooms: the module took it for spreading).
    Delivered {
        /// Where.
        to: Target,
        /// Its counter.
        seq: u64,
    },
    /// A line could not be delivered.
    Failed {
        /// Where.
        to: Target,
        /// Its counter (0 if it never got one).
        seq: u64,
        /// Why.
        reason: String,
    },
    /// A line someone sent us in a session.
    Received {
        /// Who.
        from: Handle,
        /// Their clock, Unix ms.
        sent_at_ms: u64,
        /// The text.
        text: String,
    },
    /// A line posted to a room we joined.
    RoomMessage {
        /// Which room.
        room: String,
        /// Author.
        from: Handle,
        /// Author's clock, Unix ms.
        sent_at_ms: u64,
        /// The text.
        text: String,
    },
    /// We joined a room.
    Joined(String),
    /// We left a room.
    Left(String),
    /// Answer to `/sessions`.
    Sessions {
        /// Open sessions.
        sessions: Vec<Handle>,
        /// Joined rooms.
        rooms: Vec<String>,
    },
    /// Answer to `/history`.
    History {
        /// Whose.
        target: Target,
        /// Oldest first.
        entries: Vec<Entry>,
    },
    /// A request failed.
    Error(String),
    /// The engine stopped (after `/quit`).
    Stopped,
}

/// `HH:MM:SS` (UTC) of a Unix time in milliseconds.
pub fn clock(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

impl fmt::Display for Absence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Absence::NotFound => f.write_str("not found"),
            Absence::Gone => f.write_str("gone (signed off)"),
            Absence::NotAuthentic(why) => write!(f, "not authentic: {why}"),
        }
    }
}

impl fmt::Display for Event {
    /// One line, starting with a fixed word that scripts can match on.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Ready { me, addr } => write!(f, "ready {me} chat={addr}"),
            Event::Info(text) => write!(f, "info {text}"),
            Event::Found { handle, addr } => write!(f, "found {handle} at {addr}"),
            Event::NotFound { handle, why } => write!(f, "not-found {handle}: {why}"),
            Event::SessionOpened { peer, by_peer } => {
                let by = if *by_peer { "peer" } else { "me" };
                write!(f, "session-opened {peer} by={by}")
            }
            Event::SessionEnded { peer, by_peer } => {
                let by = if *by_peer { "peer" } else { "me" };
                write!(f, "session-ended {peer} by={by}")
            }
            Event::Sent { to, seq, text } => write!(f, "sent {to} #{seq}: {text}"),
            Event::Delivered { to, seq } => write!(f, "delivered {to} #{seq}"),
            Event::Failed { to, seq, reason } => write!(f, "failed {to} #{seq}: {reason}"),
            Event::Received {
                from,
                sent_at_ms,
                text,
            } => write!(f, "msg {from} {}: {text}", clock(*sent_at_ms)),
            Event::RoomMessage {
                room,
                from,
                sent_at_ms,
                text,
            } => write!(f, "room #{room} {from} {}: {text}", clock(*sent_at_ms)),
            Event::Joined(room) => write!(f, "joined #{room}"),
            Event::Left(room) => write!(f, "left #{room}"),
            Event::Sessions { sessions, rooms } => {
                f.write_str("sessions")?;
                for s in sessions {
                    write!(f, " {s}")?;
                }
                for r in rooms {
                    write!(f, " #{r}")?;
                }
                Ok(())
            }
            Event::History { target, entries } => {
                write!(f, "history {target} {} messages", entries.len())?;
                for e in entries {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
            Event::Error(text) => write!(f, "error {text}"),
            Event::Stopped => f.write_str("stopped"),
        }
    }
}
