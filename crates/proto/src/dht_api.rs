//! The VoidPhone DHT API messages (types 650–653), byte-exact with
//! `spec/voidphone-api.md`.
//!
//! # Format
//! ```text
//! PUT     650: size u16 | 650 | ttl u16 | replication u8 | reserved u8 | key [32] | value
//! GET     651: size u16 (=36) | 651 | key [32]
//! SUCCESS 652: size u16 | 652 | key [32] | value
//! FAILURE 653: size u16 (=36) | 653 | key [32]
//! ```
//! voidmesh extensions in the reserved DHT range (signed mutable records, see
//! [`crate::signed`] for the record layout):
//! ```text
//! PUT SIGNED     654: size u16 | 654 | replication u8 | reserved u8 | record
//! GET SIGNED     655: size u16 (=36) | 655 | key [32]
//! SIGNED SUCCESS 656: size u16 | 656 | key [32] | record
//! PUT SIGNED RESULT 657: size u16 (=37) | 657 | key [32] | status u8
//!                    status: 0 stored, 1 invalid record (signature, key, expiry),
//!                            2 not stored (an equal or higher sequence number is held, or no node took it)
//! ```
//! A GET SIGNED that finds nothing valid is answered with FAILURE (653).

use crate::frame::{exact_api_frame, put_api_header, DecodeError, API_HEADER_LEN};
use crate::id::Key;
use crate::signed::SignedRecord;
use crate::wire::Reader;
use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Type number of DHT PUT.
pub const DHT_PUT: u16 = 650;
/// Type number of DHT GET.
pub const DHT_GET: u16 = 651;
/// Type number of DHT SUCCESS.
pub const DHT_SUCCESS: u16 = 652;
/// Type number of DHT FAILURE.
pub const DHT_FAILURE: u16 = 653;

/// Type number of DHT PUT SIGNED (voidmesh extension).
pub const DHT_PUT_SIGNED: u16 = 654;
/// Type number of DHT GET SIGNED (voidmesh extension).
pub const DHT_GET_SIGNED: u16 = 655;
/// Type number of DHT SIGNED SUCCESS (voidmesh extension).
pub const DHT_SIGNED_SUCCESS: u16 = 656;
/// Type number of DHT PUT SIGNED RESULT (voidmesh extension).
pub const DHT_PUT_SIGNED_RESULT: u16 = 657;

/// Outcome of a PUT SIGNED, as reported in PUT SIGNED RESULT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutSignedStatus {
    /// At least one node (this one or a remote one) holds the record now.
    Stored = 0,
    /// The record's signature, key or expiry is wrong.
    Invalid = 1,
    /// Nobody took it (an equal or higher sequence number is held).
    NotStored = 2,
}

/// Fixed part of a PUT: header, ttl, replication, reserved, key.
pub const PUT_FIXED_LEN: usize = API_HEADER_LEN + 4 + 32;
/// Largest value a PUT can carry (65535 - 40). Peers refuse larger values too.
pub const MAX_VALUE_LEN: usize = u16::MAX as usize - PUT_FIXED_LEN;

/// One message of the DHT API, in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtMessage {
    /// Client → DHT: store `value` under `key`. No reply.
    Put {
        /// Seconds the pair should live (a hint, capped by the node).
        ttl: u16,
        /// How many peers should hold a copy (a hint, capped by the node).
        replication: u8,
        /// The key.
        key: Key,
        /// The value, at most [`MAX_VALUE_LEN`] bytes.
        value: Bytes,
    },
    /// Client → DHT: find the value stored under `key`.
    Get {
        /// The key.
        key: Key,
    },
    /// DHT → client: the value found for `key`.
    Success {
        /// The key asked for.
        key: Key,
        /// The value found.
        value: Bytes,
    },
    /// DHT → client: `key` was not found after a bounded search.
    Failure {
        /// The key asked for.
        key: Key,
    },
    /// Client → DHT: store a signed mutable record under `record.key()`.
    PutSigned {
        /// How many peers should hold a copy (a hint, capped by the node).
        replication: u8,
        /// The record.
        record: SignedRecord,
    },
    /// Client → DHT: find the verified signed record with the highest sequence number.
    GetSigned {
        /// The key (SHA-256(public key ‖ salt)).
        key: Key,
    },
    /// DHT → client: the signed record found for `key` (already verified by the node; a
    /// client may verify it again).
    SignedSuccess {
        /// The key asked for.
        key: Key,
        /// The record.
        record: SignedRecord,
    },
    /// DHT → client: what became of a PUT SIGNED.
    PutSignedResult {
        /// The record's key.
        key: Key,
        /// The outcome.
        status: PutSignedStatus,
    },
}

/// Why a message cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The value does not fit in a 16-bit sized frame.
    #[error("value of {0} bytes does not fit in one API message")]
    ValueTooLarge(usize),
}

