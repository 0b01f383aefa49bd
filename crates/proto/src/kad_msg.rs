//! Kademlia peer-to-peer messages (types 660–680). Each request travels on its own QUIC
//! stream and is answered on the same stream; see `docs/protocol.md`.
//!
//! # Format
//! Header: `size u32 | type u16` (see [`crate::frame`]). Bodies:
//! ```text
//! PING             660  (empty)
//! STORE            661  ttl_ms u32 | replication u8 | reserved u8 | version u64 | key [32] | value
//! FIND_NODE        662  target [32]
//! FIND_VALUE       663  key [32]
//! STORE_SIGNED     664  replication u8 | reserved u8 | signed record
//! PONG             670  (empty)
//! STORE_REPLY      671  key [32] | status u8 (0 = stored, 1 = refused)
//! FIND_NODE_REPLY  672  count u8 | count × contact
//! FIND_VALUE_REPLY 673  found u8 = 1 | ttl_ms u32 | version u64 | value
//!                       found u8 = 0 | count u8 | count × contact
//! FOUND_SIGNED     674  signed record
//! ERROR            680  code u16 | message (UTF-8)
//! contact:              public key [32] | family u8 (4 or 6) | address [4 or 16] | port u16
//!                       (the node id is SHA-256 of the key's DER SubjectPublicKeyInfo)
//! signed record:        public key [32] | salt len u8 | salt | seq u64 | expiry u64
//!                       | signature [64] | value          (see [`crate::signed`])
//! ```
//! STORE_SIGNED is answered with STORE_REPLY under the record's key
//! (SHA-256(public key ‖ salt)). FOUND_SIGNED answers a FIND_VALUE for a key that holds a
//! signed record.
//!
//! # Error codes
//! ```text
//! 1    the message is not a request            (ERROR_NOT_A_REQUEST)
//! 403  the sender's node id fails the id puzzle (ERROR_ID_PUZZLE)
//! 413  the reply does not fit a datagram: ask again over a stream
//!                                               (ERROR_TOO_LARGE_FOR_DATAGRAM)
//! 429  the sender exceeded its request rate     (ERROR_RATE_LIMITED)
//! ```

use crate::dht_api::MAX_VALUE_LEN;
use crate::frame::{exact_peer_frame, put_peer_header, DecodeError, PEER_HEADER_LEN};
use crate::id::{Key, NodeId, PublicKey};
use crate::signed::SignedRecord;
use crate::wire::{put_socket_addr, Reader};
use bytes::{BufMut, Bytes, BytesMut};
use std::net::SocketAddr;

/// PING: are you alive?
pub const PING: u16 = 660;
/// STORE: keep this record.
pub const STORE: u16 = 661;
/// FIND_NODE: which nodes do you know closest to this id?
pub const FIND_NODE: u16 = 662;
/// FIND_VALUE: the value for this key, or closer nodes.
pub const FIND_VALUE: u16 = 663;
/// STORE_SIGNED: keep this signed record.
pub const STORE_SIGNED: u16 = 664;
/// Reply to PING.
pub const PONG: u16 = 670;
/// Reply to STORE.
pub const STORE_REPLY: u16 = 671;
/// Reply to FIND_NODE.
pub const FIND_NODE_REPLY: u16 = 672;
/// Reply to FIND_VALUE.
pub const FIND_VALUE_REPLY: u16 = 673;
/// Reply to FIND_VALUE when the key holds a signed record.
pub const FOUND_SIGNED: u16 = 674;
/// An error reply to any request.
pub const ERROR: u16 = 680;

/// Whether `frame` is one of the DHT's peer messages by its type (660–699, the DHT's
/// part of the registry): how a socket shared with gossip picks the DHT's requests.
pub fn is_kad_frame(frame: &[u8]) -> bool {
    matches!(crate::frame::peer_frame_type(frame), Some(660..=699))
}

