//! The VoidPhone Gossip API messages (types 500–503), byte-exact with
//! `spec/voidphone-api.md`.
//!
//! # Format
//! ```text
//! ANNOUNCE     500: size u16 | 500 | ttl u8 | reserved u8 | data type u16 | data
//! NOTIFY       501: size u16 (=8) | 501 | reserved u16 | data type u16
//! NOTIFICATION 502: size u16 | 502 | message id u16 | data type u16 | data
//! VALIDATION   503: size u16 (=8) | 503 | message id u16 | reserved: 15 bits | V: 1 bit
//! ```
//! All integers are big-endian. `V` is the lowest bit of the last byte (1 = well-formed).
//! Reserved bits are ignored when decoding and written as zero when encoding.

use crate::frame::{exact_api_frame, put_api_header, DecodeError, API_HEADER_LEN};
use crate::wire::Reader;
use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Type number of GOSSIP ANNOUNCE.
pub const GOSSIP_ANNOUNCE: u16 = 500;
/// Type number of GOSSIP NOTIFY.
pub const GOSSIP_NOTIFY: u16 = 501;
/// Type number of GOSSIP NOTIFICATION.
pub const GOSSIP_NOTIFICATION: u16 = 502;
/// Type number of GOSSIP VALIDATION.
pub const GOSSIP_VALIDATION: u16 = 503;

/// Fixed part of every Gossip API message: the header plus four bytes.
pub const GOSSIP_FIXED_LEN: usize = API_HEADER_LEN + 4;
/// Largest item data an ANNOUNCE or NOTIFICATION can carry (65535 - 8).
pub const MAX_DATA_LEN: usize = u16::MAX as usize - GOSSIP_FIXED_LEN;

/// One message of the Gossip API, in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipApiMessage {
    /// Client → Gossip: spread `data` of `data_type`. No reply.
    Announce {
        /// Hops the item may travel; 0 means "no limit" (the module still bounds it).
        ttl: u8,
        /// The application-defined type of the item.
        data_type: u16,
        /// The item, at most [`MAX_DATA_LEN`] bytes.
        data: Bytes,
    },
    /// Client → Gossip: deliver every item of `data_type` on this connection.
    Notify {
        /// The type registered.
        data_type: u16,
    },
    /// Gossip → client: an item of a registered type.
    Notification {
        /// Chosen by the module; the client's [`GossipApiMessage::Validation`] refers to it.
        message_id: u16,
        /// The item's type.
        data_type: u16,
        /// The item, at most [`MAX_DATA_LEN`] bytes.
        data: Bytes,
    },
    /// Client → Gossip: the verdict on a notification.
    Validation {
        /// The notification's message id.
        message_id: u16,
        /// True when the item is well-formed (V = 1).
        valid: bool,
    },
}

/// Why a Gossip API message cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The data does not fit in a 16-bit sized frame.
    #[error("data of {0} bytes does not fit in one API message")]
    DataTooLarge(usize),
}

impl GossipApiMessage {
    /// The message's type number.
    pub fn msg_type(&self) -> u16 {
        match self {
            GossipApiMessage::Announce { .. } => GOSSIP_ANNOUNCE,
            GossipApiMessage::Notify { .. } => GOSSIP_NOTIFY,
            GossipApiMessage::Notification { .. } => GOSSIP_NOTIFICATION,
            GossipApiMessage::Validation { .. } => GOSSIP_VALIDATION,
        }
    }

    /// Decodes one whole frame (header included).
    ///
    /// # Errors
    /// Any [`DecodeError`]: NOTIFY or VALIDATION not exactly 8 bytes, ANNOUNCE or
    /// NOTIFICATION shorter than 8 bytes, an unknown type, or a size field not equal to the
    /// frame length.
    pub fn decode(frame: &Bytes) -> Result<GossipApiMessage, DecodeError> {
        let header = exact_api_frame(frame)?;
        let size = header.size;
        let bad_length = DecodeError::BadLength {
            msg_type: header.msg_type,
            size,
        };
        let mut r = Reader::new(frame, API_HEADER_LEN);
        let msg = match header.msg_type {
            GOSSIP_ANNOUNCE => {
                if size < GOSSIP_FIXED_LEN {
                    return Err(bad_length);
                }
                let ttl = r.u8("ttl")?;
                let _reserved = r.u8("reserved")?;
                let data_type = r.u16("data type")?;
                GossipApiMessage::Announce {
                    ttl,
                    data_type,
                    data: r.rest(),
                }
            }
            GOSSIP_NOTIFY => {
                if size != GOSSIP_FIXED_LEN {
                    return Err(bad_length);
                }
                let _reserved = r.u16("reserved")?;
                GossipApiMessage::Notify {
                    data_type: r.u16("data type")?,
                }
            }
            GOSSIP_NOTIFICATION => {
                if size < GOSSIP_FIXED_LEN {
                    return Err(bad_length);
                }
                let message_id = r.u16("message id")?;
                let data_type = r.u16("data type")?;
                GossipApiMessage::Notification {
                    message_id,
                    data_type,
                    data: r.rest(),
                }
            }
            GOSSIP_VALIDATION => {
                if size != GOSSIP_FIXED_LEN {
                    return Err(bad_length);
                }
                let message_id = r.u16("message id")?;
                let flags = r.u16("flags")?;
                GossipApiMessage::Validation {
                    message_id,
                    valid: flags & 1 == 1,
                }
            }
            other => return Err(DecodeError::UnknownType(other)),
        };
        r.finish()?;
        Ok(msg)
    }

