//! Signed mutable records: values that only the holder of a private key can write.
//!
//! A signed record lives under the key SHA-256(public key ‖ salt), so one Ed25519 key can
//! own many records (one per salt) and nobody else can produce a record for those keys.
//! Each new version carries a higher sequence number; storing nodes keep the highest one
//! whose signature checks out and which has not expired. The salt, sequence number,
//! expiry and value are all covered by the signature, after a domain-separation prefix so
//! that a signature made for something else can never pass as a record.
//!
//! # Format
//! ```text
//! record:   public key [32] | salt len u8 (≤ 64) | salt | seq u64 | expiry u64 | signature [64] | value
//! signed:   "voidmesh-signed-record-v1" | salt len u8 | salt | seq u64 | expiry u64 | value
//! key:      SHA-256(public key | salt)
//! ```
//! All integers are big-endian. `expiry` is a Unix time in seconds; the record is dead from
//! that second on. The value runs to the end of the enclosing message (at most
//! [`MAX_SIGNED_VALUE_LEN`] bytes). The signature is Ed25519 (RFC 8032) over the `signed`
//! bytes, checked strictly (no small-order keys, canonical encodings only).

use crate::frame::{DecodeError, API_HEADER_LEN};
use crate::id::Key;
use crate::wire::Reader;
use bytes::{BufMut, Bytes, BytesMut};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;
use thiserror::Error;

/// Prefix of the signed bytes: a signature over anything else never verifies as a record.
pub const SIGNED_RECORD_DOMAIN: &[u8] = b"voidmesh-signed-record-v1";

/// Longest salt.
pub const MAX_SALT_LEN: usize = 64;

/// Bytes of a record besides its salt and value: key, salt length, seq, expiry, signature.
pub const SIGNED_RECORD_FIXED_LEN: usize = 32 + 1 + 8 + 8 + 64;

/// Largest value of a signed record, chosen so that a whole record with the longest salt
/// plus 16 bytes of other fields still fits one API frame (65 535 bytes).
pub const MAX_SIGNED_VALUE_LEN: usize =
    u16::MAX as usize - API_HEADER_LEN - 16 - SIGNED_RECORD_FIXED_LEN - MAX_SALT_LEN;

/// Why a signed record is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SignedRecordError {
    /// The salt is longer than [`MAX_SALT_LEN`].
    #[error("salt longer than {MAX_SALT_LEN} bytes")]
    SaltTooLong,
    /// The value is longer than [`MAX_SIGNED_VALUE_LEN`].
    #[error("value longer than {MAX_SIGNED_VALUE_LEN} bytes")]
    ValueTooLong,
    /// The public key is not a valid Ed25519 point.
    #[error("public key is not a valid Ed25519 key")]
    BadPublicKey,
    /// The signature does not verify under the record's public key.
    #[error("signature does not verify")]
    BadSignature,
    /// The record is not the one for the key it was stored or asked under.
    #[error("record key is not SHA-256(public key | salt) of the expected key")]
    KeyMismatch,
    /// The record's expiry has passed.
    #[error("record expired")]
    Expired,
}

/// A record signed by the owner of `public_key`; see the module doc.
///
/// Building one by hand gives an unverified record: call [`verify`](Self::verify) or
/// [`validate`](Self::validate) before trusting it. [`sign`](Self::sign) builds a valid one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SignedRecord {
    /// The owner's Ed25519 public key (32 bytes, compressed Edwards point).
    pub public_key: [u8; 32],
    /// Distinguishes the owner's records; part of the key. At most [`MAX_SALT_LEN`] bytes.
    pub salt: Bytes,
    /// Sequence number: a record replaces another of the same key only with a higher one.
    pub seq: u64,
    /// Unix time (seconds) from which the record is dead.
    pub expiry: u64,
    /// The value, at most [`MAX_SIGNED_VALUE_LEN`] bytes.
    pub value: Bytes,
    /// Ed25519 signature over the signed bytes (see the module doc).
    pub signature: [u8; 64],
}

/// The key of the records of `public_key` under `salt`: SHA-256(public key ‖ salt).
pub fn signed_record_key(public_key: &[u8; 32], salt: &[u8]) -> Key {
    let mut hash = Sha256::new();
    hash.update(public_key);
    hash.update(salt);
    Key(hash.finalize().into())
}

/// The bytes a record's signature covers.
fn signed_bytes(salt: &[u8], seq: u64, expiry: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNED_RECORD_DOMAIN.len() + 17 + salt.len() + value.len());
    out.extend_from_slice(SIGNED_RECORD_DOMAIN);
    // The salt is at most 64 bytes, checked before anything is signed or verified.
    out.push(salt.len().min(u8::MAX as usize) as u8);
    out.extend_from_slice(salt);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&expiry.to_be_bytes());
    out.extend_from_slice(value);
    out
}