impl DhtMessage {
    /// The message's type number.
    pub fn msg_type(&self) -> u16 {
        match self {
            DhtMessage::Put { .. } => DHT_PUT,
            DhtMessage::Get { .. } => DHT_GET,
            DhtMessage::Success { .. } => DHT_SUCCESS,
            DhtMessage::Failure { .. } => DHT_FAILURE,
            DhtMessage::PutSigned { .. } => DHT_PUT_SIGNED,
            DhtMessage::GetSigned { .. } => DHT_GET_SIGNED,
            DhtMessage::SignedSuccess { .. } => DHT_SIGNED_SUCCESS,
            DhtMessage::PutSignedResult { .. } => DHT_PUT_SIGNED_RESULT,
        }
    }

    /// Decodes one whole frame (header included).
    ///
    /// # Errors
    /// Any [`DecodeError`]: wrong size for the type, unknown type, size field not equal to
    /// the frame length.
    pub fn decode(frame: &Bytes) -> Result<DhtMessage, DecodeError> {
        let header = exact_api_frame(frame)?;
        let size = header.size;
        let bad_length = DecodeError::BadLength {
            msg_type: header.msg_type,
            size,
        };
        let mut r = Reader::new(frame, API_HEADER_LEN);
        let msg = match header.msg_type {
            DHT_PUT => {
                if size < PUT_FIXED_LEN {
                    return Err(bad_length);
                }
                let ttl = r.u16("ttl")?;
                let replication = r.u8("replication")?;
                let _reserved = r.u8("reserved")?;
                let key = r.key("key")?;
                DhtMessage::Put {
                    ttl,
                    replication,
                    key,
                    value: r.rest(),
                }
            }
            DHT_GET | DHT_FAILURE | DHT_GET_SIGNED => {
                if size != API_HEADER_LEN + 32 {
                    return Err(bad_length);
                }
                let key = r.key("key")?;
                match header.msg_type {
                    DHT_GET => DhtMessage::Get { key },
                    DHT_FAILURE => DhtMessage::Failure { key },
                    _ => DhtMessage::GetSigned { key },
                }
            }
            DHT_PUT_SIGNED => {
                let replication = r.u8("replication")?;
                let _reserved = r.u8("reserved")?;
                let record = SignedRecord::read_rest(&mut r)?;
                DhtMessage::PutSigned {
                    replication,
                    record,
                }
            }
            DHT_SIGNED_SUCCESS => {
                let key = r.key("key")?;
                let record = SignedRecord::read_rest(&mut r)?;
                DhtMessage::SignedSuccess { key, record }
            }
            DHT_PUT_SIGNED_RESULT => {
                if size != API_HEADER_LEN + 33 {
                    return Err(bad_length);
                }
                let key = r.key("key")?;
                let status = match r.u8("status")? {
                    0 => PutSignedStatus::Stored,
                    1 => PutSignedStatus::Invalid,
                    2 => PutSignedStatus::NotStored,
                    _ => return Err(DecodeError::BadField("status")),
                };
                DhtMessage::PutSignedResult { key, status }
            }
            DHT_SUCCESS => {
                if size < API_HEADER_LEN + 32 {
                    return Err(bad_length);
                }
                let key = r.key("key")?;
                DhtMessage::Success {
                    key,
                    value: r.rest(),
                }
            }
            other => return Err(DecodeError::UnknownType(other)),
        };
        Ok(msg)
    }

