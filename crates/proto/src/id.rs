//! 256-bit identifiers and the XOR metric.
//!
//! Keys and node ids live in the same space: a node id is the SHA-256 of the node's
//! public key, a key is any 32 bytes chosen by a client.
//!
//! # Id puzzle (S/Kademlia's static puzzle)
//! A node id costs work: it is accepted only if the first `difficulty` bits of
//! SHA-256(node id) are zero ([`id_puzzle_ok`]). The difficulty is network-wide. Since the
//! node id is itself SHA-256 of the public key, the only way to a qualifying id is to
//! generate keys until one fits: about `2^difficulty` key generations.

use sha2::{Digest, Sha256};
use std::fmt;

/// A 256-bit value in the Kademlia id space (a DHT key or a node id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Key(pub [u8; 32]);

/// A node's identity: SHA-256 of its public key (DER SubjectPublicKeyInfo).
pub type NodeId = Key;

/// DER of an Ed25519 SubjectPublicKeyInfo up to the key bytes (RFC 8410):
/// `SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING }`.
pub const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A node's Ed25519 public key, as contacts carry it so that anyone can send the node
/// an authenticated datagram without a handshake. Its node id is derived from it
/// ([`PublicKey::node_id`]). Whether the bytes are a usable curve point is checked by
/// the transport, not here.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The node id this key owns: SHA-256 of its DER SubjectPublicKeyInfo.
    pub fn node_id(&self) -> NodeId {
        let mut hash = Sha256::new();
        hash.update(ED25519_SPKI_PREFIX);
        hash.update(self.0);
        Key(hash.finalize().into())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pk:")?;
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// XOR distance between two ids; compares as a 256-bit big-endian integer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Distance(pub [u8; 32]);

impl Key {
    /// Length of an id in bytes.
    pub const LEN: usize = 32;

    /// Builds a key from a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Key> {
        <[u8; 32]>::try_from(bytes).ok().map(Key)
    }

    /// The XOR distance between `self` and `other`.
    pub fn distance(&self, other: &Key) -> Distance {
        let mut d = [0u8; 32];
        for (i, byte) in d.iter_mut().enumerate() {
            *byte = self.0[i] ^ other.0[i];
        }
        Distance(d)
    }

    /// Lowercase hex of all 32 bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Key> {
        let bytes = hex::decode(s).ok()?;
        Key::from_slice(&bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Distance {
    /// Index of the k-bucket this distance falls into: `255 - leading_zeros`, i.e. the
    /// position of the highest set bit. `None` for distance zero (the node itself).
    pub fn bucket_index(&self) -> Option<usize> {
        let mut zeros = 0usize;
        for byte in self.0 {
            if byte == 0 {
                zeros += 8;
            } else {
                zeros += byte.leading_zeros() as usize;
                return Some(255 - zeros);
            }
        }
        None
    }
}

/// Number of leading zero bits of `bytes` read as a big-endian bit string (`8 ×
/// bytes.len()` for all zeros).
pub fn leading_zero_bits(bytes: &[u8]) -> u32 {
    let mut zeros = 0;
    for byte in bytes {
        if *byte != 0 {
            return zeros + byte.leading_zeros();
        }
        zeros += 8;
    }
    zeros
}

/// SHA-256 of the node id: the hash the id puzzle is checked on.
pub fn id_puzzle_hash(id: &NodeId) -> [u8; 32] {
    Sha256::digest(id.0).into()
}

/// True if `id` solves the static id puzzle at `difficulty`: the first `difficulty` bits
/// of SHA-256(`id`) are zero. Difficulty 0 accepts every id (no hash is computed).
pub fn id_puzzle_ok(id: &NodeId, difficulty: u8) -> bool {
    difficulty == 0 || leading_zero_bits(&id_puzzle_hash(id)) >= u32::from(difficulty)
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..12])
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_to_self_is_zero_and_has_no_bucket() {
        let k = Key([7; 32]);
        assert_eq!(k.distance(&k), Distance([0; 32]));
        assert_eq!(k.distance(&k).bucket_index(), None);
    }

    #[test]
    fn bucket_index_is_position_of_highest_differing_bit() {
        let a = Key([0; 32]);
        let mut b = [0u8; 32];
        b[31] = 1;
        assert_eq!(a.distance(&Key(b)).bucket_index(), Some(0));
        let mut c = [0u8; 32];
        c[0] = 0x80;
        assert_eq!(a.distance(&Key(c)).bucket_index(), Some(255));
        let mut d = [0u8; 32];
        d[1] = 0x01;
        assert_eq!(a.distance(&Key(d)).bucket_index(), Some(240));
    }

    #[test]
    fn leading_zero_bits_counts_across_bytes() {
        assert_eq!(leading_zero_bits(&[]), 0);
        assert_eq!(leading_zero_bits(&[0x80]), 0);
        assert_eq!(leading_zero_bits(&[0x01]), 7);
        assert_eq!(leading_zero_bits(&[0, 0, 0x20, 0xff]), 18);
        assert_eq!(leading_zero_bits(&[0; 32]), 256);
    }

    #[test]
    fn puzzle_of_difficulty_zero_accepts_every_id() {
        assert!(id_puzzle_ok(&Key([0xff; 32]), 0));
    }

    #[test]
    fn puzzle_checks_the_hash_of_the_id_not_the_id() {
        // An id of all zeros passes at difficulty 1 but not 2: SHA-256 of 32 zero bytes
        // starts with 0x66 = 0b0110_0110, although the id itself is all zeros.
        assert_eq!(id_puzzle_hash(&Key([0; 32]))[0], 0x66);
        assert!(id_puzzle_ok(&Key([0; 32]), 1));
        assert!(!id_puzzle_ok(&Key([0; 32]), 2));
        // Search a qualifying id; it passes exactly up to its number of zero bits.
        let id = (0u32..)
            .map(|n| {
                let mut raw = [0u8; 32];
                raw[..4].copy_from_slice(&n.to_be_bytes());
                Key(raw)
            })
            .find(|id| id_puzzle_ok(id, 8))
            .unwrap();
        let bits = leading_zero_bits(&id_puzzle_hash(&id));
        assert!(bits >= 8);
        assert!(id_puzzle_ok(&id, bits as u8));
        assert!(!id_puzzle_ok(&id, bits as u8 + 1));
    }

    #[test]
    fn hex_round_trips() {
        let k = Key([0xab; 32]);
        assert_eq!(Key::from_hex(&k.to_hex()), Some(k));
        assert_eq!(Key::from_hex("abc"), None);
    }
}