    /// Appends the encoded message to `buf`.
    ///
    /// # Errors
    /// [`EncodeError::DataTooLarge`] if the frame would exceed 65535 bytes.
    pub fn encode_into(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            GossipApiMessage::Announce {
                ttl,
                data_type,
                data,
            } => {
                let size = frame_size(data)?;
                buf.reserve(size);
                put_api_header(buf, size, GOSSIP_ANNOUNCE);
                buf.put_u8(*ttl);
                buf.put_u8(0);
                buf.put_u16(*data_type);
                buf.put_slice(data);
            }
            GossipApiMessage::Notify { data_type } => {
                buf.reserve(GOSSIP_FIXED_LEN);
                put_api_header(buf, GOSSIP_FIXED_LEN, GOSSIP_NOTIFY);
                buf.put_u16(0);
                buf.put_u16(*data_type);
            }
            GossipApiMessage::Notification {
                message_id,
                data_type,
                data,
            } => {
                let size = frame_size(data)?;
                buf.reserve(size);
                put_api_header(buf, size, GOSSIP_NOTIFICATION);
                buf.put_u16(*message_id);
                buf.put_u16(*data_type);
                buf.put_slice(data);
            }
            GossipApiMessage::Validation { message_id, valid } => {
                buf.reserve(GOSSIP_FIXED_LEN);
                put_api_header(buf, GOSSIP_FIXED_LEN, GOSSIP_VALIDATION);
                buf.put_u16(*message_id);
                buf.put_u16(u16::from(*valid));
            }
        }
        Ok(())
    }

    /// Encodes the message into a fresh buffer.
    ///
    /// # Errors
    /// As [`GossipApiMessage::encode_into`].
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::new();
        self.encode_into(&mut buf)?;
        Ok(buf.freeze())
    }
}

