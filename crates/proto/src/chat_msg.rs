//! Chat wire formats: the session messages two chat peers exchange over their direct QUIC
//! connection (peer frames, types 700–709), and the signed room post carried as a gossip
//! item. Layouts are in `docs/protocol.md`; signing and checking live in the chat crate.
//!
//! Names are at most [`MAX_NAME_LEN`] bytes of UTF-8, room names too; texts are UTF-8 and
//! bounded by the frame (the chat refuses longer ones by its own limit).

use crate::frame::{exact_peer_frame, put_peer_header, DecodeError, PEER_HEADER_LEN};
use crate::wire::Reader;
use bytes::{BufMut, Bytes, BytesMut};

/// SESSION OPEN: the caller asks the callee for a session.
pub const SESSION_OPEN: u16 = 700;
/// SESSION ACCEPT: the callee's answer to [`SESSION_OPEN`].
pub const SESSION_ACCEPT: u16 = 701;
/// TEXT: one message of a session.
pub const TEXT: u16 = 702;
/// ACK: the receiver took a [`TEXT`] (or a [`SESSION_END`]).
pub const ACK: u16 = 703;
/// SESSION END: the sender ends the session.
pub const SESSION_END: u16 = 704;
/// REFUSED: a request was refused; carries a code and a reason.
pub const REFUSED: u16 = 709;

/// Longest user or room name, in bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Length of a session id.
pub const SESSION_ID_LEN: usize = 16;

/// Codes of [`ChatMessage::Refused`].
pub mod refusal {
    /// The callee is not the user the caller asked for.
    pub const WRONG_USER: u16 = 1;
    /// The caller's binding signature does not hold.
    pub const BAD_BINDING: u16 = 2;
    /// The session id is not open here.
    pub const NO_SESSION: u16 = 3;
    /// The text is longer than the receiver accepts.
    pub const TOO_LARGE: u16 = 4;
    /// The receiver is shutting down.
    pub const GOING_AWAY: u16 = 5;
}

/// A session id, chosen at random by the caller.
pub type SessionId = [u8; SESSION_ID_LEN];

/// One chat session message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatMessage {
    /// Opens a session. `binding` is the caller's user-key signature binding its key to
    /// its node id, the callee's node id and the session (see the chat crate).
    SessionOpen {
        /// The new session's id.
        session: SessionId,
        /// The caller's user public key.
        caller_key: [u8; 32],
        /// The caller's name.
        caller_name: String,
        /// The user the caller wants: their public key ...
        callee_key: [u8; 32],
        /// ... and name.
        callee_name: String,
        /// Ed25519 signature by `caller_key`.
        binding: [u8; 64],
    },
    /// Accepts a session, with the callee's own binding.
    SessionAccept {
        /// The session being accepted.
        session: SessionId,
        /// The callee's user public key.
        callee_key: [u8; 32],
        /// The callee's name.
        callee_name: String,
        /// Ed25519 signature by `callee_key`.
        binding: [u8; 64],
    },
    /// A line of text.
    Text {
        /// The session it belongs to.
        session: SessionId,
        /// Sender's counter, from 1; acknowledged by [`ChatMessage::Ack`].
        seq: u64,
        /// Sender's wall clock, Unix milliseconds.
        sent_at_ms: u64,
        /// The text.
        text: String,
    },
    /// Acknowledges a [`ChatMessage::Text`] (`seq`) or a [`ChatMessage::SessionEnd`] (0).
    Ack {
        /// The session.
        session: SessionId,
        /// The acknowledged counter.
        seq: u64,
    },
    /// Ends a session.
    SessionEnd {
        /// The session.
        session: SessionId,
    },
    /// Refuses a request (see [`refusal`]).
    Refused {
        /// Why, as a number.
        code: u16,
        /// Why, for people.
        reason: String,
    },
}

impl ChatMessage {
    /// The message's type number.
    pub fn msg_type(&self) -> u16 {
        match self {
            ChatMessage::SessionOpen { .. } => SESSION_OPEN,
            ChatMessage::SessionAccept { .. } => SESSION_ACCEPT,
            ChatMessage::Text { .. } => TEXT,
            ChatMessage::Ack { .. } => ACK,
            ChatMessage::SessionEnd { .. } => SESSION_END,
            ChatMessage::Refused { .. } => REFUSED,
        }
    }