    /// Appends the encoded message to `buf`.
    ///
    /// # Errors
    /// [`EncodeError::ValueTooLarge`] if the frame would exceed 65535 bytes.
    pub fn encode_into(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            DhtMessage::Put {
                ttl,
                replication,
                key,
                value,
            } => {
                let size = PUT_FIXED_LEN + value.len();
                if size > u16::MAX as usize {
                    return Err(EncodeError::ValueTooLarge(value.len()));
                }
                buf.reserve(size);
                put_api_header(buf, size, DHT_PUT);
                buf.put_u16(*ttl);
                buf.put_u8(*replication);
                buf.put_u8(0);
                buf.put_slice(&key.0);
                buf.put_slice(value);
            }
            DhtMessage::Get { key }
            | DhtMessage::Failure { key }
            | DhtMessage::GetSigned { key } => {
                buf.reserve(36);
                put_api_header(buf, 36, self.msg_type());
                buf.put_slice(&key.0);
            }
            DhtMessage::PutSigned {
                replication,
                record,
            } => {
                let size = API_HEADER_LEN + 2 + record.encoded_len();
                if size > u16::MAX as usize {
                    return Err(EncodeError::ValueTooLarge(record.value.len()));
                }
                buf.reserve(size);
                put_api_header(buf, size, DHT_PUT_SIGNED);
                buf.put_u8(*replication);
                buf.put_u8(0);
                record.encode_into(buf);
            }
            DhtMessage::SignedSuccess { key, record } => {
                let size = API_HEADER_LEN + 32 + record.encoded_len();
                if size > u16::MAX as usize {
                    return Err(EncodeError::ValueTooLarge(record.value.len()));
                }
                buf.reserve(size);
                put_api_header(buf, size, DHT_SIGNED_SUCCESS);
                buf.put_slice(&key.0);
                record.encode_into(buf);
            }
            DhtMessage::PutSignedResult { key, status } => {
                buf.reserve(37);
                put_api_header(buf, 37, DHT_PUT_SIGNED_RESULT);
                buf.put_slice(&key.0);
                buf.put_u8(*status as u8);
            }
            DhtMessage::Success { key, value } => {
                let size = API_HEADER_LEN + 32 + value.len();
                if size > u16::MAX as usize {
                    return Err(EncodeError::ValueTooLarge(value.len()));
                }
                buf.reserve(size);
                put_api_header(buf, size, DHT_SUCCESS);
                buf.put_slice(&key.0);
                buf.put_slice(value);
            }
        }
        Ok(())
    }

    /// Encodes the message into a fresh buffer.
    ///
    /// # Errors
    /// As [`DhtMessage::encode_into`].
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::new();
        self.encode_into(&mut buf)?;
        Ok(buf.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_key() -> impl Strategy<Value = Key> {
        any::<[u8; 32]>().prop_map(Key)
    }

    fn arb_signed() -> impl Strategy<Value = SignedRecord> {
        (
            any::<[u8; 32]>(),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..300),
            proptest::collection::vec(any::<u8>(), 64..=64),
        )
            .prop_map(|(public_key, salt, seq, expiry, value, sig)| {
                let mut signature = [0u8; 64];
                signature.copy_from_slice(&sig);
                SignedRecord {
                    public_key,
                    salt: Bytes::from(salt),
                    seq,
                    expiry,
                    value: Bytes::from(value),
                    signature,
                }
            })
    }

    fn arb_msg() -> impl Strategy<Value = DhtMessage> {
        let value = proptest::collection::vec(any::<u8>(), 0..2000).prop_map(Bytes::from);
        prop_oneof![
            (any::<u16>(), any::<u8>(), arb_key(), value.clone()).prop_map(
                |(ttl, replication, key, value)| DhtMessage::Put {
                    ttl,
                    replication,
                    key,
                    value
                }
            ),
            arb_key().prop_map(|key| DhtMessage::Get { key }),
            (arb_key(), value).prop_map(|(key, value)| DhtMessage::Success { key, value }),
            arb_key().prop_map(|key| DhtMessage::Failure { key }),
            arb_key().prop_map(|key| DhtMessage::GetSigned { key }),
            (any::<u8>(), arb_signed()).prop_map(|(replication, record)| {
                DhtMessage::PutSigned {
                    replication,
                    record,
                }
            }),
            (arb_key(), arb_signed())
                .prop_map(|(key, record)| DhtMessage::SignedSuccess { key, record }),
            (arb_key(), 0u8..3).prop_map(|(key, s)| DhtMessage::PutSignedResult {
                key,
                status: [
                    PutSignedStatus::Stored,
                    PutSignedStatus::Invalid,
                    PutSignedStatus::NotStored
                ][s as usize],
            }),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(msg in arb_msg()) {
            let bytes = msg.encode().unwrap();
            prop_assert_eq!(DhtMessage::decode(&bytes).unwrap(), msg);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = DhtMessage::decode(&Bytes::from(bytes));
        }
    }

    #[test]
    fn get_is_byte_exact() {
        let bytes = DhtMessage::Get { key: Key([9; 32]) }.encode().unwrap();
        assert_eq!(&bytes[..4], &[0, 36, 0x02, 0x8b]);
        assert_eq!(&bytes[4..], &[9; 32]);
    }

    #[test]
    fn put_layout_matches_spec() {
        let bytes = DhtMessage::Put {
            ttl: 0x0102,
            replication: 5,
            key: Key([1; 32]),
            value: Bytes::from_static(b"hi"),
        }
        .encode()
        .unwrap();
        assert_eq!(&bytes[..8], &[0, 42, 0x02, 0x8a, 1, 2, 5, 0]);
        assert_eq!(&bytes[40..], b"hi");
    }

    #[test]
    fn get_with_wrong_size_is_rejected() {
        let mut raw = vec![0u8, 37, 0x02, 0x8b];
        raw.extend_from_slice(&[0; 33]);
        assert!(matches!(
            DhtMessage::decode(&Bytes::from(raw)),
            Err(DecodeError::BadLength { .. })
        ));
    }

    #[test]
    fn short_put_is_rejected() {
        let mut raw = vec![0u8, 39, 0x02, 0x8a];
        raw.extend_from_slice(&[0; 35]);
        assert!(DhtMessage::decode(&Bytes::from(raw)).is_err());
    }

    #[test]
    fn largest_value_fits() {
        let msg = DhtMessage::Put {
            ttl: 1,
            replication: 1,
            key: Key::default(),
            value: Bytes::from(vec![7; MAX_VALUE_LEN]),
        };
        let bytes = msg.encode().unwrap();
        assert_eq!(bytes.len(), 65535);
        assert_eq!(DhtMessage::decode(&bytes).unwrap(), msg);
    }
}
