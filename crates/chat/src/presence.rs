//! Presence: where a user can be reached, as a signed mutable record, and the directory
//! entry that turns a typed `name#id` into the user's public key.
//!
//! A `name#id` carries only a 50-bit fingerprint of the key, and a signed record's key
//! is SHA-256(public key ‖ salt), so a lookup takes two steps:
//! 1. the *directory entry*, a plain record under SHA-256(domain ‖ name ‖ `#` ‖ id),
//!    holds the user's public key; it is only accepted if the key hashes to the id;
//! 2. the *presence record*, signed by that key under SHA-256(key ‖ `presence:` ‖ name),
//!    holds the node id, the chat address and the gossip address, with an expiry; the
//!    highest sequence number wins, and going offline publishes a tombstone.
//!
//! Anyone can overwrite a directory entry (plain records are not owned), but without a key
//! whose fingerprint matches they can only make a lookup fail ("not authentic"), never
//! make it succeed with someone else.

use crate::event::Absence;
use crate::user::{Handle, UserKey};
use bytes::{BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use voidmesh_proto::frame::DecodeError;
use voidmesh_proto::signed::{signed_record_key, SignedRecordError};
use voidmesh_proto::wire::{put_socket_addr, Reader};
use voidmesh_proto::{Key, NodeId, SignedRecord};

/// Prefix of a presence record's salt (the name follows).
pub const PRESENCE_SALT_PREFIX: &[u8] = b"presence:";
/// Domain of directory keys.
const DIRECTORY_DOMAIN: &[u8] = b"voidmesh-chat/v1 directory\0";
/// Format version of [`Presence`] values.
const PRESENCE_VERSION: u8 = 1;
/// Most chat addresses a presence record carries.
pub const MAX_ADDRS: usize = 4;

/// What a presence record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// Online, or signed off (a tombstone).
    pub online: bool,
    /// The user's node (the chat connection must prove it).
    pub node_id: NodeId,
    /// Where the user's chat endpoint listens.
    pub chat_addrs: Vec<SocketAddr>,
    /// Where the user's gossip module listens (a neighbour for rooms).
    pub gossip_addr: Option<SocketAddr>,
}

/// A user found online: their key and presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Their user public key.
    pub public_key: [u8; 32],
    /// Their presence.
    pub presence: Presence,
    /// The record's sequence number.
    pub seq: u64,
}

/// The salt of `name`'s presence records.
pub fn presence_salt(name: &str) -> Bytes {
    let mut salt = BytesMut::with_capacity(PRESENCE_SALT_PREFIX.len() + name.len());
    salt.put_slice(PRESENCE_SALT_PREFIX);
    salt.put_slice(name.as_bytes());
    salt.freeze()
}

/// Where `name`'s presence record signed by `public_key` lives.
pub fn presence_key(public_key: &[u8; 32], name: &str) -> Key {
    signed_record_key(public_key, &presence_salt(name))
}

/// Where the directory entry of `handle` lives.
pub fn directory_key(handle: &Handle) -> Key {
    let mut hash = Sha256::new();
    hash.update(DIRECTORY_DOMAIN);
    hash.update(handle.name.as_bytes());
    hash.update(b"#");
    hash.update(handle.id.as_str().as_bytes());
    Key(hash.finalize().into())
}

impl Presence {
    /// The record value: `version u8 | online u8 | node id [32] | n u8 | n × addr |
    /// has_gossip u8 | [addr]`, addr = `family u8 (4|6) | ip | port u16`.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        out.put_u8(PRESENCE_VERSION);
        out.put_u8(u8::from(self.online));
        out.put_slice(self.node_id.as_bytes());
        let addrs = &self.chat_addrs[..self.chat_addrs.len().min(MAX_ADDRS)];
        out.put_u8(addrs.len() as u8);
        for addr in addrs {
            put_socket_addr(&mut out, addr);
        }
        match &self.gossip_addr {
            Some(addr) => {
                out.put_u8(1);
                put_socket_addr(&mut out, addr);
            }
            None => out.put_u8(0),
        }
        out.freeze()
    }

    /// Reads a record value.
    ///
    /// # Errors
    /// Any [`DecodeError`] (unknown version, bad flags, truncated, trailing bytes).
    pub fn decode(value: &Bytes) -> Result<Presence, DecodeError> {
        let mut r = Reader::new(value, 0);
        if r.u8("version")? != PRESENCE_VERSION {
            return Err(DecodeError::BadField("version"));
        }
        let online = read_flag(&mut r, "online")?;
        let node_id = r.key("node id")?;
        let count = usize::from(r.u8("address count")?);
        if count > MAX_ADDRS {
            return Err(DecodeError::BadField("address count"));
        }
        let chat_addrs = (0..count)
            .map(|_| r.socket_addr())
            .collect::<Result<Vec<_>, _>>()?;
        let gossip_addr = if read_flag(&mut r, "has gossip")? {
            Some(r.socket_addr()?)
        } else {
            None
        };
        r.finish()?;
        Ok(Presence {
            online,
            node_id,
            chat_addrs,
            gossip_addr,
        })
    }

    /// Signs this presence for `name` with sequence number `seq`, dead at Unix `expiry`.
    ///
    /// # Errors
    /// [`SignedRecordError`] if the name makes the salt too long (names are checked
    /// before, so this does not happen).
    pub fn sign(
        &self,
        user: &UserKey,
        name: &str,
        seq: u64,
        expiry: u64,
    ) -> Result<SignedRecord, SignedRecordError> {
        SignedRecord::sign(
            user.signing_key(),
            presence_salt(name),
            seq,
            expiry,
            self.encode(),
        )
    }
}

