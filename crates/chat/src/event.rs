//! What the chat engine reports to the user interface, and its line-mode rendering: each
//! line starts with a fixed word that scripts can match on (the terminal UI words them
//! for people, see [`crate::tui`]).

use crate::clock;
use crate::command::Target;
use crate::history::{Direction, Entry};
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
    /// A valid presence record exists, but nobody answers at its address (the peer
    /// crashed or lost its network, and its record has not expired yet).
    NotAnswering(String),
}

/// How this peer stands in the network, as the header shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetState {
    /// Bootstrappers (or remembered peers) are being tried; none has answered yet.
    Joining,
    /// None answered so far; joining goes on being retried.
    Alone,
    /// The first peer of a new network (nothing to join through): others join it.
    First,
    /// Part of a network.
    Joined,
}

/// An event for the user interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Presence is published: others can find us. Comes once the node has joined a
    /// network (or at once for the first peer of a new one).
    Ready {
        /// Our handle.
        me: Handle,
        /// Where our chat endpoint listens.
        addr: SocketAddr,
    },
    /// The network state or the number of known peers changed.
    Network {
        /// Where we stand.
        state: NetState,
        /// DHT peers known.
        peers: usize,
    },
    /// Progress or a remark.
    Info(String),
    /// A lookup found the user online (their chat endpoint answered).
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
        /// Whether the other side ended it (or lost it, restarting), else we did.
        by_peer: bool,
    },
    /// The peer of a session stopped answering (see [`crate::liveness`]).
    PeerGone {
        /// Who.
        peer: Handle,
        /// For how long nothing was heard, in milliseconds.
        silent_ms: u64,
    },
    /// A gone peer answers again.
    PeerBack {
        /// Who.
        peer: Handle,
    },
    /// A line we sent, shown at once; [`Event::Delivered`], [`Event::Spread`] or
    /// [`Event::Failed`] follows.
    Sent {
        /// Where.
        to: Target,
        /// Our counter for it (per session, or per room).
        seq: u64,
        /// Our clock, Unix ms.
        at_ms: u64,
        /// The text.
        text: String,
    },
    /// The receiver of a session line acknowledged it.
    Delivered {
        /// Where.
        to: Target,
        /// Its counter.
        seq: u64,
    },
    /// A room post was handed to the gossip module, which spreads it to its neighbours
    /// (whether anyone else is in the room cannot be known).
    Spread {
        /// The room.
        room: String,
        /// The post's counter.
        seq: u64,
        /// Gossip neighbours it goes to first.
        neighbours: usize,
    },
    /// A line could not be delivered, or a session could not be opened (`seq` 0).
    Failed {
        /// Where.
        to: Target,
        /// Its counter (0: no line, the session itself failed).
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
        /// Open sessions whose peer answers.
        sessions: Vec<Handle>,
        /// Open sessions whose peer is gone.
        gone: Vec<Handle>,
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
    /// The engine stopped (after `/quit` or a signal).
    Stopped,
}

impl fmt::Display for Absence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Absence::NotFound => f.write_str("not found"),
            Absence::Gone => f.write_str("gone (signed off)"),
            Absence::NotAuthentic(why) => write!(f, "not authentic: {why}"),
            Absence::NotAnswering(why) => write!(f, "not answering: {why}"),
        }
    }
}

impl NetState {
    /// The word the line mode and the header use.
    pub fn word(self) -> &'static str {
        match self {
            NetState::Joining => "joining",
            NetState::Alone => "alone",
            NetState::First => "first",
            NetState::Joined => "joined",
        }
    }
}

/// Who wrote a history entry, as shown: "you" for one's own lines.
pub fn author(entry: &Entry) -> &str {
    match entry.direction {
        Direction::Out => "you",
        Direction::In => &entry.author,
    }
}

