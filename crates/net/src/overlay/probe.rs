//! Asking an address which key answers there: the one unauthenticated exchange of the
//! overlay, used to join through a bootstrapper known only by its address.
//!
//! ```text
//! PROBE        0x14 | nonce u64 | zeros [55]          64 bytes
//! PROBE_REPLY  0x15 | nonce u64 | public key [32]     41 bytes
//! ```
//! The reply is smaller than the probe, so a probe with a spoofed source address sends
//! its victim fewer bytes than the prober spent. The key it names is only a claim: the
//! prober then sends an authenticated request sealed to that key, which only the key's
//! holder can answer (the same trust a bootstrap address had with TLS: whoever answers
//! there first).

use voidmesh_proto::PublicKey;

/// First byte of a probe (0x40 and 0x80 clear: never QUIC).
pub const KIND_PROBE: u8 = 0x14;
/// First byte of a probe's reply.
pub const KIND_PROBE_REPLY: u8 = 0x15;
/// Length of a probe.
pub const PROBE_LEN: usize = 64;
/// Length of a probe's reply.
pub const PROBE_REPLY_LEN: usize = 41;

// A reply never outweighs its probe (no amplification).
const _: () = assert!(PROBE_REPLY_LEN < PROBE_LEN);

/// A probe carrying `nonce`.
pub fn probe(nonce: u64) -> [u8; PROBE_LEN] {
    let mut out = [0u8; PROBE_LEN];
    out[0] = KIND_PROBE;
    out[1..9].copy_from_slice(&nonce.to_be_bytes());
    out
}

/// The nonce of a well-formed probe.
pub fn parse_probe(datagram: &[u8]) -> Option<u64> {
    if datagram.len() != PROBE_LEN || datagram.first() != Some(&KIND_PROBE) {
        return None;
    }
    Some(u64::from_be_bytes(datagram.get(1..9)?.try_into().ok()?))
}

/// The reply to the probe carrying `nonce`, naming `key`.
pub fn probe_reply(nonce: u64, key: &PublicKey) -> [u8; PROBE_REPLY_LEN] {
    let mut out = [0u8; PROBE_REPLY_LEN];
    out[0] = KIND_PROBE_REPLY;
    out[1..9].copy_from_slice(&nonce.to_be_bytes());
    out[9..].copy_from_slice(&key.0);
    out
}

/// The nonce and key of a well-formed probe reply.
pub fn parse_probe_reply(datagram: &[u8]) -> Option<(u64, PublicKey)> {
    if datagram.len() != PROBE_REPLY_LEN || datagram.first() != Some(&KIND_PROBE_REPLY) {
        return None;
    }
    let nonce = u64::from_be_bytes(datagram.get(1..9)?.try_into().ok()?);
    let key: [u8; 32] = datagram.get(9..)?.try_into().ok()?;
    Some((nonce, PublicKey(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_round_trip_and_the_reply_is_smaller() {
        assert_eq!(parse_probe(&probe(7)), Some(7));
        let key = PublicKey([5; 32]);
        assert_eq!(parse_probe_reply(&probe_reply(7, &key)), Some((7, key)));
        assert_eq!(probe_reply(7, &key).len(), PROBE_REPLY_LEN);
        assert_eq!(parse_probe(&probe(7)[..63]), None);
        assert_eq!(parse_probe_reply(&probe(7)), None);
    }
}
