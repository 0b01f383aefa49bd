//! The conversations a user has open (sessions and rooms), the current one (where typed
//! lines go), and unread counts. Shared by the line mode and the terminal UI; pure.
//!
//! Rules, chosen so that a line goes where the user means:
//! - `/chat` and `/join` make their conversation current; `/msg` does not (a one-shot).
//! - A session someone opens, or a line that arrives, becomes current only if nothing
//!   is; otherwise its conversation is marked unread and the current one stays. The
//!   terminal UI shows only the current conversation's lines, so a reply is typed under
//!   the lines it answers (Tab switches).
//! - When the current conversation ends (`/end`, `/leave`, the peer ended it), the most
//!   recent remaining one becomes current.

use crate::command::{Command, Target};
use crate::event::Event;
use crate::user::Handle;
use std::collections::{HashMap, HashSet};

/// Open conversations, the current one and what is unread.
#[derive(Debug, Default, Clone)]
pub struct Conversations {
    /// Sessions in the order they opened.
    sessions: Vec<Handle>,
    /// Rooms in the order they were joined.
    rooms: Vec<String>,
    /// Sessions whose peer is gone.
    gone: HashSet<Handle>,
    /// Lines not seen yet, by conversation.
    unread: HashMap<Target, usize>,
    current: Option<Target>,
}

impl Conversations {
    /// Where typed lines go now.
    pub fn current(&self) -> Option<&Target> {
        self.current.as_ref()
    }

    /// Open sessions, in the order they opened.
    pub fn sessions(&self) -> &[Handle] {
        &self.sessions
    }

    /// Joined rooms, in the order they were joined.
    pub fn rooms(&self) -> &[String] {
        &self.rooms
    }

    /// Whether the peer of a session is gone.
    pub fn is_gone(&self, peer: &Handle) -> bool {
        self.gone.contains(peer)
    }

    /// Lines of `target` not seen yet.
    pub fn unread(&self, target: &Target) -> usize {
        self.unread.get(target).copied().unwrap_or(0)
    }

    /// Every conversation in the order the sidebar lists them: sessions, then rooms.
    pub fn all(&self) -> Vec<Target> {
        let sessions = self.sessions.iter().cloned().map(Target::User);
        let rooms = self.rooms.iter().cloned().map(Target::Room);
        sessions.chain(rooms).collect()
    }

    /// Makes `target` current; its lines count as seen.
    pub fn select(&mut self, target: Target) {
        self.unread.remove(&target);
        self.current = Some(target);
    }

    /// Moves to the next conversation (`forward`) or the previous one, wrapping around.
    pub fn cycle(&mut self, forward: bool) {
        let all = self.all();
        if all.is_empty() {
            return;
        }
        let at = self
            .current
            .as_ref()
            .and_then(|c| all.iter().position(|t| t == c));
        let next = match (at, forward) {
            (None, _) => 0,
            (Some(i), true) => (i + 1) % all.len(),
            (Some(i), false) => (i + all.len() - 1) % all.len(),
        };
        self.select(all[next].clone());
    }

    /// Follows a command the user gave.
    pub fn on_command(&mut self, command: &Command) {
        match command {
            Command::Open(handle) => self.select(Target::User(handle.clone())),
            Command::Join(room) => self.select(Target::Room(room.clone())),
            _ => {}
        }
    }

