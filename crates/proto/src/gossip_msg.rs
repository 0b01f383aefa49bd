//! Gossip peer-to-peer messages (types 504–509; 504–519 are reserved for gossip).
//!
//! Every gossip peer message is one-way: it is sent on its own stream and nothing is
//! answered on that stream. A reply (OFFER to DISCOVERY, WELCOME to HELLO) is a message
//! of its own in the other direction.
//!
//! # Format
//! Header: `size u32 | type u16` (see [`crate::frame`]). Bodies, all integers big-endian:
//! ```text
//! PEER ANNOUNCE  504  origin [32] | nonce u64 | hops left u8 | reserved u8 | data type u16 | data
//! PEER DISCOVERY 505  (empty)
//! PEER OFFER     506  count u8 | count × contact
//! PEER INFO      507  address
//! PEER HELLO     508  timestamp u64 | nonce u64 | address
//! PEER WELCOME   509  status u8 | timestamp u64 | nonce u64 | address | count u8 | count × contact
//! address:            family u8 (4 or 6) | ip [4 or 16] | port u16
//! contact:            node id [32] | address            (as in the Kademlia messages)
//! ```
//! - ANNOUNCE carries one item. Its network-wide id is not sent: every receiver computes
//!   it as `SHA-256(origin [32] | data type u16 | nonce u64 | data)`, so an id always
//!   names exactly one content. `origin` is the node id of the peer whose client
//!   announced the item, `nonce` a per-origin counter that makes repeated announcements
//!   of the same data distinct items. `hops left` is how many more times the receiver
//!   may pass the item on (0: deliver, but do not forward). `data` is at most
//!   [`MAX_DATA_LEN`] bytes, so that it fits a GOSSIP NOTIFICATION.
//! - DISCOVERY asks a neighbour for peers; it answers with an OFFER of up to 255 random
//!   members of its view.
//! - INFO tells a neighbour the address where the sender accepts gossip connections
//!   (sent when that address changes; HELLO and WELCOME carry it too).
//! - HELLO asks the receiver to take the sender into its view. `timestamp` (Unix seconds)
//!   and `nonce` are the sender's proof of work: `SHA-256(sender node id [32] |
//!   timestamp u64 | nonce u64)` must start with the receiver's required number of zero
//!   bits, and `timestamp` must be within the receiver's allowed clock skew. The sender's
//!   node id is the one the transport authenticated; it is not repeated in the body.
//! - WELCOME answers a HELLO. `status` 0: accepted, the two peers are now in each other's
//!   views; 1: the view is full, try the contacts listed. It carries the replier's own
//!   proof of work and address, and some contacts from its view to help the joiner on.

use crate::frame::{exact_peer_frame, put_peer_header, DecodeError, PEER_HEADER_LEN};
use crate::gossip_api::MAX_DATA_LEN;
use crate::id::NodeId;
use crate::kad_msg::{read_contact, write_contact, Contact, MAX_CONTACTS};
use crate::wire::{put_socket_addr, Reader};
use bytes::{BufMut, Bytes, BytesMut};
use std::net::SocketAddr;

/// PEER ANNOUNCE: one item being spread.
pub const PEER_ANNOUNCE: u16 = 504;
/// PEER DISCOVERY: which peers do you know?
pub const PEER_DISCOVERY: u16 = 505;
/// PEER OFFER: some peers I know (answer to DISCOVERY).
pub const PEER_OFFER: u16 = 506;
/// PEER INFO: where I listen.
pub const PEER_INFO: u16 = 507;
/// PEER HELLO: take me into your view; here is my proof of work.
pub const PEER_HELLO: u16 = 508;

/// Whether a datagram request is gossip's: empty (a liveness check) or a peer message
/// of gossip's part of the registry (500–599). How a socket shared with the DHT picks
/// gossip's requests.
pub fn is_gossip_request(payload: &[u8]) -> bool {
    payload.is_empty() || matches!(crate::frame::peer_frame_type(payload), Some(500..=599))
}
/// PEER WELCOME: the answer to HELLO.
pub const PEER_WELCOME: u16 = 509;

/// A proof of work bound to a node id: `SHA-256(node id | timestamp | nonce)` starts with
/// enough zero bits. How it is solved and checked lives in `voidmesh-gossip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Proof {
    /// Unix time (seconds) the proof was made for; it must be fresh when checked.
    pub timestamp: u64,
    /// The value found by the work.
    pub nonce: u64,
}