/// ERROR code: the message sent as a request is not a request.
pub const ERROR_NOT_A_REQUEST: u16 = 1;
/// ERROR code: the sender's node id does not solve the network's id puzzle, so it is not
/// served (see [`crate::id::id_puzzle_ok`]).
pub const ERROR_ID_PUZZLE: u16 = 403;
/// ERROR code: the request came as a datagram and its reply would not fit one; the
/// requester should send it again over a QUIC stream to the same port.
pub const ERROR_TOO_LARGE_FOR_DATAGRAM: u16 = 413;
/// ERROR code: the sender sent more requests than its rate limit allows; it may retry
/// later, and the receiver may drop its connection.
pub const ERROR_RATE_LIMITED: u16 = 429;

/// Most contacts one reply may carry.
pub const MAX_CONTACTS: usize = 255;

/// A record's version: the storing client's wall-clock time in milliseconds shifted left
/// 16 bits, plus a 16-bit tie-break. Larger is newer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version(pub u64);

impl Version {
    /// Builds a version from a Unix time in milliseconds and a tie-break.
    pub fn new(unix_millis: u64, tie_break: u16) -> Version {
        Version((unix_millis << 16) | u64::from(tie_break))
    }

    /// The writer's Unix time in milliseconds this version claims (its upper 48 bits).
    pub fn unix_millis(self) -> u64 {
        self.0 >> 16
    }
}

/// A peer as others can reach it: its id, its public key and its overlay address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Contact {
    /// The node id (SHA-256 of its public key).
    pub id: NodeId,
    /// Its Ed25519 public key: what an authenticated datagram to it is sealed for. On the
    /// wire only the key travels; the id is derived from it.
    pub key: PublicKey,
    /// Where its overlay endpoint listens.
    pub addr: SocketAddr,
}

/// A Kademlia message between peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KadMessage {
    /// Liveness check.
    Ping,
    /// Ask the peer to keep a record.
    Store {
        /// The key.
        key: Key,
        /// The value, at most [`MAX_VALUE_LEN`] bytes.
        value: Bytes,
        /// Milliseconds the record has left to live (rounded up by the sender).
        ttl_ms: u32,
        /// Replication the client asked for; holders use it when they republish.
        replication: u8,
        /// The record's version; a holder keeps the newest.
        version: Version,
    },
    /// Ask for the contacts closest to `target`.
    FindNode {
        /// The id looked up.
        target: Key,
    },
    /// Ask for the value under `key`, or else the closest contacts.
    FindValue {
        /// The key looked up.
        key: Key,
    },
    /// Ask the peer to keep a signed record (under `record.key()`).
    StoreSigned {
        /// The record; the peer checks it before keeping it.
        record: SignedRecord,
        /// Replication the owner asked for; holders use it when they republish.
        replication: u8,
    },
    /// Reply to [`KadMessage::Ping`].
    Pong,
    /// Reply to [`KadMessage::Store`].
    StoreReply {
        /// The key the STORE was for.
        key: Key,
        /// Whether the record is now held (false: refused, e.g. an older version or full).
        stored: bool,
    },
    /// Reply to [`KadMessage::FindNode`].
    FindNodeReply {
        /// Closest known contacts, nearest first.
        contacts: Vec<Contact>,
    },
    /// Reply to [`KadMessage::FindValue`] when the value is held.
    FoundValue {
        /// The value.
        value: Bytes,
        /// Milliseconds it has left to live (rounded up by the sender).
        ttl_ms: u32,
        /// Its version.
        version: Version,
    },
    /// Reply to [`KadMessage::FindValue`] when the value is not held.
    ValueNotFound {
        /// Closest known contacts, nearest first.
        contacts: Vec<Contact>,
    },
    /// Reply to [`KadMessage::FindValue`] when the key holds a signed record.
    FoundSigned {
        /// The record, unverified until the receiver checks it.
        record: SignedRecord,
    },
    /// The request could not be served.
    Error {
        /// A machine-readable code (see docs/protocol.md).
        code: u16,
        /// A human-readable reason.
        message: String,
    },
}

impl Contact {
    /// The contact of the node owning `key`, at `addr` (its id derived from the key).
    pub fn new(key: PublicKey, addr: SocketAddr) -> Contact {
        Contact {
            id: key.node_id(),
            key,
            addr,
        }
    }

