//! 256-bit identifiers and the XOR metric.
//!
//! Keys and node ids live in the same space: a node id is the SHA-256 of the node's
//! public key, a key is any 32 bytes chosen by a client.

use std::fmt;

/// A 256-bit value in the Kademlia id space (a DHT key or a node id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Key(pub [u8; 32]);

/// A node's identity: SHA-256 of its public key (DER SubjectPublicKeyInfo).
pub type NodeId = Key;

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
    fn hex_round_trips() {
        let k = Key([0xab; 32]);
        assert_eq!(Key::from_hex(&k.to_hex()), Some(k));
        assert_eq!(Key::from_hex("abc"), None);
    }
}
