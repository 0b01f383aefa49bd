//! Chat history: every message sent and received, and the rooms joined, in SQLite under
//! `data_dir`, kept across restarts.

use crate::clock;
use crate::ChatError;
use rusqlite::{params, Connection};
use std::fmt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// File name of the history database under `data_dir`.
pub const HISTORY_FILE: &str = "chat.sqlite";

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We sent it.
    Out,
    /// We received it.
    In,
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Which way.
    pub direction: Direction,
    /// The conversation: `name#id` or `#room`.
    pub conversation: String,
    /// Who wrote it (`name#id`).
    pub author: String,
    /// Author's clock, Unix ms.
    pub at_ms: u64,
    /// The text.
    pub text: String,
    /// For sent messages: `sent`, `delivered` or `failed`; `received` otherwise.
    pub status: String,
}

impl fmt::Display for Entry {
    /// `YYYY-MM-DD HH:MM:SS +hh:mm WHO [status] text`, local time, "you" for one's own.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} [{}] {}",
            clock::stamp(&clock::local(self.at_ms)),
            crate::event::author(self),
            self.status,
            self.text
        )
    }
}

/// The history database. Writes are small and local (WAL journal), so they are made in
/// place; the mutex only makes the handle shareable between tasks.
pub struct History {
    db: Mutex<Connection>,
}

impl History {
    /// Opens (or creates) `data_dir/chat.sqlite`.
    ///
    /// # Errors
    /// [`ChatError::History`] when the file cannot be opened or set up.
    pub fn open(data_dir: &Path) -> Result<History, ChatError> {
        let path = data_dir.join(HISTORY_FILE);
        let db = Connection::open(&path).map_err(|e| history_error(&path, e))?;
        // Plaintext history: the owner's only (SQLite gives its -wal and -shm files the
        // same permissions).
        voidmesh_node::private::private_file(&path)
            .map_err(|e| ChatError::History(format!("{}: {e}", path.display())))?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS messages (
                 id INTEGER PRIMARY KEY,
                 direction TEXT NOT NULL,
                 conversation TEXT NOT NULL,
                 author TEXT NOT NULL,
                 at_ms INTEGER NOT NULL,
                 text TEXT NOT NULL,
                 status TEXT NOT NULL,
                 local_ref TEXT
             );
             CREATE INDEX IF NOT EXISTS by_conversation ON messages (conversation, id);
             CREATE TABLE IF NOT EXISTS rooms (name TEXT PRIMARY KEY);",
        )
        .map_err(|e| history_error(&path, e))?;
        Ok(History { db: Mutex::new(db) })
    }

    /// Stores a message; `local_ref` lets a later status update find a sent message.
    ///
    /// # Errors
    /// [`ChatError::History`] when the write fails.
    pub fn add(&self, entry: &Entry, local_ref: Option<&str>) -> Result<(), ChatError> {
        let direction = match entry.direction {
            Direction::Out => "out",
            Direction::In => "in",
        };
        self.db()
            .execute(
                "INSERT INTO messages (direction, conversation, author, at_ms, text, status, local_ref)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    direction,
                    entry.conversation,
                    entry.author,
                    i64::try_from(entry.at_ms).unwrap_or(i64::MAX),
                    entry.text,
                    entry.status,
                    local_ref
                ],
            )
            .map_err(|e| ChatError::History(e.to_string()))?;
        Ok(())
    }

    /// Sets the status of the sent message stored with `local_ref`.
    ///
    /// # Errors
    /// [`ChatError::History`] when the write fails.
    pub fn set_status(&self, local_ref: &str, status: &str) -> Result<(), ChatError> {
        self.db()
            .execute(
                "UPDATE messages SET status = ?1 WHERE local_ref = ?2",
                params![status, local_ref],
            )
            .map_err(|e| ChatError::History(e.to_string()))?;
        Ok(())
    }

    /// The last `limit` messages of `conversation`, oldest first.
    ///
    /// # Errors
    /// [`ChatError::History`] when the read fails.
    pub fn conversation(&self, conversation: &str, limit: usize) -> Result<Vec<Entry>, ChatError> {
        let db = self.db();
        let mut stmt = db
            .prepare(
                "SELECT direction, conversation, author, at_ms, text, status FROM messages
                 WHERE conversation = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(|e| ChatError::History(e.to_string()))?;
        let rows = stmt
            .query_map(
                params![conversation, i64::try_from(limit).unwrap_or(i64::MAX)],
                |row| {
                    let direction: String = row.get(0)?;
                    let at_ms: i64 = row.get(3)?;
                    Ok(Entry {
                        direction: if direction == "out" {
                            Direction::Out
                        } else {
                            Direction::In
                        },
                        conversation: row.get(1)?,
                        author: row.get(2)?,
                        at_ms: u64::try_from(at_ms).unwrap_or(0),
                        text: row.get(4)?,
                        status: row.get(5)?,
                    })
                },
            )
            .map_err(|e| ChatError::History(e.to_string()))?;
        let mut entries = rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ChatError::History(e.to_string()))?;
        entries.reverse();
        Ok(entries)
    }
}