/// A gossip message between peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipPeerMessage {
    /// One item being spread.
    Announce {
        /// Node id of the peer whose client announced the item.
        origin: NodeId,
        /// Per-origin counter; part of the item id.
        nonce: u64,
        /// How many more hops the receiver may pass the item on (0: do not forward).
        hops_left: u8,
        /// The application-defined type of the item.
        data_type: u16,
        /// The item, at most [`MAX_DATA_LEN`] bytes.
        data: Bytes,
    },
    /// Ask a neighbour for peers.
    Discovery,
    /// Some peers the sender has in its view (answer to [`GossipPeerMessage::Discovery`]).
    Offer {
        /// At most 255 contacts.
        contacts: Vec<Contact>,
    },
    /// The sender's gossip listening address.
    Info {
        /// Where the sender accepts gossip connections.
        listen_addr: SocketAddr,
    },
    /// Ask to enter the receiver's view.
    Hello {
        /// The sender's proof of work, bound to its node id.
        proof: Proof,
        /// Where the sender accepts gossip connections.
        listen_addr: SocketAddr,
    },
    /// Answer to [`GossipPeerMessage::Hello`].
    Welcome {
        /// True: both peers now have each other in their views. False: the view is full.
        accepted: bool,
        /// The replier's proof of work, bound to its node id.
        proof: Proof,
        /// Where the replier accepts gossip connections.
        listen_addr: SocketAddr,
        /// Some members of the replier's view (at most 255), to join through.
        contacts: Vec<Contact>,
    },
}

impl GossipPeerMessage {
    /// The message's type number.
    pub fn msg_type(&self) -> u16 {
        match self {
            GossipPeerMessage::Announce { .. } => PEER_ANNOUNCE,
            GossipPeerMessage::Discovery => PEER_DISCOVERY,
            GossipPeerMessage::Offer { .. } => PEER_OFFER,
            GossipPeerMessage::Info { .. } => PEER_INFO,
            GossipPeerMessage::Hello { .. } => PEER_HELLO,
            GossipPeerMessage::Welcome { .. } => PEER_WELCOME,
        }
    }

    /// Decodes one whole frame (header included).
    ///
    /// # Errors
    /// Any [`DecodeError`]; data longer than [`MAX_DATA_LEN`], an unknown status or address
    /// family, and trailing bytes are refused.
    pub fn decode(frame: &Bytes) -> Result<GossipPeerMessage, DecodeError> {
        let header = exact_peer_frame(frame)?;
        let mut r = Reader::new(frame, PEER_HEADER_LEN);
        let msg = match header.msg_type {
            PEER_ANNOUNCE => {
                let origin = r.key("origin")?;
                let nonce = r.u64("nonce")?;
                let hops_left = r.u8("hops left")?;
                let _reserved = r.u8("reserved")?;
                let data_type = r.u16("data type")?;
                let data = r.rest();
                if data.len() > MAX_DATA_LEN {
                    return Err(DecodeError::BadField("data"));
                }
                GossipPeerMessage::Announce {
                    origin,
                    nonce,
                    hops_left,
                    data_type,
                    data,
                }
            }
            PEER_DISCOVERY => GossipPeerMessage::Discovery,
            PEER_OFFER => GossipPeerMessage::Offer {
                contacts: read_contacts(&mut r)?,
            },
            PEER_INFO => GossipPeerMessage::Info {
                listen_addr: r.socket_addr()?,
            },
            PEER_HELLO => GossipPeerMessage::Hello {
                proof: read_proof(&mut r)?,
                listen_addr: r.socket_addr()?,
            },
            PEER_WELCOME => {
                let accepted = match r.u8("status")? {
                    0 => true,
                    1 => false,
                    _ => return Err(DecodeError::BadField("status")),
                };
                GossipPeerMessage::Welcome {
                    accepted,
                    proof: read_proof(&mut r)?,
                    listen_addr: r.socket_addr()?,
                    contacts: read_contacts(&mut r)?,
                }
            }
            other => return Err(DecodeError::UnknownType(other)),
        };
        r.finish()?;
        Ok(msg)
    }

    /// Encodes the message into a fresh buffer, header included. Contact lists longer
    /// than 255 are cut to their first 255 entries.
    pub fn encode(&self) -> Bytes {
        let mut body = BytesMut::with_capacity(64);
        match self {
            GossipPeerMessage::Announce {
                origin,
                nonce,
                hops_left,
                data_type,
                data,
            } => {
                body.reserve(44 + data.len());
                body.put_slice(&origin.0);
                body.put_u64(*nonce);
                body.put_u8(*hops_left);
                body.put_u8(0);
                body.put_u16(*data_type);
                body.put_slice(data);
            }
            GossipPeerMessage::Discovery => {}
            GossipPeerMessage::Offer { contacts } => write_contacts(&mut body, contacts),
            GossipPeerMessage::Info { listen_addr } => put_socket_addr(&mut body, listen_addr),
            GossipPeerMessage::Hello { proof, listen_addr } => {
                write_proof(&mut body, proof);
                put_socket_addr(&mut body, listen_addr);
            }
            GossipPeerMessage::Welcome {
                accepted,
                proof,
                listen_addr,
                contacts,
            } => {
                body.put_u8(if *accepted { 0 } else { 1 });
                write_proof(&mut body, proof);
                put_socket_addr(&mut body, listen_addr);
                write_contacts(&mut body, contacts);
            }
        }
        let mut frame = BytesMut::with_capacity(PEER_HEADER_LEN + body.len());
        put_peer_header(&mut frame, PEER_HEADER_LEN + body.len(), self.msg_type());
        frame.put_slice(&body);
        frame.freeze()
    }
}