    /// Follows an event from the engine.
    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::SessionOpened { peer, .. } => {
                if !self.sessions.contains(peer) {
                    self.sessions.push(peer.clone());
                }
                self.gone.remove(peer);
                self.adopt(Target::User(peer.clone()));
            }
            Event::SessionEnded { peer, .. } => {
                self.sessions.retain(|s| s != peer);
                self.gone.remove(peer);
                self.closed(&Target::User(peer.clone()));
            }
            Event::PeerGone { peer, .. } => {
                self.gone.insert(peer.clone());
            }
            Event::PeerBack { peer } => {
                self.gone.remove(peer);
            }
            Event::Joined(room) => {
                if !self.rooms.contains(room) {
                    self.rooms.push(room.clone());
                }
                self.adopt(Target::Room(room.clone()));
            }
            Event::Left(room) => {
                self.rooms.retain(|r| r != room);
                self.closed(&Target::Room(room.clone()));
            }
            Event::Received { from, .. } => self.arrived(Target::User(from.clone())),
            Event::RoomMessage { room, .. } => self.arrived(Target::Room(room.clone())),
            Event::Sessions {
                sessions,
                gone,
                rooms,
            } => {
                // The engine's word is final.
                let mut all: Vec<Handle> = sessions.iter().chain(gone).cloned().collect();
                all.sort();
                self.sessions.retain(|s| all.contains(s));
                for s in all {
                    if !self.sessions.contains(&s) {
                        self.sessions.push(s);
                    }
                }
                self.gone = gone.iter().cloned().collect();
                self.rooms.retain(|r| rooms.contains(r));
                for r in rooms {
                    if !self.rooms.contains(r) {
                        self.rooms.push(r.clone());
                    }
                }
                let open = self.all();
                self.unread.retain(|t, _| open.contains(t));
                if let Some(current) = self.current.clone() {
                    if !open.contains(&current) {
                        self.closed(&current);
                    }
                }
            }
            _ => {}
        }
    }

    /// A conversation that opened: current if nothing is.
    fn adopt(&mut self, target: Target) {
        if self.current.is_none() {
            self.select(target);
        }
    }

    /// A line arrived in `target`: current if nothing is, else unread.
    fn arrived(&mut self, target: Target) {
        match &self.current {
            None => self.select(target),
            Some(current) if *current == target => {}
            Some(_) => *self.unread.entry(target).or_default() += 1,
        }
    }

    /// `target` is over: if it was current, the most recent remaining one is.
    fn closed(&mut self, target: &Target) {
        self.unread.remove(target);
        if self.current.as_ref() == Some(target) {
            self.current = None;
            let newest_session = self.sessions.last().cloned().map(Target::User);
            let newest_room = self.rooms.last().cloned().map(Target::Room);
            if let Some(next) = newest_session.or(newest_room) {
                self.select(next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bob() -> Handle {
        "bob#abcdefghij".parse().unwrap()
    }

    fn carol() -> Handle {
        "carol#cdefghijkm".parse().unwrap()
    }

    fn line(from: Handle) -> Event {
        Event::Received {
            from,
            sent_at_ms: 0,
            text: "hi".into(),
        }
    }

    /// The case: carol is in #trio; bob opens a session and writes.
    #[test]
    fn an_incoming_line_is_unread_and_does_not_take_the_target() {
        let mut c = Conversations::default();
        c.on_command(&Command::Join("trio".into()));
        c.on_event(&Event::Joined("trio".into()));
        c.on_event(&Event::SessionOpened {
            peer: bob(),
            by_peer: true,
        });
        c.on_event(&line(bob()));
        c.on_event(&line(bob()));
        assert_eq!(c.current(), Some(&Target::Room("trio".into())));
        assert_eq!(c.unread(&Target::User(bob())), 2);
        // Sessions come first in the list: from #trio, Tab wraps around to bob.
        c.cycle(true);
        assert_eq!(c.current(), Some(&Target::User(bob())));
        assert_eq!(c.unread(&Target::User(bob())), 0);
        c.cycle(false);
        assert_eq!(c.current(), Some(&Target::Room("trio".into())));
    }

    #[test]
    fn with_nothing_current_the_first_conversation_is_taken() {
        let mut c = Conversations::default();
        c.on_event(&Event::SessionOpened {
            peer: bob(),
            by_peer: true,
        });
        assert_eq!(c.current(), Some(&Target::User(bob())));
        c.on_event(&line(carol()));
        assert_eq!(c.unread(&Target::User(carol())), 1);
    }

    #[test]
    fn ending_the_current_one_falls_back_to_the_newest_remaining() {
        let mut c = Conversations::default();
        c.on_command(&Command::Join("trio".into()));
        c.on_event(&Event::Joined("trio".into()));
        c.on_command(&Command::Open(bob()));
        c.on_event(&Event::SessionOpened {
            peer: bob(),
            by_peer: false,
        });
        assert_eq!(c.current(), Some(&Target::User(bob())));
        c.on_event(&Event::SessionEnded {
            peer: bob(),
            by_peer: false,
        });
        assert_eq!(c.current(), Some(&Target::Room("trio".into())));
        c.on_event(&Event::Left("trio".into()));
        assert_eq!(c.current(), None);
    }

    #[test]
    fn gone_peers_are_marked_until_back() {
        let mut c = Conversations::default();
        c.on_event(&Event::SessionOpened {
            peer: bob(),
            by_peer: true,
        });
        c.on_event(&Event::PeerGone {
            peer: bob(),
            silent_ms: 3000,
        });
        assert!(c.is_gone(&bob()));
        c.on_event(&Event::PeerBack { peer: bob() });
        assert!(!c.is_gone(&bob()));
    }
}
