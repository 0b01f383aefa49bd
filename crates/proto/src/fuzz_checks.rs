//! The properties the fuzz targets (`fuzz/fuzz_targets/`) check on every input, shared
//! with the test that replays the committed corpus (`crates/node/tests/fuzz_corpus.rs`).
//!
//! Each check decodes arbitrary bytes. The decoder must return, never panic; when it
//! accepts the bytes, re-encoding the message must give a frame that decodes to the same
//! message (`decode(encode(m)) == m`) and that equals the input byte for byte except in
//! reserved fields (the wire form is canonical: a decoder that ignores a byte it should
//! check shows up here). Each check panics when a property fails, which is what the
//! fuzzer reports as a crash.

use crate::chat_msg::{ChatMessage, RoomPost};
use crate::dht_api::{DhtMessage, DHT_PUT, DHT_PUT_SIGNED};
use crate::frame::{check_api_frame, check_peer_frame, MAX_PEER_MESSAGE};
use crate::gossip_api::{GossipApiMessage, GOSSIP_ANNOUNCE, GOSSIP_NOTIFY, GOSSIP_VALIDATION};
use crate::gossip_msg::{GossipPeerMessage, PEER_ANNOUNCE};
use crate::kad_msg::{KadMessage, STORE, STORE_SIGNED};
use crate::signed::SignedRecord;
use bytes::Bytes;

/// The fuzz targets whose checks live here, by name (also the corpus directory names).
pub const TARGETS: &[&str] = &[
    "api_dht",
    "api_gossip",
    "peer_kad",
    "peer_gossip",
    "peer_chat",
    "signed_record",
];

/// Runs the check of fuzz target `target` (one of [`TARGETS`]) on `data`.
///
/// # Panics
/// When a property fails, or for an unknown target name.
pub fn check(target: &str, data: &[u8]) {
    match target {
        "api_dht" => api_dht(data),
        "api_gossip" => api_gossip(data),
        "peer_kad" => peer_kad(data),
        "peer_gossip" => peer_gossip(data),
        "peer_chat" => peer_chat(data),
        "signed_record" => signed_record(data),
        other => panic!("no fuzz check named {other}"),
    }
}

/// Asserts that `encoded` has the length of `input` and differs from it only at the byte
/// offsets in `reserved`.
fn assert_canonical(what: &str, input: &[u8], encoded: &[u8], reserved: &[usize]) {
    assert_eq!(
        encoded.len(),
        input.len(),
        "{what}: re-encoding changed the length"
    );
    for (i, (a, b)) in input.iter().zip(encoded).enumerate() {
        assert!(
            a == b || reserved.contains(&i),
            "{what}: re-encoding changed byte {i}"
        );
    }
}

/// An API frame header check must agree with the decoder about where the frame ends.
fn api_header(data: &[u8]) {
    if let Ok(Some(header)) = check_api_frame(data) {
        assert!(header.size >= 4 && header.size <= data.len());
    }
}

/// As [`api_header`], for peer frames.
fn peer_header(data: &[u8]) {
    if let Ok(Some(header)) = check_peer_frame(data, MAX_PEER_MESSAGE) {
        assert!(header.size >= 6 && header.size <= data.len().min(MAX_PEER_MESSAGE));
    }
}

/// DHT API messages (650–657): what a local client sends to the DHT.
pub fn api_dht(data: &[u8]) {
    api_header(data);
    let frame = Bytes::copy_from_slice(data);
    let Ok(msg) = DhtMessage::decode(&frame) else {
        return;
    };
    let encoded = msg.encode().expect("a decoded DHT API message re-encodes");
    assert_eq!(DhtMessage::decode(&encoded).as_ref(), Ok(&msg));
    let reserved: &[usize] = match msg.msg_type() {
        DHT_PUT => &[7],
        DHT_PUT_SIGNED => &[5],
        _ => &[],
    };
    assert_canonical("DHT API", data, &encoded, reserved);
}