/// Size of an ANNOUNCE or NOTIFICATION frame carrying `data`.
fn frame_size(data: &Bytes) -> Result<usize, EncodeError> {
    if data.len() > MAX_DATA_LEN {
        return Err(EncodeError::DataTooLarge(data.len()));
    }
    Ok(GOSSIP_FIXED_LEN + data.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_msg() -> impl Strategy<Value = GossipApiMessage> {
        let data = proptest::collection::vec(any::<u8>(), 0..2000).prop_map(Bytes::from);
        prop_oneof![
            (any::<u8>(), any::<u16>(), data.clone()).prop_map(|(ttl, data_type, data)| {
                GossipApiMessage::Announce {
                    ttl,
                    data_type,
                    data,
                }
            }),
            any::<u16>().prop_map(|data_type| GossipApiMessage::Notify { data_type }),
            (any::<u16>(), any::<u16>(), data).prop_map(|(message_id, data_type, data)| {
                GossipApiMessage::Notification {
                    message_id,
                    data_type,
                    data,
                }
            }),
            (any::<u16>(), any::<bool>())
                .prop_map(|(message_id, valid)| GossipApiMessage::Validation { message_id, valid }),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(msg in arb_msg()) {
            let bytes = msg.encode().unwrap();
            prop_assert_eq!(GossipApiMessage::decode(&bytes).unwrap(), msg);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = GossipApiMessage::decode(&Bytes::from(bytes));
        }

        #[test]
        fn decoding_mutated_frames_never_panics(msg in arb_msg(), pos in any::<usize>(), byte in any::<u8>()) {
            let mut raw = msg.encode().unwrap().to_vec();
            let i = pos % raw.len();
            raw[i] = byte;
            let _ = GossipApiMessage::decode(&Bytes::from(raw));
        }

        #[test]
        fn reserved_bits_of_validation_are_ignored(id in any::<u16>(), flags in any::<u16>()) {
            let id = id.to_be_bytes();
            let f = flags.to_be_bytes();
            let raw = Bytes::from(vec![0, 8, 0x01, 0xf7, id[0], id[1], f[0], f[1]]);
            prop_assert_eq!(
                GossipApiMessage::decode(&raw).unwrap(),
                GossipApiMessage::Validation { message_id: u16::from_be_bytes(id), valid: flags & 1 == 1 }
            );
        }
    }

    #[test]
    fn announce_layout_matches_spec() {
        let bytes = GossipApiMessage::Announce {
            ttl: 7,
            data_type: 0x0102,
            data: Bytes::from_static(b"hey"),
        }
        .encode()
        .unwrap();
        assert_eq!(
            &bytes[..],
            &[0, 11, 0x01, 0xf4, 7, 0, 1, 2, b'h', b'e', b'y']
        );
    }

    #[test]
    fn notify_is_byte_exact() {
        let bytes = GossipApiMessage::Notify { data_type: 0xabcd }
            .encode()
            .unwrap();
        assert_eq!(&bytes[..], &[0, 8, 0x01, 0xf5, 0, 0, 0xab, 0xcd]);
    }

    #[test]
    fn notification_layout_matches_spec() {
        let bytes = GossipApiMessage::Notification {
            message_id: 0x1234,
            data_type: 0x0506,
            data: Bytes::from_static(b"x"),
        }
        .encode()
        .unwrap();
        assert_eq!(&bytes[..], &[0, 9, 0x01, 0xf6, 0x12, 0x34, 5, 6, b'x']);
    }

    #[test]
    fn validation_bit_is_lowest_bit_of_last_byte() {
        let valid = GossipApiMessage::Validation {
            message_id: 0x0102,
            valid: true,
        }
        .encode()
        .unwrap();
        assert_eq!(&valid[..], &[0, 8, 0x01, 0xf7, 1, 2, 0, 1]);
        let invalid = GossipApiMessage::Validation {
            message_id: 0x0102,
            valid: false,
        }
        .encode()
        .unwrap();
        assert_eq!(&invalid[..], &[0, 8, 0x01, 0xf7, 1, 2, 0, 0]);
    }

    #[test]
    fn reserved_bits_of_notify_and_announce_are_ignored() {
        let raw = Bytes::from_static(&[0, 8, 0x01, 0xf5, 0xff, 0xff, 0, 9]);
        assert_eq!(
            GossipApiMessage::decode(&raw),
            Ok(GossipApiMessage::Notify { data_type: 9 })
        );
        let raw = Bytes::from_static(&[0, 8, 0x01, 0xf4, 3, 0xff, 0, 9]);
        assert_eq!(
            GossipApiMessage::decode(&raw),
            Ok(GossipApiMessage::Announce {
                ttl: 3,
                data_type: 9,
                data: Bytes::new()
            })
        );
    }

    #[test]
    fn notify_and_validation_must_be_exactly_eight_bytes() {
        for msg_type in [GOSSIP_NOTIFY, GOSSIP_VALIDATION] {
            let t = msg_type.to_be_bytes();
            let long = Bytes::from(vec![0, 9, t[0], t[1], 0, 0, 0, 1, 0]);
            assert!(matches!(
                GossipApiMessage::decode(&long),
                Err(DecodeError::BadLength { size: 9, .. })
            ));
            let short = Bytes::from(vec![0, 7, t[0], t[1], 0, 0, 0]);
            assert!(matches!(
                GossipApiMessage::decode(&short),
                Err(DecodeError::BadLength { size: 7, .. })
            ));
        }
    }

    #[test]
    fn announce_and_notification_need_the_fixed_part() {
        for msg_type in [GOSSIP_ANNOUNCE, GOSSIP_NOTIFICATION] {
            let t = msg_type.to_be_bytes();
            let short = Bytes::from(vec![0, 6, t[0], t[1], 0, 0]);
            assert!(matches!(
                GossipApiMessage::decode(&short),
                Err(DecodeError::BadLength { size: 6, .. })
            ));
        }
    }

    #[test]
    fn unknown_type_is_rejected() {
        let raw = Bytes::from_static(&[0, 8, 0x01, 0xf8, 0, 0, 0, 0]);
        assert_eq!(
            GossipApiMessage::decode(&raw),
            Err(DecodeError::UnknownType(504))
        );
    }

    #[test]
    fn size_field_must_match_the_frame() {
        let raw = Bytes::from_static(&[0, 8, 0x01, 0xf5, 0, 0, 0, 1, 0]);
        assert!(matches!(
            GossipApiMessage::decode(&raw),
            Err(DecodeError::SizeMismatch { .. })
        ));
        let short = Bytes::from_static(&[0, 9, 0x01, 0xf5, 0, 0, 0, 1]);
        assert!(GossipApiMessage::decode(&short).is_err());
    }

    #[test]
    fn largest_data_fits_and_one_more_byte_does_not() {
        let msg = GossipApiMessage::Announce {
            ttl: 1,
            data_type: 1,
            data: Bytes::from(vec![7; MAX_DATA_LEN]),
        };
        let bytes = msg.encode().unwrap();
        assert_eq!(bytes.len(), 65535);
        assert_eq!(GossipApiMessage::decode(&bytes).unwrap(), msg);
        let too_big = GossipApiMessage::Notification {
            message_id: 1,
            data_type: 1,
            data: Bytes::from(vec![7; MAX_DATA_LEN + 1]),
        };
        assert_eq!(
            too_big.encode(),
            Err(EncodeError::DataTooLarge(MAX_DATA_LEN + 1))
        );
    }
}
