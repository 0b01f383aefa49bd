//! Proof of work on joining: a peer proves it spent work on its own node id recently.
//!
//! A proof is a `(timestamp, nonce)` pair ([`Proof`]) such that
//! `SHA-256(node id [32] | timestamp u64 BE | nonce u64 BE)` starts with at least
//! `difficulty` zero bits, and `timestamp` (Unix seconds) is within the checker's allowed
//! clock skew of its own time. Binding the work to the node id means one proof cannot be
//! reused by another identity; binding it to a recent time means identities cannot be
//! stockpiled: every identity must redo the work every skew window.
//!
//! Solving costs about `2^difficulty` hashes, checking costs one.

use sha2::{Digest, Sha256};
use thiserror::Error;
use voidmesh_proto::{NodeId, Proof};

/// Why a proof of work is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PowError {
    /// The timestamp is too far from the checker's clock (stale, or from the future).
    #[error("proof timestamp {timestamp} is more than {max_skew} s away from now ({now})")]
    NotFresh {
        /// The proof's timestamp.
        timestamp: u64,
        /// The checker's Unix time.
        now: u64,
        /// The allowed distance in seconds.
        max_skew: u64,
    },
    /// The hash does not start with enough zero bits.
    #[error("proof has {bits} leading zero bits, {required} required")]
    TooEasy {
        /// Leading zero bits found.
        bits: u32,
        /// Leading zero bits required.
        required: u8,
    },
}

/// The hash a proof is judged by: `SHA-256(node id | timestamp | nonce)`.
pub fn pow_hash(node_id: &NodeId, timestamp: u64, nonce: u64) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(node_id.as_bytes());
    hasher.update(timestamp.to_be_bytes());
    hasher.update(nonce.to_be_bytes());
    hasher.finalize().into()
}

/// Number of zero bits at the start of `hash`.
pub fn leading_zero_bits(hash: &[u8; 32]) -> u32 {
    let mut bits = 0;
    for byte in hash {
        if *byte == 0 {
            bits += 8;
        } else {
            return bits + byte.leading_zeros();
        }
    }
    bits
}

/// Finds a proof for `node_id` at time `unix_secs` with at least `difficulty` leading zero
/// bits, trying nonces 0, 1, 2, … in order (so the result is deterministic).
///
/// This is CPU work of about `2^difficulty` hashes: a driver should run it off its event
/// loop for high difficulties. Difficulties above 64 are not reachable in practice.
pub fn solve_pow(node_id: &NodeId, unix_secs: u64, difficulty: u8) -> Proof {
    let mut nonce = 0u64;
    loop {
        let hash = pow_hash(node_id, unix_secs, nonce);
        if leading_zero_bits(&hash) >= u32::from(difficulty) {
            return Proof {
                timestamp: unix_secs,
                nonce,
            };
        }
        nonce = nonce.wrapping_add(1);
    }
}

/// Checks a proof presented by `node_id`.
///
/// # Errors
/// [`PowError::NotFresh`] when `|proof.timestamp - now_unix| > max_skew_secs`,
/// [`PowError::TooEasy`] when the hash has fewer than `difficulty` leading zero bits.
pub fn verify_pow(
    node_id: &NodeId,
    proof: &Proof,
    difficulty: u8,
    now_unix: u64,
    max_skew_secs: u64,
) -> Result<(), PowError> {
    if proof.timestamp.abs_diff(now_unix) > max_skew_secs {
        return Err(PowError::NotFresh {
            timestamp: proof.timestamp,
            now: now_unix,
            max_skew: max_skew_secs,
        });
    }
    let bits = leading_zero_bits(&pow_hash(node_id, proof.timestamp, proof.nonce));
    if bits < u32::from(difficulty) {
        return Err(PowError::TooEasy {
            bits,
            required: difficulty,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use voidmesh_proto::Key;

    #[test]
    fn solved_proof_verifies() {
        let id = Key([5; 32]);
        let proof = solve_pow(&id, 1_000, 10);
        assert_eq!(proof.timestamp, 1_000);
        assert_eq!(verify_pow(&id, &proof, 10, 1_000, 60), Ok(()));
    }

    #[test]
    fn proof_is_bound_to_the_node_id() {
        let proof = solve_pow(&Key([5; 32]), 1_000, 12);
        // With 12 bits, another id passes by chance with probability 1/4096; this pair
        // is fixed, so the test is deterministic.
        assert!(matches!(
            verify_pow(&Key([6; 32]), &proof, 12, 1_000, 60),
            Err(PowError::TooEasy { .. })
        ));
    }

    #[test]
    fn stale_and_future_proofs_are_refused() {
        let id = Key([1; 32]);
        let proof = solve_pow(&id, 1_000, 4);
        assert!(matches!(
            verify_pow(&id, &proof, 4, 1_061, 60),
            Err(PowError::NotFresh { .. })
        ));
        assert!(matches!(
            verify_pow(&id, &proof, 4, 939, 60),
            Err(PowError::NotFresh { .. })
        ));
        assert_eq!(verify_pow(&id, &proof, 4, 1_060, 60), Ok(()));
        assert_eq!(verify_pow(&id, &proof, 4, 940, 60), Ok(()));
    }

    #[test]
    fn difficulty_zero_accepts_any_nonce() {
        let id = Key([1; 32]);
        let proof = Proof {
            timestamp: 5,
            nonce: 12345,
        };
        assert_eq!(verify_pow(&id, &proof, 0, 5, 0), Ok(()));
    }

    #[test]
    fn leading_zero_bits_counts_across_bytes() {
        let mut h = [0u8; 32];
        h[2] = 0b0001_0000;
        assert_eq!(leading_zero_bits(&h), 19);
        assert_eq!(leading_zero_bits(&[0; 32]), 256);
        assert_eq!(leading_zero_bits(&[0xff; 32]), 0);
    }

    proptest! {
        #[test]
        fn a_solved_proof_meets_its_difficulty(id in any::<[u8; 32]>(), t in any::<u64>(), d in 0u8..10) {
            let id = Key(id);
            let proof = solve_pow(&id, t, d);
            prop_assert!(verify_pow(&id, &proof, d, t, 0).is_ok());
        }
    }
}