/// Gossip API messages (500–503): what a local client sends to the gossip module.
pub fn api_gossip(data: &[u8]) {
    api_header(data);
    let frame = Bytes::copy_from_slice(data);
    let Ok(msg) = GossipApiMessage::decode(&frame) else {
        return;
    };
    let encoded = msg
        .encode()
        .expect("a decoded gossip API message re-encodes");
    assert_eq!(GossipApiMessage::decode(&encoded).as_ref(), Ok(&msg));
    let reserved: &[usize] = match msg.msg_type() {
        GOSSIP_ANNOUNCE => &[5],
        GOSSIP_NOTIFY => &[4, 5],
        // 15 reserved bits and V; V is compared through the decoded message.
        GOSSIP_VALIDATION => &[6, 7],
        _ => &[],
    };
    assert_canonical("gossip API", data, &encoded, reserved);
}

/// Kademlia peer messages (660–680).
pub fn peer_kad(data: &[u8]) {
    peer_header(data);
    let frame = Bytes::copy_from_slice(data);
    let Ok(msg) = KadMessage::decode(&frame) else {
        return;
    };
    let encoded = msg.encode();
    assert_eq!(KadMessage::decode(&encoded).as_ref(), Ok(&msg));
    let reserved: &[usize] = match msg.msg_type() {
        STORE => &[11],
        STORE_SIGNED => &[7],
        _ => &[],
    };
    assert_canonical("Kademlia peer message", data, &encoded, reserved);
}

/// Gossip peer messages (504–509).
pub fn peer_gossip(data: &[u8]) {
    peer_header(data);
    let frame = Bytes::copy_from_slice(data);
    let Ok(msg) = GossipPeerMessage::decode(&frame) else {
        return;
    };
    let encoded = msg.encode();
    assert_eq!(GossipPeerMessage::decode(&encoded).as_ref(), Ok(&msg));
    let reserved: &[usize] = match msg.msg_type() {
        PEER_ANNOUNCE => &[47],
        _ => &[],
    };
    assert_canonical("gossip peer message", data, &encoded, reserved);
}

/// Chat session messages (700–709) and room posts (gossip items); both are tried on
/// the same bytes.
pub fn peer_chat(data: &[u8]) {
    peer_header(data);
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(msg) = ChatMessage::decode(&bytes) {
        let encoded = msg.encode();
        assert_eq!(ChatMessage::decode(&encoded).as_ref(), Ok(&msg));
        assert_canonical("chat message", data, &encoded, &[]);
    }
    if let Ok(post) = RoomPost::decode(&bytes) {
        let encoded = post.encode();
        assert_eq!(RoomPost::decode(&encoded).as_ref(), Ok(&post));
        assert_canonical("room post", data, &encoded, &[]);
        // Building the signed bytes of any decoded post must work too.
        let _ = post.signed_bytes();
    }
}

/// Signed records in their own wire form (as persisted, and as carried inside API and
/// peer messages). Verification runs on every decoded record: it must reject, not panic.
pub fn signed_record(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let Ok(record) = SignedRecord::decode(&bytes) else {
        return;
    };
    let encoded = record.to_bytes();
    assert_eq!(encoded.len(), record.encoded_len());
    assert_eq!(SignedRecord::decode(&encoded).as_ref(), Ok(&record));
    assert_canonical("signed record", data, &encoded, &[]);
    let key = record.key();
    let _ = record.verify();
    let _ = record.validate(&key, record.expiry.saturating_sub(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_accepts_empty_and_short_input() {
        for target in TARGETS {
            check(target, &[]);
            check(target, &[0, 4, 2, 138]);
        }
    }

    #[test]
    #[should_panic(expected = "re-encoding changed byte 1")]
    fn canonical_check_catches_a_changed_byte() {
        assert_canonical("x", &[1, 2, 3], &[1, 9, 3], &[]);
    }

    #[test]
    fn canonical_check_allows_reserved_bytes() {
        assert_canonical("x", &[1, 2, 3], &[1, 9, 3], &[1]);
    }
}