impl History {
    /// The rooms joined (and not left) when the chat last ran, by name.
    ///
    /// # Errors
    /// [`ChatError::History`] when the read fails.
    pub fn rooms(&self) -> Result<Vec<String>, ChatError> {
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT name FROM rooms ORDER BY rowid")
            .map_err(|e| ChatError::History(e.to_string()))?;
        let rows = stmt
            .query_map([], |row| row.get(0))
            .map_err(|e| ChatError::History(e.to_string()))?;
        rows.collect::<Result<Vec<String>, _>>()
            .map_err(|e| ChatError::History(e.to_string()))
    }

    /// Records that `room` is joined (`true`) or left.
    ///
    /// # Errors
    /// [`ChatError::History`] when the write fails.
    pub fn set_joined(&self, room: &str, joined: bool) -> Result<(), ChatError> {
        let sql = if joined {
            "INSERT OR IGNORE INTO rooms (name) VALUES (?1)"
        } else {
            "DELETE FROM rooms WHERE name = ?1"
        };
        self.db()
            .execute(sql, params![room])
            .map_err(|e| ChatError::History(e.to_string()))?;
        Ok(())
    }

    /// The connection; a panic while it was held cannot leave SQLite inconsistent, so a
    /// poisoned lock is taken over.
    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn history_error(path: &Path, e: rusqlite::Error) -> ChatError {
    ChatError::History(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str, direction: Direction) -> Entry {
        Entry {
            direction,
            conversation: "bob#abcdefghij".into(),
            author: "alice#bcdefghijk".into(),
            at_ms: 1_700_000_000_000,
            text: text.into(),
            status: "sent".into(),
        }
    }

    #[test]
    fn messages_survive_reopening_in_order_with_status() {
        let dir = tempfile::tempdir().unwrap();
        {
            let history = History::open(dir.path()).unwrap();
            history
                .add(&entry("one", Direction::Out), Some("r1"))
                .unwrap();
            history.add(&entry("two", Direction::In), None).unwrap();
            history.set_status("r1", "delivered").unwrap();
        }
        let history = History::open(dir.path()).unwrap();
        let got = history.conversation("bob#abcdefghij", 10).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].text, "one");
        assert_eq!(got[0].status, "delivered");
        assert_eq!(got[1].direction, Direction::In);
        assert!(history.conversation("#other", 10).unwrap().is_empty());
        assert_eq!(
            history.conversation("bob#abcdefghij", 1).unwrap()[0].text,
            "two"
        );
    }

    #[test]
    fn joined_rooms_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let history = History::open(dir.path()).unwrap();
            history.set_joined("rust", true).unwrap();
            history.set_joined("trio", true).unwrap();
            history.set_joined("rust", true).unwrap();
            history.set_joined("gone", true).unwrap();
            history.set_joined("gone", false).unwrap();
        }
        let history = History::open(dir.path()).unwrap();
        assert_eq!(history.rooms().unwrap(), ["rust", "trio"]);
    }

    #[test]
    fn own_lines_read_as_you() {
        let shown = entry("one", Direction::Out).to_string();
        assert!(shown.contains(" you [sent] one"), "{shown}");
        assert!(!shown.contains("->"));
        let shown = Entry {
            author: "bob#abcdefghij".into(),
            ..entry("two", Direction::In)
        }
        .to_string();
        assert!(shown.contains(" bob#abcdefghij [sent] two"), "{shown}");
    }
}
