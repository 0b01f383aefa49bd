//! The encoded size of a Kademlia message, computed without encoding it.
//!
//! Counting bytes by calling `encode()` on every message costs an allocation and a copy
//! per message, a tenth of a large run's time. The layout is simple enough to add up;
//! the tests check the sum against `encode()` for every message type. Types this module
//! does not know are encoded, so a protocol extension is never miscounted.

use voidmesh_proto::{Contact, KadMessage, PEER_HEADER_LEN};

/// Bytes of one contact on the wire: id, family, address, port.
fn contact_len(c: &Contact) -> usize {
    32 + 1 + if c.addr.is_ipv4() { 4 } else { 16 } + 2
}

/// Bytes of a contact list: a count byte and at most 255 contacts.
fn contacts_len(contacts: &[Contact]) -> usize {
    let count = contacts.len().min(voidmesh_proto::kad_msg::MAX_CONTACTS);
    1 + contacts[..count].iter().map(contact_len).sum::<usize>()
}

/// The length of `message.encode()`, header included.
pub fn wire_len(message: &KadMessage) -> usize {
    PEER_HEADER_LEN
        + match message {
            KadMessage::Ping | KadMessage::Pong => 0,
            KadMessage::Store { value, .. } => 4 + 1 + 1 + 8 + 32 + value.len(),
            KadMessage::FindNode { .. } | KadMessage::FindValue { .. } => 32,
            KadMessage::StoreReply { .. } => 33,
            KadMessage::FindNodeReply { contacts } => contacts_len(contacts),
            KadMessage::FoundValue { value, .. } => 1 + 4 + 8 + value.len(),
            KadMessage::ValueNotFound { contacts } => 1 + contacts_len(contacts),
            KadMessage::Error { message, .. } => 2 + message.len(),
            // A message type added to the protocol after this was written: encode it.
            #[allow(unreachable_patterns)]
            other => return other.encode().len(),
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::net::SocketAddr;
    use voidmesh_proto::{Key, Version};

    #[test]
    fn wire_len_matches_encode_for_every_message_type() {
        let v4 = Contact::unkeyed(Key([1; 32]), SocketAddr::from(([10, 0, 0, 1], 4000)));
        let v6 = Contact::unkeyed(Key([2; 32]), "[::1]:4000".parse().unwrap());
        let many: Vec<Contact> = (0..300).map(|_| v4).collect();
        let value = Bytes::from(vec![7u8; 100]);
        let messages = [
            KadMessage::Ping,
            KadMessage::Pong,
            KadMessage::Store {
                key: Key([3; 32]),
                value: value.clone(),
                ttl_ms: 5,
                replication: 3,
                version: Version(9),
            },
            KadMessage::FindNode {
                target: Key([4; 32]),
            },
            KadMessage::FindValue { key: Key([5; 32]) },
            KadMessage::StoreReply {
                key: Key([6; 32]),
                stored: true,
            },
            KadMessage::FindNodeReply {
                contacts: vec![v4, v6, v4],
            },
            KadMessage::FindNodeReply { contacts: many },
            KadMessage::FoundValue {
                value,
                ttl_ms: 1,
                version: Version(2),
            },
            KadMessage::ValueNotFound {
                contacts: vec![v6, v4],
            },
            KadMessage::Error {
                code: 1,
                message: "nope".into(),
            },
        ];
        for m in messages {
            assert_eq!(wire_len(&m), m.encode().len(), "{m:?}");
        }
    }
}