fn write_proof(buf: &mut BytesMut, proof: &Proof) {
    buf.put_u64(proof.timestamp);
    buf.put_u64(proof.nonce);
}

fn read_proof(r: &mut Reader<'_>) -> Result<Proof, DecodeError> {
    Ok(Proof {
        timestamp: r.u64("timestamp")?,
        nonce: r.u64("nonce")?,
    })
}

fn write_contacts(buf: &mut BytesMut, contacts: &[Contact]) {
    let count = contacts.len().min(MAX_CONTACTS);
    buf.put_u8(count as u8);
    for c in &contacts[..count] {
        write_contact(buf, c);
    }
}

fn read_contacts(r: &mut Reader<'_>) -> Result<Vec<Contact>, DecodeError> {
    let count = r.u8("count")? as usize;
    let mut contacts = Vec::with_capacity(count);
    for _ in 0..count {
        contacts.push(read_contact(r)?);
    }
    Ok(contacts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{Key, PublicKey};
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn arb_key() -> impl Strategy<Value = Key> + Clone {
        any::<[u8; 32]>().prop_map(Key)
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> + Clone {
        (any::<bool>(), any::<[u8; 16]>(), any::<u16>()).prop_map(|(v4, ip, port)| {
            let ip = if v4 {
                IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]))
            } else {
                IpAddr::V6(Ipv6Addr::from(ip))
            };
            SocketAddr::new(ip, port)
        })
    }

    fn arb_contact() -> impl Strategy<Value = Contact> + Clone {
        (arb_key(), arb_addr()).prop_map(|(k, addr)| Contact::new(PublicKey(k.0), addr))
    }

    fn arb_proof() -> impl Strategy<Value = Proof> + Clone {
        (any::<u64>(), any::<u64>()).prop_map(|(timestamp, nonce)| Proof { timestamp, nonce })
    }

    fn arb_msg() -> impl Strategy<Value = GossipPeerMessage> {
        let data = proptest::collection::vec(any::<u8>(), 0..500).prop_map(Bytes::from);
        let contacts = proptest::collection::vec(arb_contact(), 0..30);
        prop_oneof![
            (arb_key(), any::<u64>(), any::<u8>(), any::<u16>(), data).prop_map(
                |(origin, nonce, hops_left, data_type, data)| GossipPeerMessage::Announce {
                    origin,
                    nonce,
                    hops_left,
                    data_type,
                    data
                }
            ),
            Just(GossipPeerMessage::Discovery),
            contacts
                .clone()
                .prop_map(|contacts| GossipPeerMessage::Offer { contacts }),
            arb_addr().prop_map(|listen_addr| GossipPeerMessage::Info { listen_addr }),
            (arb_proof(), arb_addr())
                .prop_map(|(proof, listen_addr)| GossipPeerMessage::Hello { proof, listen_addr }),
            (any::<bool>(), arb_proof(), arb_addr(), contacts).prop_map(
                |(accepted, proof, listen_addr, contacts)| GossipPeerMessage::Welcome {
                    accepted,
                    proof,
                    listen_addr,
                    contacts
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(msg in arb_msg()) {
            prop_assert_eq!(GossipPeerMessage::decode(&msg.encode()).unwrap(), msg);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = GossipPeerMessage::decode(&Bytes::from(bytes));
        }

        #[test]
        fn decoding_mutated_frames_never_panics(msg in arb_msg(), pos in any::<usize>(), byte in any::<u8>()) {
            let mut raw = msg.encode().to_vec();
            let i = pos % raw.len();
            raw[i] = byte;
            let _ = GossipPeerMessage::decode(&Bytes::from(raw));
        }
    }

    #[test]
    fn announce_layout_is_byte_exact() {
        let bytes = GossipPeerMessage::Announce {
            origin: Key([0xaa; 32]),
            nonce: 0x0102030405060708,
            hops_left: 9,
            data_type: 0x0a0b,
            data: Bytes::from_static(b"hi"),
        }
        .encode();
        assert_eq!(&bytes[..6], &[0, 0, 0, 52, 0x01, 0xf8]);
        assert_eq!(&bytes[6..38], &[0xaa; 32]);
        assert_eq!(&bytes[38..46], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&bytes[46..], &[9, 0, 0x0a, 0x0b, b'h', b'i']);
    }

    #[test]
    fn discovery_is_a_bare_header() {
        assert_eq!(
            &GossipPeerMessage::Discovery.encode()[..],
            &[0, 0, 0, 6, 0x01, 0xf9]
        );
    }

    #[test]
    fn info_layout_is_byte_exact() {
        let bytes = GossipPeerMessage::Info {
            listen_addr: "10.0.0.1:6001".parse().unwrap(),
        }
        .encode();
        assert_eq!(
            &bytes[..],
            &[0, 0, 0, 13, 0x01, 0xfb, 4, 10, 0, 0, 1, 0x17, 0x71]
        );
    }

    #[test]
    fn hello_layout_is_byte_exact() {
        let bytes = GossipPeerMessage::Hello {
            proof: Proof {
                timestamp: 0x11,
                nonce: 0x22,
            },
            listen_addr: "[::1]:2".parse().unwrap(),
        }
        .encode();
        let mut expected = vec![0, 0, 0, 41, 0x01, 0xfc];
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x11]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x22]);
        expected.push(6);
        expected.extend_from_slice(&[0; 15]);
        expected.extend_from_slice(&[1, 0, 2]);
        assert_eq!(&bytes[..], &expected[..]);
    }

    #[test]
    fn welcome_layout_is_byte_exact() {
        let contact = Contact::new(PublicKey([3; 32]), "1.2.3.4:5".parse().unwrap());
        let bytes = GossipPeerMessage::Welcome {
            accepted: false,
            proof: Proof {
                timestamp: 1,
                nonce: 2,
            },
            listen_addr: "9.9.9.9:1".parse().unwrap(),
            contacts: vec![contact],
        }
        .encode();
        // header 6 + status 1 + proof 16 + address 7 + count 1 + contact 39
        assert_eq!(bytes.len(), 70);
        assert_eq!(&bytes[4..6], &[0x01, 0xfd]);
        assert_eq!(bytes[6], 1);
        assert_eq!(&bytes[23..31], &[4, 9, 9, 9, 9, 0, 1, 1]);
        assert_eq!(&bytes[31..63], &[3; 32]);
        assert_eq!(&bytes[63..], &[4, 1, 2, 3, 4, 0, 5]);
    }

    #[test]
    fn offer_layout_is_count_then_contacts() {
        let contact = Contact::new(PublicKey([7; 32]), "127.0.0.1:80".parse().unwrap());
        let bytes = GossipPeerMessage::Offer {
            contacts: vec![contact, contact],
        }
        .encode();
        assert_eq!(bytes.len(), 6 + 1 + 2 * 39);
        assert_eq!(bytes[6], 2);
    }

    #[test]
    fn offer_is_cut_to_255_contacts() {
        let contact = Contact::new(PublicKey([7; 32]), "127.0.0.1:80".parse().unwrap());
        let msg = GossipPeerMessage::Offer {
            contacts: vec![contact; 300],
        };
        match GossipPeerMessage::decode(&msg.encode()).unwrap() {
            GossipPeerMessage::Offer { contacts } => assert_eq!(contacts.len(), 255),
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn oversized_announce_data_is_rejected() {
        let msg = GossipPeerMessage::Announce {
            origin: Key::default(),
            nonce: 0,
            hops_left: 1,
            data_type: 1,
            data: Bytes::from(vec![0; MAX_DATA_LEN + 1]),
        };
        assert_eq!(
            GossipPeerMessage::decode(&msg.encode()),
            Err(DecodeError::BadField("data"))
        );
    }

    #[test]
    fn unknown_welcome_status_is_rejected() {
        let mut raw = GossipPeerMessage::Welcome {
            accepted: true,
            proof: Proof::default(),
            listen_addr: "1.1.1.1:1".parse().unwrap(),
            contacts: vec![],
        }
        .encode()
        .to_vec();
        raw[6] = 2;
        assert_eq!(
            GossipPeerMessage::decode(&Bytes::from(raw)),
            Err(DecodeError::BadField("status"))
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut raw = GossipPeerMessage::Discovery.encode().to_vec();
        raw.push(0);
        raw[3] = 7;
        assert_eq!(
            GossipPeerMessage::decode(&Bytes::from(raw)),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn kad_types_are_unknown_here() {
        let raw = Bytes::from_static(&[0, 0, 0, 6, 0x02, 0x94]);
        assert_eq!(
            GossipPeerMessage::decode(&raw),
            Err(DecodeError::UnknownType(660))
        );
    }
}