    /// A contact known only by its id, with no usable key: for simulations and tests
    /// that never send it a real datagram. Encoding it sends a zero key, from which the
    /// receiver derives another id.
    pub fn unkeyed(id: NodeId, addr: SocketAddr) -> Contact {
        Contact {
            id,
            key: PublicKey::default(),
            addr,
        }
    }
}

impl KadMessage {
    /// The message's type number.
    pub fn msg_type(&self) -> u16 {
        match self {
            KadMessage::Ping => PING,
            KadMessage::Store { .. } => STORE,
            KadMessage::FindNode { .. } => FIND_NODE,
            KadMessage::FindValue { .. } => FIND_VALUE,
            KadMessage::StoreSigned { .. } => STORE_SIGNED,
            KadMessage::Pong => PONG,
            KadMessage::StoreReply { .. } => STORE_REPLY,
            KadMessage::FindNodeReply { .. } => FIND_NODE_REPLY,
            KadMessage::FoundValue { .. } | KadMessage::ValueNotFound { .. } => FIND_VALUE_REPLY,
            KadMessage::FoundSigned { .. } => FOUND_SIGNED,
            KadMessage::Error { .. } => ERROR,
        }
    }

    /// True for the message types a peer may send as a request.
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            KadMessage::Ping
                | KadMessage::Store { .. }
                | KadMessage::FindNode { .. }
                | KadMessage::FindValue { .. }
                | KadMessage::StoreSigned { .. }
        )
    }

    /// Decodes one whole frame (header included).
    ///
    /// # Errors
    /// Any [`DecodeError`]; values longer than [`MAX_VALUE_LEN`] are refused.
    pub fn decode(frame: &Bytes) -> Result<KadMessage, DecodeError> {
        let header = exact_peer_frame(frame)?;
        let mut r = Reader::new(frame, PEER_HEADER_LEN);
        let msg = match header.msg_type {
            PING => KadMessage::Ping,
            PONG => KadMessage::Pong,
            STORE => {
                let ttl_ms = r.u32("ttl")?;
                let replication = r.u8("replication")?;
                let _reserved = r.u8("reserved")?;
                let version = Version(r.u64("version")?);
                let key = r.key("key")?;
                let value = r.rest();
                if value.len() > MAX_VALUE_LEN {
                    return Err(DecodeError::BadField("value"));
                }
                KadMessage::Store {
                    key,
                    value,
                    ttl_ms,
                    replication,
                    version,
                }
            }
            FIND_NODE => KadMessage::FindNode {
                target: r.key("target")?,
            },
            FIND_VALUE => KadMessage::FindValue { key: r.key("key")? },
            STORE_SIGNED => {
                let replication = r.u8("replication")?;
                let _reserved = r.u8("reserved")?;
                KadMessage::StoreSigned {
                    record: SignedRecord::read_rest(&mut r)?,
                    replication,
                }
            }
            FOUND_SIGNED => KadMessage::FoundSigned {
                record: SignedRecord::read_rest(&mut r)?,
            },
            STORE_REPLY => {
                let key = r.key("key")?;
                let stored = match r.u8("status")? {
                    0 => true,
                    1 => false,
                    _ => return Err(DecodeError::BadField("status")),
                };
                KadMessage::StoreReply { key, stored }
            }
            FIND_NODE_REPLY => KadMessage::FindNodeReply {
                contacts: read_contacts(&mut r)?,
            },
            FIND_VALUE_REPLY => match r.u8("found")? {
                1 => {
                    let ttl_ms = r.u32("ttl")?;
                    let version = Version(r.u64("version")?);
                    let value = r.rest();
                    if value.len() > MAX_VALUE_LEN {
                        return Err(DecodeError::BadField("value"));
                    }
                    KadMessage::FoundValue {
                        value,
                        ttl_ms,
                        version,
                    }
                }
                0 => KadMessage::ValueNotFound {
                    contacts: read_contacts(&mut r)?,
                },
                _ => return Err(DecodeError::BadField("found")),
            },
            ERROR => {
                let code = r.u16("code")?;
                let text = r.rest();
                let message = String::from_utf8(text.to_vec())
                    .map_err(|_| DecodeError::BadField("message"))?;
                KadMessage::Error { code, message }
            }
            other => return Err(DecodeError::UnknownType(other)),
        };
        r.finish()?;
        Ok(msg)
    }

    /// Encodes the message into a fresh buffer, header included.
    pub fn encode(&self) -> Bytes {
        let mut body = BytesMut::with_capacity(64);
        match self {
            KadMessage::Ping | KadMessage::Pong => {}
            KadMessage::Store {
                key,
                value,
                ttl_ms,
                replication,
                version,
            } => {
                body.reserve(46 + value.len());
                body.put_u32(*ttl_ms);
                body.put_u8(*replication);
                body.put_u8(0);
                body.put_u64(version.0);
                body.put_slice(&key.0);
                body.put_slice(value);
            }
            KadMessage::FindNode { target: key } | KadMessage::FindValue { key } => {
                body.put_slice(&key.0)
            }
            KadMessage::StoreSigned {
                record,
                replication,
            } => {
                body.put_u8(*replication);
                body.put_u8(0);
                record.encode_into(&mut body);
            }
            KadMessage::FoundSigned { record } => record.encode_into(&mut body),
            KadMessage::StoreReply { key, stored } => {
                body.put_slice(&key.0);
                body.put_u8(if *stored { 0 } else { 1 });
            }
            KadMessage::FindNodeReply { contacts } => write_contacts(&mut body, contacts),
            KadMessage::FoundValue {
                value,
                ttl_ms,
                version,
            } => {
                body.reserve(13 + value.len());
                body.put_u8(1);
                body.put_u32(*ttl_ms);
                body.put_u64(version.0);
                body.put_slice(value);
            }
            KadMessage::ValueNotFound { contacts } => {
                body.put_u8(0);
                write_contacts(&mut body, contacts);
            }
            KadMessage::Error { code, message } => {
                body.put_u16(*code);
                body.put_slice(message.as_bytes());
            }
        }
        let mut frame = BytesMut::with_capacity(PEER_HEADER_LEN + body.len());
        put_peer_header(&mut frame, PEER_HEADER_LEN + body.len(), self.msg_type());
        frame.put_slice(&body);
        frame.freeze()
    }
}