impl SignedRecord {
    /// Signs a new record with `signing_key`.
    ///
    /// # Errors
    /// [`SignedRecordError::SaltTooLong`] or [`SignedRecordError::ValueTooLong`].
    pub fn sign(
        signing_key: &SigningKey,
        salt: Bytes,
        seq: u64,
        expiry: u64,
        value: Bytes,
    ) -> Result<SignedRecord, SignedRecordError> {
        check_lengths(&salt, &value)?;
        let signature = signing_key.sign(&signed_bytes(&salt, seq, expiry, &value));
        Ok(SignedRecord {
            public_key: signing_key.verifying_key().to_bytes(),
            salt,
            seq,
            expiry,
            value,
            signature: signature.to_bytes(),
        })
    }

    /// The key this record lives under: SHA-256(public key ‖ salt).
    pub fn key(&self) -> Key {
        signed_record_key(&self.public_key, &self.salt)
    }

    /// Checks the lengths and the signature (not the expiry, not the key it came under).
    ///
    /// # Errors
    /// The first rule the record breaks.
    pub fn verify(&self) -> Result<(), SignedRecordError> {
        check_lengths(&self.salt, &self.value)?;
        let key = VerifyingKey::from_bytes(&self.public_key)
            .map_err(|_| SignedRecordError::BadPublicKey)?;
        let signature = Signature::from_bytes(&self.signature);
        let message = signed_bytes(&self.salt, self.seq, self.expiry, &self.value);
        key.verify_strict(&message, &signature)
            .map_err(|_| SignedRecordError::BadSignature)
    }

    /// Everything a storing or reading node checks: the record belongs under `key`, has not
    /// expired at Unix time `unix_now`, and its signature verifies.
    ///
    /// # Errors
    /// The first rule the record breaks (cheap checks first).
    pub fn validate(&self, key: &Key, unix_now: u64) -> Result<(), SignedRecordError> {
        if self.expiry <= unix_now {
            return Err(SignedRecordError::Expired);
        }
        if self.salt.len() <= MAX_SALT_LEN && self.key() != *key {
            return Err(SignedRecordError::KeyMismatch);
        }
        self.verify()
    }

    /// Bytes of the record in its wire form.
    pub fn encoded_len(&self) -> usize {
        SIGNED_RECORD_FIXED_LEN + self.salt.len() + self.value.len()
    }

    /// Appends the record in its wire form (see the module doc). The salt length is
    /// written as one byte: encode only records whose salt passed the length check.
    pub fn encode_into(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        buf.put_slice(&self.public_key);
        buf.put_u8(self.salt.len().min(u8::MAX as usize) as u8);
        buf.put_slice(&self.salt[..self.salt.len().min(u8::MAX as usize)]);
        buf.put_u64(self.seq);
        buf.put_u64(self.expiry);
        buf.put_slice(&self.signature);
        buf.put_slice(&self.value);
    }

    /// The record in its wire form.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode_into(&mut buf);
        buf.freeze()
    }

    /// Reads a record that runs to the end of `r` (its value is the rest). The lengths are
    /// checked, the signature is not.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] for a short record, [`DecodeError::BadField`] for a salt
    /// or value over its limit.
    pub fn read_rest(r: &mut Reader<'_>) -> Result<SignedRecord, DecodeError> {
        let public_key = r.array::<32>("public key")?;
        let salt_len = usize::from(r.u8("salt length")?);
        if salt_len > MAX_SALT_LEN {
            return Err(DecodeError::BadField("salt length"));
        }
        let mut salt = Vec::with_capacity(salt_len);
        for _ in 0..salt_len {
            salt.push(r.u8("salt")?);
        }
        let salt = Bytes::from(salt);
        let seq = r.u64("seq")?;
        let expiry = r.u64("expiry")?;
        let signature = r.array::<64>("signature")?;
        let value = r.rest();
        if value.len() > MAX_SIGNED_VALUE_LEN {
            return Err(DecodeError::BadField("value"));
        }
        Ok(SignedRecord {
            public_key,
            salt,
            seq,
            expiry,
            value,
            signature,
        })
    }

    /// Decodes a record from exactly `bytes` (e.g. one persisted with
    /// [`to_bytes`](Self::to_bytes)). The signature is not checked.
    ///
    /// # Errors
    /// As [`read_rest`](Self::read_rest).
    pub fn decode(bytes: &Bytes) -> Result<SignedRecord, DecodeError> {
        let mut r = Reader::new(bytes, 0);
        let record = SignedRecord::read_rest(&mut r)?;
        r.finish()?;
        Ok(record)
    }
}

fn check_lengths(salt: &[u8], value: &[u8]) -> Result<(), SignedRecordError> {
    if salt.len() > MAX_SALT_LEN {
        return Err(SignedRecordError::SaltTooLong);
    }
    if value.len() > MAX_SIGNED_VALUE_LEN {
        return Err(SignedRecordError::ValueTooLong);
    }
    Ok(())
}