    /// Decodes one whole frame (header included).
    ///
    /// # Errors
    /// Any [`DecodeError`]: truncated or trailing bytes, names over [`MAX_NAME_LEN`], text
    /// that is not UTF-8, an unknown type.
    pub fn decode(frame: &Bytes) -> Result<ChatMessage, DecodeError> {
        let header = exact_peer_frame(frame)?;
        let mut r = Reader::new(frame, PEER_HEADER_LEN);
        let msg = match header.msg_type {
            SESSION_OPEN => ChatMessage::SessionOpen {
                session: r.array("session")?,
                caller_key: r.array("caller key")?,
                caller_name: read_name(&mut r, "caller name")?,
                callee_key: r.array("callee key")?,
                callee_name: read_name(&mut r, "callee name")?,
                binding: r.array("binding")?,
            },
            SESSION_ACCEPT => ChatMessage::SessionAccept {
                session: r.array("session")?,
                callee_key: r.array("callee key")?,
                callee_name: read_name(&mut r, "callee name")?,
                binding: r.array("binding")?,
            },
            TEXT => ChatMessage::Text {
                session: r.array("session")?,
                seq: r.u64("seq")?,
                sent_at_ms: r.u64("sent at")?,
                text: read_text_rest(&mut r, "text")?,
            },
            ACK => ChatMessage::Ack {
                session: r.array("session")?,
                seq: r.u64("seq")?,
            },
            SESSION_END => ChatMessage::SessionEnd {
                session: r.array("session")?,
            },
            REFUSED => ChatMessage::Refused {
                code: r.u16("code")?,
                reason: read_text_rest(&mut r, "reason")?,
            },
            other => return Err(DecodeError::UnknownType(other)),
        };
        r.finish()?;
        Ok(msg)
    }

    /// Encodes the message, header included. Names longer than [`MAX_NAME_LEN`] are
    /// truncated to it (callers check names before they get here).
    pub fn encode(&self) -> Bytes {
        let mut body = BytesMut::with_capacity(128);
        match self {
            ChatMessage::SessionOpen {
                session,
                caller_key,
                caller_name,
                callee_key,
                callee_name,
                binding,
            } => {
                body.put_slice(session);
                body.put_slice(caller_key);
                put_name(&mut body, caller_name);
                body.put_slice(callee_key);
                put_name(&mut body, callee_name);
                body.put_slice(binding);
            }
            ChatMessage::SessionAccept {
                session,
                callee_key,
                callee_name,
                binding,
            } => {
                body.put_slice(session);
                body.put_slice(callee_key);
                put_name(&mut body, callee_name);
                body.put_slice(binding);
            }
            ChatMessage::Text {
                session,
                seq,
                sent_at_ms,
                text,
            } => {
                body.put_slice(session);
                body.put_u64(*seq);
                body.put_u64(*sent_at_ms);
                body.put_slice(text.as_bytes());
            }
            ChatMessage::Ack { session, seq } => {
                body.put_slice(session);
                body.put_u64(*seq);
            }
            ChatMessage::SessionEnd { session } => body.put_slice(session),
            ChatMessage::Refused { code, reason } => {
                body.put_u16(*code);
                body.put_slice(reason.as_bytes());
            }
        }
        let mut frame = BytesMut::with_capacity(PEER_HEADER_LEN + body.len());
        put_peer_header(&mut frame, PEER_HEADER_LEN + body.len(), self.msg_type());
        frame.put_slice(&body);
        frame.freeze()
    }
}

/// A message posted to a public room, spread by gossip and signed by its author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPost {
    /// The room's name (without the leading `#`).
    pub room: String,
    /// The author's user public key.
    pub author_key: [u8; 32],
    /// The author's name.
    pub author_name: String,
    /// Author's wall clock, Unix milliseconds.
    pub sent_at_ms: u64,
    /// Random, so that two equal lines are two posts.
    pub nonce: u64,
    /// Ed25519 signature by `author_key` over [`RoomPost::signed_bytes`].
    pub signature: [u8; 64],
    /// The text.
    pub text: String,
}

/// Domain separation for room post signatures.
const ROOM_POST_DOMAIN: &[u8] = b"voidmesh-chat/v1 room post\0";

impl RoomPost {
    /// The bytes the signature covers: a domain string and every other field.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ROOM_POST_DOMAIN.len() + 128 + self.text.len());
        out.extend_from_slice(ROOM_POST_DOMAIN);
        put_name_vec(&mut out, &self.room);
        out.extend_from_slice(&self.author_key);
        put_name_vec(&mut out, &self.author_name);
        out.extend_from_slice(&self.sent_at_ms.to_be_bytes());
        out.extend_from_slice(&self.nonce.to_be_bytes());
        out.extend_from_slice(self.text.as_bytes());
        out
    }

    /// The post as a gossip item.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(160 + self.text.len());
        put_name(&mut out, &self.room);
        out.put_slice(&self.author_key);
        put_name(&mut out, &self.author_name);
        out.put_u64(self.sent_at_ms);
        out.put_u64(self.nonce);
        out.put_slice(&self.signature);
        out.put_slice(self.text.as_bytes());
        out.freeze()
    }

    /// Reads a gossip item (the signature is not checked here).
    ///
    /// # Errors
    /// Any [`DecodeError`].
    pub fn decode(item: &Bytes) -> Result<RoomPost, DecodeError> {
        let mut r = Reader::new(item, 0);
        let post = RoomPost {
            room: read_name(&mut r, "room")?,
            author_key: r.array("author key")?,
            author_name: read_name(&mut r, "author name")?,
            sent_at_ms: r.u64("sent at")?,
            nonce: r.u64("nonce")?,
            signature: r.array("signature")?,
            text: read_text_rest(&mut r, "text")?,
        };
        r.finish()?;
        Ok(post)
    }
}