/// The public key a directory entry names, if it is one that `handle`'s id accepts.
///
/// # Errors
/// [`Absence::NotFound`] without an entry, [`Absence::NotAuthentic`] for an entry that is
/// not a key or a key of someone else.
pub fn check_directory_entry(handle: &Handle, entry: Option<&Bytes>) -> Result<[u8; 32], Absence> {
    let entry = entry.ok_or(Absence::NotFound)?;
    let key: [u8; 32] = entry[..]
        .try_into()
        .map_err(|_| Absence::NotAuthentic("directory entry is not a public key".into()))?;
    if !handle.id.matches(&key) {
        return Err(Absence::NotAuthentic(
            "directory entry names a key that does not match the id".into(),
        ));
    }
    Ok(key)
}

/// Decides what a presence lookup found: only a record under the right key, correctly
/// signed, unexpired at `unix_now` and online counts as found.
///
/// # Errors
/// [`Absence`]: `NotFound` without a record, `Gone` for a tombstone, `NotAuthentic` for
/// anything that fails a check.
pub fn check_presence(
    handle: &Handle,
    public_key: &[u8; 32],
    record: Option<&SignedRecord>,
    unix_now: u64,
) -> Result<Found, Absence> {
    let record = record.ok_or(Absence::NotFound)?;
    if record.public_key != *public_key {
        return Err(Absence::NotAuthentic("record signed by another key".into()));
    }
    record
        .validate(&presence_key(public_key, &handle.name), unix_now)
        .map_err(|e| Absence::NotAuthentic(e.to_string()))?;
    let presence = Presence::decode(&record.value)
        .map_err(|e| Absence::NotAuthentic(format!("presence value: {e}")))?;
    if !presence.online {
        return Err(Absence::Gone);
    }
    if presence.chat_addrs.is_empty() {
        return Err(Absence::NotAuthentic("presence has no address".into()));
    }
    Ok(Found {
        public_key: *public_key,
        presence,
        seq: record.seq,
    })
}

fn read_flag(r: &mut Reader<'_>, field: &'static str) -> Result<bool, DecodeError> {
    match r.u8(field)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::BadField(field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(online: bool) -> Presence {
        Presence {
            online,
            node_id: Key([5; 32]),
            chat_addrs: vec![
                "127.0.0.1:4000".parse().unwrap(),
                "[::1]:4001".parse().unwrap(),
            ],
            gossip_addr: Some("10.0.0.1:5000".parse().unwrap()),
        }
    }

    #[test]
    fn presence_round_trips() {
        let p = presence(true);
        assert_eq!(Presence::decode(&p.encode()).unwrap(), p);
        let mut none = presence(false);
        none.gossip_addr = None;
        assert_eq!(Presence::decode(&none.encode()).unwrap(), none);
        assert!(Presence::decode(&Bytes::from_static(&[2, 1])).is_err());
    }

    #[test]
    fn a_genuine_record_is_found_and_a_tombstone_is_gone() {
        let alice = UserKey::generate();
        let handle = Handle::new("alice", &alice.public_key());
        let pk = alice.public_key();
        let record = presence(true).sign(&alice, "alice", 7, 2000).unwrap();
        let found = check_presence(&handle, &pk, Some(&record), 1000).unwrap();
        assert_eq!(found.seq, 7);
        let tomb = presence(false).sign(&alice, "alice", 8, 2000).unwrap();
        assert_eq!(
            check_presence(&handle, &pk, Some(&tomb), 1000),
            Err(Absence::Gone)
        );
        assert_eq!(
            check_presence(&handle, &pk, None, 1000),
            Err(Absence::NotFound)
        );
    }

    #[test]
    fn forged_or_stale_records_are_not_authentic() {
        let alice = UserKey::generate();
        let mallory = UserKey::generate();
        let handle = Handle::new("alice", &alice.public_key());
        let pk = alice.public_key();
        let not_authentic = |r: Result<Found, Absence>| matches!(r, Err(Absence::NotAuthentic(_)));

        // Signed by another key.
        let other = presence(true).sign(&mallory, "alice", 9, 2000).unwrap();
        assert!(not_authentic(check_presence(
            &handle,
            &pk,
            Some(&other),
            1000
        )));
        // Alice's key, but a signature that does not hold.
        let mut tampered = presence(true).sign(&alice, "alice", 9, 2000).unwrap();
        tampered.signature[0] ^= 1;
        assert!(not_authentic(check_presence(
            &handle,
            &pk,
            Some(&tampered),
            1000
        )));
        // A genuine record for another name of Alice's.
        let wrong_name = presence(true).sign(&alice, "alicia", 9, 2000).unwrap();
        assert!(not_authentic(check_presence(
            &handle,
            &pk,
            Some(&wrong_name),
            1000
        )));
        // Expired.
        let old = presence(true).sign(&alice, "alice", 9, 999).unwrap();
        assert!(not_authentic(check_presence(
            &handle,
            &pk,
            Some(&old),
            1000
        )));
    }

    #[test]
    fn directory_entries_must_match_the_id() {
        let alice = UserKey::generate();
        let handle = Handle::new("alice", &alice.public_key());
        let good = Bytes::copy_from_slice(&alice.public_key());
        assert_eq!(
            check_directory_entry(&handle, Some(&good)),
            Ok(alice.public_key())
        );
        let other = Bytes::copy_from_slice(&UserKey::generate().public_key());
        assert!(matches!(
            check_directory_entry(&handle, Some(&other)),
            Err(Absence::NotAuthentic(_))
        ));
        assert!(matches!(
            check_directory_entry(&handle, Some(&Bytes::from_static(b"short"))),
            Err(Absence::NotAuthentic(_))
        ));
        assert_eq!(check_directory_entry(&handle, None), Err(Absence::NotFound));
        assert_ne!(
            directory_key(&handle),
            presence_key(&alice.public_key(), "alice")
        );
    }
}