impl fmt::Debug for SignedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedRecord")
            .field("key", &self.key())
            .field("public_key", &hex::encode(&self.public_key[..6]))
            .field("salt_len", &self.salt.len())
            .field("seq", &self.seq)
            .field("expiry", &self.expiry)
            .field("value_len", &self.value.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn signer(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn record(seq: u64) -> SignedRecord {
        SignedRecord::sign(
            &signer(1),
            Bytes::from_static(b"presence"),
            seq,
            2_000_000_000,
            Bytes::from_static(b"alice is online"),
        )
        .unwrap()
    }

    #[test]
    fn signed_record_verifies_under_its_key() {
        let r = record(1);
        assert_eq!(r.verify(), Ok(()));
        let key = signed_record_key(&signer(1).verifying_key().to_bytes(), b"presence");
        assert_eq!(r.key(), key);
        assert_eq!(r.validate(&key, 1_999_999_999), Ok(()));
    }

    #[test]
    fn any_changed_field_breaks_the_signature() {
        let good = record(7);
        let mut changes: Vec<SignedRecord> = Vec::new();
        let mut r = good.clone();
        r.seq = 8;
        changes.push(r);
        let mut r = good.clone();
        r.expiry += 1;
        changes.push(r);
        let mut r = good.clone();
        r.value = Bytes::from_static(b"mallory is online");
        changes.push(r);
        let mut r = good.clone();
        r.salt = Bytes::from_static(b"presencf");
        changes.push(r);
        let mut r = good.clone();
        r.signature[0] ^= 1;
        changes.push(r);
        for r in changes {
            assert!(r.verify().is_err(), "{r:?} verified");
        }
    }

    #[test]
    fn another_key_cannot_sign_for_the_owner() {
        let good = record(1);
        let forged = SignedRecord {
            public_key: good.public_key,
            ..SignedRecord::sign(
                &signer(2),
                good.salt.clone(),
                2,
                good.expiry,
                good.value.clone(),
            )
            .unwrap()
        };
        assert_eq!(forged.verify(), Err(SignedRecordError::BadSignature));
        // Signed with its own key it verifies, but lives under another key.
        let own = SignedRecord::sign(
            &signer(2),
            good.salt.clone(),
            2,
            good.expiry,
            good.value.clone(),
        )
        .unwrap();
        assert_eq!(own.verify(), Ok(()));
        assert_eq!(
            own.validate(&good.key(), 0),
            Err(SignedRecordError::KeyMismatch)
        );
    }

    #[test]
    fn expired_record_is_refused() {
        let r = record(1);
        assert_eq!(
            r.validate(&r.key(), r.expiry),
            Err(SignedRecordError::Expired)
        );
        assert_eq!(r.validate(&r.key(), r.expiry - 1), Ok(()));
    }

    #[test]
    fn signature_without_the_domain_prefix_does_not_verify() {
        let r = record(1);
        let bare = &signed_bytes(&r.salt, r.seq, r.expiry, &r.value)[SIGNED_RECORD_DOMAIN.len()..];
        let forged = SignedRecord {
            signature: signer(1).sign(bare).to_bytes(),
            ..r
        };
        assert_eq!(forged.verify(), Err(SignedRecordError::BadSignature));
    }

    #[test]
    fn invalid_public_key_is_refused() {
        let mut r = record(1);
        // y = 2 is not the encoding of a curve point.
        r.public_key = [0; 32];
        r.public_key[0] = 2;
        assert_eq!(r.verify(), Err(SignedRecordError::BadPublicKey));
    }

    #[test]
    fn long_salt_and_value_are_refused() {
        let long_salt = Bytes::from(vec![0; MAX_SALT_LEN + 1]);
        assert_eq!(
            SignedRecord::sign(&signer(1), long_salt, 1, 1, Bytes::new()),
            Err(SignedRecordError::SaltTooLong)
        );
        let long_value = Bytes::from(vec![0; MAX_SIGNED_VALUE_LEN + 1]);
        assert_eq!(
            SignedRecord::sign(&signer(1), Bytes::new(), 1, 1, long_value),
            Err(SignedRecordError::ValueTooLong)
        );
        let mut raw = record(1).to_bytes().to_vec();
        raw[32] = (MAX_SALT_LEN + 1) as u8;
        assert_eq!(
            SignedRecord::decode(&Bytes::from(raw)),
            Err(DecodeError::BadField("salt length"))
        );
    }

    #[test]
    fn largest_record_fits_an_api_frame() {
        let biggest = SIGNED_RECORD_FIXED_LEN + MAX_SALT_LEN + MAX_SIGNED_VALUE_LEN;
        assert_eq!(biggest + API_HEADER_LEN + 16, u16::MAX as usize);
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(
            seed in any::<[u8; 32]>(),
            salt in proptest::collection::vec(any::<u8>(), 0..=MAX_SALT_LEN),
            seq in any::<u64>(),
            expiry in any::<u64>(),
            value in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let r = SignedRecord::sign(&SigningKey::from_bytes(&seed), Bytes::from(salt), seq, expiry, Bytes::from(value)).unwrap();
            let back = SignedRecord::decode(&r.to_bytes()).unwrap();
            prop_assert_eq!(back.verify(), Ok(()));
            prop_assert_eq!(back, r);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(r) = SignedRecord::decode(&Bytes::from(bytes)) {
                let _ = r.validate(&Key::default(), 0);
            }
        }
    }
}
