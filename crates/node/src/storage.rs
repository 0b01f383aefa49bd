//! Durable DHT state in redb under `data_dir`: held records (with version and expiry) and
//! the routing table's contacts, so a node restarted after a crash serves what it held
//! and rejoins through peers it remembers.
//!
//! The file follows the state machine: the DHT driver writes what kad's store-change
//! journal says (a record held, replaced, evicted or expired), so the disk never holds
//! more than the memory bounds allow; records found expired when the file is opened are
//! deleted then.
//!
//! redb is synchronous, so all writes happen on one dedicated thread. Writes queued
//! while a commit is running are committed together (group commit); a write, or a
//! [`Storage::barrier`] after several, may carry a completion that runs only after the
//! commit is durable — that is how a STORE is answered "stored" only once it is on disk.

use bytes::Bytes;
use redb::{Database, ReadableTable, TableDefinition};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};
use voidmesh_proto::signed::SignedRecord;
use voidmesh_proto::{Contact, Key, PublicKey, Version};

/// key (32 bytes) → `version u64 | expires unix ms u64 | replication u8 | publisher u8 | value`.
const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
/// key (32 bytes) → `replication u8 | publisher u8 | signed record` (proto `signed` layout).
const SIGNED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("signed");
/// node id (32 bytes) → `public key (64 hex digits) socket address` as text.
const CONTACTS: TableDefinition<&[u8], &str> = TableDefinition::new("contacts");

/// Why the store could not be opened or read.
#[derive(Debug, thiserror::Error)]
#[error("record store {path}: {reason}")]
pub struct StorageError {
    /// The database file.
    pub path: String,
    /// What redb reported.
    pub reason: String,
}

/// A record as kept on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The key.
    pub key: Key,
    /// The value.
    pub value: Bytes,
    /// Its version.
    pub version: Version,
    /// Wall-clock expiry, Unix milliseconds (a relative TTL would be wrong after a restart).
    pub expires_unix_ms: u64,
    /// Replication it should be republished with.
    pub replication: u8,
    /// Whether this node's own PUT created it.
    pub publisher: bool,
}

impl StoredRecord {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(18 + self.value.len());
        out.extend_from_slice(&self.version.0.to_be_bytes());
        out.extend_from_slice(&self.expires_unix_ms.to_be_bytes());
        out.push(self.replication);
        out.push(u8::from(self.publisher));
        out.extend_from_slice(&self.value);
        out
    }

    fn decode(key: &[u8], bytes: &[u8]) -> Option<StoredRecord> {
        let key = Key::from_slice(key)?;
        let version = u64::from_be_bytes(bytes.get(0..8)?.try_into().ok()?);
        let expires_unix_ms = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(StoredRecord {
            key,
            version: Version(version),
            expires_unix_ms,
            replication: *bytes.get(16)?,
            publisher: *bytes.get(17)? != 0,
            value: Bytes::copy_from_slice(bytes.get(18..)?),
        })
    }
}

/// A signed record as kept on disk, with what is needed to republish it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSigned {
    /// The record (its own expiry is inside, signed).
    pub record: SignedRecord,
    /// Replication it should be republished with.
    pub replication: u8,
    /// Whether this node's own PUT SIGNED created it.
    pub publisher: bool,
}

impl StoredSigned {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.replication, u8::from(self.publisher)];
        out.extend_from_slice(&self.record.to_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<StoredSigned> {
        let replication = *bytes.first()?;
        let publisher = *bytes.get(1)? != 0;
        let record = SignedRecord::decode(&Bytes::copy_from_slice(bytes.get(2..)?)).ok()?;
        Some(StoredSigned {
            record,
            replication,
            publisher,
        })
    }
}

/// What a node finds on disk when it starts.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Unexpired records.
    pub records: Vec<StoredRecord>,
    /// Unexpired signed records (the state machine verifies them again on restore).
    pub signed: Vec<StoredSigned>,
    /// Contacts remembered from the last run.
    pub contacts: Vec<Contact>,
}

/// Slack a database file may take beyond twice its records' byte bound (redb's
/// copy-on-write pages, free lists and contacts, and the 4 MiB region that closing the
/// database may add for its allocator state, measured: 4.7 or 9.0 MB after 180 MB of
/// 60 KB records through a 1 MiB bound).
pub const FILE_SLACK: u64 = 8 << 20;

/// Runs after a write's commit, with `true` if it is durable.
pub type Completion = Box<dyn FnOnce(bool) + Send>;

enum Op {
    Record(StoredRecord, Option<Completion>),
    Signed(StoredSigned, Option<Completion>),
    Remove(Key),
    Barrier(Completion),
    Contacts(Vec<Contact>, Option<Completion>),
}

/// Handle to the storage thread. Dropping it commits what is queued and stops the thread.
pub struct Storage {
    ops: Option<mpsc::Sender<Op>>,
    thread: Option<JoinHandle<()>>,
}