/// Writes a name as `len u8 | bytes`, cut at [`MAX_NAME_LEN`] on a character boundary.
fn put_name(buf: &mut BytesMut, name: &str) {
    let name = bounded_name(name);
    buf.put_u8(name.len() as u8);
    buf.put_slice(name.as_bytes());
}

/// [`put_name`] into a `Vec`.
fn put_name_vec(buf: &mut Vec<u8>, name: &str) {
    let name = bounded_name(name);
    buf.push(name.len() as u8);
    buf.extend_from_slice(name.as_bytes());
}

/// The longest prefix of `name` of at most [`MAX_NAME_LEN`] bytes ending on a char boundary.
fn bounded_name(name: &str) -> &str {
    let mut end = name.len().min(MAX_NAME_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Reads `len u8 | UTF-8 bytes` of at most [`MAX_NAME_LEN`] bytes.
fn read_name(r: &mut Reader<'_>, field: &'static str) -> Result<String, DecodeError> {
    let len = usize::from(r.u8(field)?);
    if len > MAX_NAME_LEN {
        return Err(DecodeError::BadField(field));
    }
    let bytes = r.bytes(len, field)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::BadField(field))
}

/// Reads the rest as UTF-8.
fn read_text_rest(r: &mut Reader<'_>, field: &'static str) -> Result<String, DecodeError> {
    String::from_utf8(r.rest().to_vec()).map_err(|_| DecodeError::BadField(field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_é-]{0,10}"
    }

    fn arb_msg() -> impl Strategy<Value = ChatMessage> {
        let session = any::<[u8; 16]>();
        prop_oneof![
            (
                session,
                any::<[u8; 32]>(),
                arb_name(),
                any::<[u8; 32]>(),
                arb_name(),
                any::<[u8; 32]>()
            )
                .prop_map(|(session, a, an, b, bn, half)| {
                    let mut binding = [0u8; 64];
                    binding[..32].copy_from_slice(&half);
                    ChatMessage::SessionOpen {
                        session,
                        caller_key: a,
                        caller_name: an,
                        callee_key: b,
                        callee_name: bn,
                        binding,
                    }
                }),
            (session, any::<[u8; 32]>(), arb_name()).prop_map(|(session, k, n)| {
                ChatMessage::SessionAccept {
                    session,
                    callee_key: k,
                    callee_name: n,
                    binding: [7; 64],
                }
            }),
            (session, any::<u64>(), any::<u64>(), ".{0,40}").prop_map(
                |(session, seq, sent_at_ms, text)| ChatMessage::Text {
                    session,
                    seq,
                    sent_at_ms,
                    text,
                }
            ),
            (session, any::<u64>()).prop_map(|(session, seq)| ChatMessage::Ack { session, seq }),
            session.prop_map(|session| ChatMessage::SessionEnd { session }),
            (any::<u16>(), ".{0,20}")
                .prop_map(|(code, reason)| ChatMessage::Refused { code, reason }),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(msg in arb_msg()) {
            prop_assert_eq!(ChatMessage::decode(&msg.encode()).unwrap(), msg);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let bytes = Bytes::from(bytes);
            let _ = ChatMessage::decode(&bytes);
            let _ = RoomPost::decode(&bytes);
        }

        #[test]
        fn room_post_round_trips(room in arb_name(), name in arb_name(), text in ".{0,40}",
                                 at in any::<u64>(), nonce in any::<u64>()) {
            let post = RoomPost { room, author_key: [3; 32], author_name: name, sent_at_ms: at,
                                  nonce, signature: [9; 64], text };
            prop_assert_eq!(RoomPost::decode(&post.encode()).unwrap(), post);
        }
    }

    #[test]
    fn long_name_is_refused() {
        let mut frame = BytesMut::new();
        put_peer_header(&mut frame, PEER_HEADER_LEN + 16 + 32 + 1 + 33, SESSION_OPEN);
        frame.put_slice(&[0; 16]);
        frame.put_slice(&[0; 32]);
        frame.put_u8(33);
        frame.put_slice(&[b'a'; 33]);
        assert_eq!(
            ChatMessage::decode(&frame.freeze()),
            Err(DecodeError::BadField("caller name"))
        );
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut frame = BytesMut::from(&ChatMessage::SessionEnd { session: [1; 16] }.encode()[..]);
        frame.put_u8(0);
        let len = frame.len() as u32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        assert!(ChatMessage::decode(&frame.freeze()).is_err());
    }
}