fn write_contacts(buf: &mut BytesMut, contacts: &[Contact]) {
    let count = contacts.len().min(MAX_CONTACTS);
    buf.put_u8(count as u8);
    for c in &contacts[..count] {
        write_contact(buf, c);
    }
}

/// Appends one contact in its wire form.
pub fn write_contact(buf: &mut BytesMut, c: &Contact) {
    buf.put_slice(&c.key.0);
    put_socket_addr(buf, &c.addr);
}

fn read_contacts(r: &mut Reader<'_>) -> Result<Vec<Contact>, DecodeError> {
    let count = r.u8("count")? as usize;
    let mut contacts = Vec::with_capacity(count);
    for _ in 0..count {
        contacts.push(read_contact(r)?);
    }
    Ok(contacts)
}

/// Reads one contact in its wire form.
///
/// # Errors
/// [`DecodeError::BadField`] for an unknown address family, or a truncated contact.
pub fn read_contact(r: &mut Reader<'_>) -> Result<Contact, DecodeError> {
    let key = PublicKey(r.key("contact key")?.0);
    let addr = r.socket_addr()?;
    Ok(Contact::new(key, addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn arb_key() -> impl Strategy<Value = Key> + Clone {
        any::<[u8; 32]>().prop_map(Key)
    }

    fn arb_contact() -> impl Strategy<Value = Contact> + Clone {
        (arb_key(), any::<bool>(), any::<[u8; 16]>(), any::<u16>()).prop_map(
            |(id, v4, ip, port)| {
                let ip = if v4 {
                    IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]))
                } else {
                    IpAddr::V6(Ipv6Addr::from(ip))
                };
                Contact::new(PublicKey(id.0), SocketAddr::new(ip, port))
            },
        )
    }

    fn arb_signed() -> impl Strategy<Value = SignedRecord> + Clone {
        (
            any::<[u8; 32]>(),
            proptest::collection::vec(any::<u8>(), 0..=crate::signed::MAX_SALT_LEN),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(seed, salt, seq, expiry, value)| {
                let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                SignedRecord::sign(&key, Bytes::from(salt), seq, expiry, Bytes::from(value))
                    .unwrap()
            })
    }

    fn arb_msg() -> impl Strategy<Value = KadMessage> {
        let value = proptest::collection::vec(any::<u8>(), 0..500).prop_map(Bytes::from);
        let contacts = proptest::collection::vec(arb_contact(), 0..30);
        prop_oneof![
            Just(KadMessage::Ping),
            Just(KadMessage::Pong),
            (
                arb_key(),
                value.clone(),
                any::<u32>(),
                any::<u8>(),
                any::<u64>()
            )
                .prop_map(|(key, value, ttl_ms, replication, v)| {
                    KadMessage::Store {
                        key,
                        value,
                        ttl_ms,
                        replication,
                        version: Version(v),
                    }
                }),
            arb_key().prop_map(|target| KadMessage::FindNode { target }),
            arb_key().prop_map(|key| KadMessage::FindValue { key }),
            (arb_key(), any::<bool>())
                .prop_map(|(key, stored)| KadMessage::StoreReply { key, stored }),
            contacts
                .clone()
                .prop_map(|contacts| KadMessage::FindNodeReply { contacts }),
            (value, any::<u32>(), any::<u64>()).prop_map(|(value, ttl_ms, v)| {
                KadMessage::FoundValue {
                    value,
                    ttl_ms,
                    version: Version(v),
                }
            }),
            contacts.prop_map(|contacts| KadMessage::ValueNotFound { contacts }),
            (arb_signed(), any::<u8>()).prop_map(|(record, replication)| {
                KadMessage::StoreSigned {
                    record,
                    replication,
                }
            }),
            arb_signed().prop_map(|record| KadMessage::FoundSigned { record }),
            (any::<u16>(), ".{0,40}")
                .prop_map(|(code, message)| KadMessage::Error { code, message }),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(msg in arb_msg()) {
            prop_assert_eq!(KadMessage::decode(&msg.encode()).unwrap(), msg);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = KadMessage::decode(&Bytes::from(bytes));
        }

        #[test]
        fn decoding_mutated_frames_never_panics(msg in arb_msg(), pos in any::<usize>(), byte in any::<u8>()) {
            let mut raw = msg.encode().to_vec();
            let i = pos % raw.len();
            raw[i] = byte;
            let _ = KadMessage::decode(&Bytes::from(raw));
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut raw = KadMessage::FindNode {
            target: Key([1; 32]),
        }
        .encode()
        .to_vec();
        raw.push(0);
        let len = raw.len() as u32;
        raw[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            KadMessage::decode(&Bytes::from(raw)),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn store_signed_layout_is_replication_reserved_record() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let record = SignedRecord::sign(
            &key,
            Bytes::from_static(b"s"),
            5,
            6,
            Bytes::from_static(b"v"),
        )
        .unwrap();
        let frame = KadMessage::StoreSigned {
            record: record.clone(),
            replication: 3,
        }
        .encode();
        assert_eq!(&frame[4..6], &STORE_SIGNED.to_be_bytes());
        assert_eq!(frame[6], 3);
        assert_eq!(frame[7], 0);
        assert_eq!(&frame[8..], &record.to_bytes()[..]);
        assert_eq!(frame.len(), 6 + 2 + 113 + 1 + 1);
        let reply = KadMessage::FoundSigned {
            record: record.clone(),
        }
        .encode();
        assert_eq!(&reply[4..6], &FOUND_SIGNED.to_be_bytes());
        assert_eq!(&reply[6..], &record.to_bytes()[..]);
    }

    #[test]
    fn oversized_value_is_rejected() {
        let msg = KadMessage::Store {
            key: Key::default(),
            value: Bytes::from(vec![0; MAX_VALUE_LEN + 1]),
            ttl_ms: 1,
            replication: 1,
            version: Version(1),
        };
        assert_eq!(
            KadMessage::decode(&msg.encode()),
            Err(DecodeError::BadField("value"))
        );
    }
}