/// Current Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Storage {
    /// Opens (or creates) the database at `path`, reads what it holds, and starts the
    /// writer thread. `max_record_bytes` is the record store's bound: the writer
    /// compacts the file whenever it grows past `2 × max_record_bytes + FILE_SLACK`, so
    /// freed pages cannot pile up.
    ///
    /// # Errors
    /// When the file cannot be opened or read (e.g. it is not a redb database).
    pub fn open(path: &Path, max_record_bytes: usize) -> Result<(Storage, Loaded), StorageError> {
        let fail = |e: redb::Error| StorageError {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let db = Database::create(path).map_err(|e| fail(e.into()))?;
        // Records may be anyone's, but the node's own PUTs are the user's data.
        crate::private::private_file(path).map_err(|e| fail(redb::Error::Io(e)))?;
        let loaded = load(&db).map_err(fail)?;
        let (tx, rx) = mpsc::channel();
        let file = File {
            path: path.to_owned(),
            compact_above: (max_record_bytes as u64)
                .saturating_mul(2)
                .saturating_add(FILE_SLACK),
        };
        let thread = std::thread::Builder::new()
            .name("voidmesh-storage".into())
            .spawn(move || writer(db, file, rx))
            .map_err(|e| fail(redb::Error::Io(e)))?;
        Ok((
            Storage {
                ops: Some(tx),
                thread: Some(thread),
            },
            loaded,
        ))
    }

    /// Writes `record` (replacing whatever its key held, plain or signed); `done` runs
    /// once it is durable (or failed).
    pub fn put_record(&self, record: StoredRecord, done: Option<Completion>) {
        if let Some(ops) = &self.ops {
            if let Err(mpsc::SendError(Op::Record(_, Some(done)))) =
                ops.send(Op::Record(record, done))
            {
                done(false);
            }
        }
    }

    /// Writes a signed record (replacing whatever its key held, plain or signed); `done`
    /// runs once it is durable (or failed).
    pub fn put_signed(&self, signed: StoredSigned, done: Option<Completion>) {
        if let Some(ops) = &self.ops {
            if let Err(mpsc::SendError(Op::Signed(_, Some(done)))) =
                ops.send(Op::Signed(signed, done))
            {
                done(false);
            }
        }
    }

    /// Deletes whatever `key` holds on disk.
    pub fn remove(&self, key: Key) {
        if let Some(ops) = &self.ops {
            let _ = ops.send(Op::Remove(key));
        }
    }

    /// Runs `done` once every write queued before it is durable (or failed).
    pub fn barrier(&self, done: Completion) {
        match &self.ops {
            Some(ops) => {
                if let Err(mpsc::SendError(Op::Barrier(done))) = ops.send(Op::Barrier(done)) {
                    done(false);
                }
            }
            None => done(false),
        }
    }

    /// Replaces the remembered contacts; `done` runs once that is durable (or failed).
    pub fn save_contacts(&self, contacts: Vec<Contact>, done: Option<Completion>) {
        if let Some(ops) = &self.ops {
            if let Err(mpsc::SendError(Op::Contacts(_, Some(done)))) =
                ops.send(Op::Contacts(contacts, done))
            {
                done(false);
            }
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        self.ops.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// redb's error is large, but it only travels on the rare failure path.
#[allow(clippy::result_large_err)]
fn load(db: &Database) -> Result<Loaded, redb::Error> {
    // Make sure the tables exist, so a fresh database reads as empty, and delete what
    // expired while the node was down (or whose removal a crash kept from the disk).
    let now = unix_ms();
    let txn = db.begin_write()?;
    txn.open_table(RECORDS)?.retain(|_, v| {
        v.get(8..16)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .is_some_and(|expires| expires > now)
    })?;
    txn.open_table(SIGNED)?
        .retain(|_, v| StoredSigned::decode(v).is_some_and(|s| s.record.expiry > now / 1000))?;
    txn.open_table(CONTACTS)?;
    txn.commit()?;

    let txn = db.begin_read()?;
    let mut loaded = Loaded::default();
    for entry in txn.open_table(RECORDS)?.iter()? {
        let (k, v) = entry?;
        match StoredRecord::decode(k.value(), v.value()) {
            Some(r) if r.expires_unix_ms > now => loaded.records.push(r),
            Some(_) => {}
            None => tracing::warn!("unreadable record on disk skipped"),
        }
    }
    let now_secs = now / 1000;
    for entry in txn.open_table(SIGNED)?.iter()? {
        let (_, v) = entry?;
        match StoredSigned::decode(v.value()) {
            Some(s) if s.record.expiry > now_secs => loaded.signed.push(s),
            Some(_) => {}
            None => tracing::warn!("unreadable signed record on disk skipped"),
        }
    }
    for entry in txn.open_table(CONTACTS)?.iter()? {
        let (_, v) = entry?;
        // Rows written before contacts carried keys hold only an address: skipped.
        let parsed = v.value().split_once(' ').and_then(|(key, addr)| {
            let key = Key::from_hex(key)?;
            Some(Contact::new(
                PublicKey(key.0),
                addr.parse::<SocketAddr>().ok()?,
            ))
        });
        match parsed {
            Some(contact) => loaded.contacts.push(contact),
            None => tracing::debug!("remembered contact without a key skipped"),
        }
    }
    Ok(loaded)
}

/// Compacts `db` if its file has grown past its bound.
fn compact_if_large(db: &mut Database, file: &File) {
    let size = std::fs::metadata(&file.path).map(|m| m.len()).unwrap_or(0);
    if size <= file.compact_above {
        return;
    }
    match db.compact() {
        Ok(_) => {
            let after = std::fs::metadata(&file.path).map(|m| m.len()).unwrap_or(0);
            tracing::debug!(before = size, after, "record store compacted");
        }
        Err(e) => tracing::warn!(error = %e, "compacting the record store failed"),
    }
}

/// Where the database lives and when it is compacted.
struct File {
    path: std::path::PathBuf,
    compact_above: u64,
}

/// The writer thread: group-commits queued operations, runs their completions, and
/// compacts the file when it outgrows its bound. Ends when the handle is dropped.
fn writer(mut db: Database, file: File, ops: mpsc::Receiver<Op>) {
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        batch.extend(ops.try_iter());
        let mut completions = Vec::new();
        let result = commit(&db, batch, &mut completions);
        if let Err(e) = &result {
            tracing::error!(error = %e, "writing the record store failed");
        }
        let ok = result.is_ok();
        for done in completions {
            done(ok);
        }
        compact_if_large(&mut db, &file);
    }
    // Closing writes redb's allocator state, which may take a fresh region of the file.
    compact_if_large(&mut db, &file);
    drop(db);
    let size = std::fs::metadata(&file.path).map(|m| m.len()).unwrap_or(0);
    tracing::debug!(size, "record store closed");
}

#[allow(clippy::result_large_err)]
fn commit(
    db: &Database,
    batch: Vec<Op>,
    completions: &mut Vec<Completion>,
) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut records = txn.open_table(RECORDS)?;
        let mut signed = txn.open_table(SIGNED)?;
        let mut contacts = txn.open_table(CONTACTS)?;
        for op in batch {
            match op {
                Op::Record(record, done) => {
                    let key = record.key.0;
                    records.insert(key.as_slice(), record.encode().as_slice())?;
                    signed.remove(key.as_slice())?;
                    completions.extend(done);
                }
                Op::Signed(record, done) => {
                    let key = record.record.key().0;
                    signed.insert(key.as_slice(), record.encode().as_slice())?;
                    records.remove(key.as_slice())?;
                    completions.extend(done);
                }
                Op::Remove(key) => {
                    records.remove(key.0.as_slice())?;
                    signed.remove(key.0.as_slice())?;
                }
                Op::Barrier(done) => completions.push(done),
                Op::Contacts(list, done) => {
                    contacts.retain(|_, _| false)?;
                    for c in list {
                        let row = format!("{} {}", hex::encode(c.key.0), c.addr);
                        contacts.insert(c.id.0.as_slice(), row.as_str())?;
                    }
                    completions.extend(done);
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn record(n: u8, expires_unix_ms: u64) -> StoredRecord {
        StoredRecord {
            key: Key([n; 32]),
            value: Bytes::from(vec![n; 5]),
            version: Version(7),
            expires_unix_ms,
            replication: 3,
            publisher: n.is_multiple_of(2),
        }
    }

    #[test]
    fn records_and_contacts_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dht.redb");
        let later = unix_ms() + 60_000;
        let done = Arc::new(Mutex::new(Vec::new()));
        {
            let (storage, loaded) = Storage::open(&path, 1 << 20).unwrap();
            assert!(loaded.records.is_empty());
            let d = done.clone();
            storage.put_record(
                record(1, later),
                Some(Box::new(move |ok| d.lock().unwrap().push(ok))),
            );
            storage.put_record(record(2, 1), None);
            storage.save_contacts(
                vec![Contact::new(
                    PublicKey([9; 32]),
                    "127.0.0.1:4000".parse().unwrap(),
                )],
                None,
            );
        }
        assert_eq!(
            *done.lock().unwrap(),
            vec![true],
            "completion ran after the commit"
        );
        let (_storage, loaded) = Storage::open(&path, 1 << 20).unwrap();
        assert_eq!(
            loaded.records,
            vec![record(1, later)],
            "expired record not loaded"
        );
        assert_eq!(loaded.contacts.len(), 1);
        assert_eq!(loaded.contacts[0].key, PublicKey([9; 32]));
    }

    #[test]
    fn signed_records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dht.redb");
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let expiry = unix_ms() / 1000 + 600;
        let record = SignedRecord::sign(
            &key,
            Bytes::from_static(b"salt"),
            4,
            expiry,
            Bytes::from_static(b"v"),
        )
        .unwrap();
        let stored = StoredSigned {
            record,
            replication: 5,
            publisher: true,
        };
        {
            let (storage, _) = Storage::open(&path, 1 << 20).unwrap();
            storage.put_signed(stored.clone(), None);
        }
        let (_storage, loaded) = Storage::open(&path, 1 << 20).unwrap();
        assert_eq!(loaded.signed, vec![stored]);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dht.redb");
        std::fs::write(&path, b"not a database at all, just text").unwrap();
        let err = Storage::open(&path, 1 << 20).err().expect("refused");
        assert!(err.to_string().contains("dht.redb"), "{err}");
    }
}