impl fmt::Display for Event {
    /// The line mode's rendering: one line per event, except `/history`, which gives a
    /// `history` line and then one `history-entry` line per message. Times are local,
    /// with their offset.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stamp = |ms: u64| clock::stamp(&clock::local(ms));
        match self {
            Event::Ready { me, addr } => write!(f, "ready {me} chat={addr}"),
            Event::Network { state, peers } => {
                write!(f, "network {} peers={peers}", state.word())?;
                match state {
                    NetState::Alone => f.write_str(": no bootstrapper answered yet; retrying"),
                    NetState::First => f.write_str(": a new network; others join through us"),
                    NetState::Joining | NetState::Joined => Ok(()),
                }
            }
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
            Event::PeerGone { peer, silent_ms } => write!(
                f,
                "gone {peer}: no answer for {:.1} s",
                *silent_ms as f64 / 1000.0
            ),
            Event::PeerBack { peer } => write!(f, "back {peer}"),
            Event::Sent {
                to,
                seq,
                at_ms,
                text,
            } => write!(f, "sent {to} #{seq} {}: {text}", stamp(*at_ms)),
            Event::Delivered { to, seq } => write!(f, "delivered {to} #{seq}"),
            Event::Spread {
                room,
                seq,
                neighbours,
            } => write!(f, "spread #{room} #{seq} neighbours={neighbours}"),
            Event::Failed { to, seq: 0, reason } => write!(f, "failed {to}: {reason}"),
            Event::Failed { to, seq, reason } => write!(f, "failed {to} #{seq}: {reason}"),
            Event::Received {
                from,
                sent_at_ms,
                text,
            } => write!(f, "msg {from} {}: {text}", stamp(*sent_at_ms)),
            Event::RoomMessage {
                room,
                from,
                sent_at_ms,
                text,
            } => write!(f, "room #{room} {from} {}: {text}", stamp(*sent_at_ms)),
            Event::Joined(room) => write!(f, "joined #{room}"),
            Event::Left(room) => write!(f, "left #{room}"),
            Event::Sessions {
                sessions,
                gone,
                rooms,
            } => {
                f.write_str("sessions")?;
                for s in sessions {
                    write!(f, " {s}")?;
                }
                for s in gone {
                    write!(f, " {s}(gone)")?;
                }
                for r in rooms {
                    write!(f, " #{r}")?;
                }
                Ok(())
            }
            Event::History { target, entries } => {
                write!(f, "history {target} {} messages", entries.len())?;
                for e in entries {
                    write!(
                        f,
                        "\nhistory-entry {target} {} {} [{}]: {}",
                        stamp(e.at_ms),
                        author(e),
                        e.status,
                        one_line(&e.text)
                    )?;
                }
                Ok(())
            }
            Event::Error(text) => write!(f, "error {text}"),
            Event::Stopped => f.write_str("stopped"),
        }
    }
}

/// `text` with line breaks shown as `\n`, so that an entry stays on one line.
fn one_line(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_one_line_and_history_entries_have_their_own() {
        let bob: Handle = "bob#abcdefghij".parse().unwrap();
        let entry = |direction, text: &str| Entry {
            direction,
            conversation: bob.to_string(),
            author: if direction == Direction::In {
                bob.to_string()
            } else {
                "alice#bcdefghijk".into()
            },
            at_ms: 1_796_513_400_000,
            text: text.into(),
            status: "delivered".into(),
        };
        let history = Event::History {
            target: Target::User(bob.clone()),
            entries: vec![
                entry(Direction::Out, "hi\nthere"),
                entry(Direction::In, "yo"),
            ],
        };
        let text = history.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "history bob#abcdefghij 2 messages");
        assert!(lines[1].starts_with("history-entry bob#abcdefghij 20"));
        assert!(
            lines[1].contains(" you [delivered]: hi\\nthere"),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains(" bob#abcdefghij [delivered]: yo"));
        let failed = Event::Failed {
            to: Target::User(bob),
            seq: 0,
            reason: "cannot open a session: not found".into(),
        };
        assert_eq!(
            failed.to_string(),
            "failed bob#abcdefghij: cannot open a session: not found"
        );
    }
}
