//! Key material: the local X25519 secret taken from the Ed25519 hostkey, validated peer
//! keys, the per-pair directional AEAD keys, and address-validation tokens.

use super::DatagramError;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{SigningKey, VerifyingKey};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use voidmesh_proto::NodeId;

/// HKDF salt of the pair keys (domain separation from every other use of the hostkey).
const PAIR_SALT: &[u8] = b"voidmesh datagram v1";
/// HKDF info prefix of a directional key; followed by the sender's then the receiver's
/// Ed25519 public key.
const PAIR_INFO: &[u8] = b"voidmesh datagram key";
/// HMAC input prefix of an address-validation token.
const TOKEN_LABEL: &[u8] = b"voidmesh token v1";
/// HKDF salt used to split the caller's seed into the token key and the nonce seed.
const SEED_SALT: &[u8] = b"voidmesh datagram seed v1";

/// Length of an address-validation token.
pub const TOKEN_LEN: usize = 16;
/// Length of an AEAD key.
pub(crate) const KEY_LEN: usize = 32;
/// Length of the Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Length of an XChaCha20 nonce.
pub const NONCE_LEN: usize = 24;

/// One directional XChaCha20-Poly1305 key.
#[derive(Clone)]
pub(crate) struct AeadKey(pub(crate) [u8; KEY_LEN]);

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AeadKey(..)")
    }
}

impl AeadKey {
    /// Encrypts `plaintext` under `nonce` with `aad` authenticated, appending the tag.
    pub(crate) fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        // Encryption only fails for plaintexts beyond 256 GiB; ours are below 64 KiB.
        cipher
            .encrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_default()
    }

    /// Decrypts and checks `ciphertext` (tag included).
    pub(crate) fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, DatagramError> {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| DatagramError::Unauthenticated)
    }
}

/// A peer's Ed25519 public key, checked to be usable for key agreement, with its node id.
///
/// Built with [`PeerKey::from_bytes`] (from a contact) or returned by
/// [`Codec::open`](super::Codec::open) (from a datagram).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PeerKey {
    /// The 32-byte Ed25519 public key as sent on the wire (canonical encoding).
    bytes: [u8; 32],
    /// The X25519 public key: the Montgomery form of the same point.
    montgomery: [u8; 32],
    /// `SHA-256(SPKI)` of the key.
    node_id: NodeId,
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerKey({})", self.node_id)
    }
}

impl PeerKey {
    /// Checks a 32-byte Ed25519 public key: it must decode to a curve point, be the
    /// canonical encoding of that point, and not be of small order (a weak key, whose
    /// X25519 shared secret would not depend on our secret).
    ///
    /// # Errors
    /// [`DatagramError::BadPublicKey`] otherwise.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PeerKey, DatagramError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| DatagramError::BadPublicKey)?;
        if key.is_weak() || key.to_bytes() != *bytes {
            return Err(DatagramError::BadPublicKey);
        }
        Ok(PeerKey {
            bytes: *bytes,
            montgomery: key.to_montgomery().to_bytes(),
            node_id: crate::identity::node_id_from_public_key(&key),
        })
    }

    /// The Ed25519 public key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.bytes
    }

    /// The node id, `SHA-256` of the key's SubjectPublicKeyInfo.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The Ed25519 public key bytes, borrowed.
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

/// The local side of the key agreement: the hostkey's public key and its X25519 secret.
///
/// `Debug` shows only the node id.
#[derive(Clone)]
pub struct Keys {
    /// Our public key, as peers see it.
    public: PeerKey,
    /// The X25519 secret: the first half of SHA-512(Ed25519 seed), i.e. the Ed25519
    /// signing scalar before reduction; x25519-dalek clamps it.
    secret: x25519_dalek::StaticSecret,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keys({})", self.public.node_id)
    }
}

impl Keys {
    /// Derives the X25519 secret from an Ed25519 hostkey.
    pub fn new(key: &SigningKey) -> Keys {
        let vk = key.verifying_key();
        let bytes = vk.to_bytes();
        let public = PeerKey {
            bytes,
            montgomery: vk.to_montgomery().to_bytes(),
            node_id: crate::identity::node_id_from_public_key(&vk),
        };
        Keys {
            public,
            secret: x25519_dalek::StaticSecret::from(key.to_scalar_bytes()),
        }
    }

    /// Our own public key and node id.
    pub fn public(&self) -> &PeerKey {
        &self.public
    }

    /// The two directional keys shared with `peer`: (ours → peer, peer → ours).
    ///
    /// One X25519 (≈ 60 µs), one HKDF-Extract and two HKDF-Expand.
    ///
    /// # Errors
    /// [`DatagramError::BadPublicKey`] if the shared secret is all zeros (cannot happen
    /// for keys [`PeerKey::from_bytes`] accepted; checked anyway).
    pub(crate) fn pair_keys(&self, peer: &PeerKey) -> Result<(AeadKey, AeadKey), DatagramError> {
        let their = x25519_dalek::PublicKey::from(peer.montgomery);
        let shared = self.secret.diffie_hellman(&their);
        if !shared.was_contributory() {
            return Err(DatagramError::BadPublicKey);
        }
        let hk = Hkdf::<Sha256>::new(Some(PAIR_SALT), shared.as_bytes());
        let send = expand_pair(&hk, self.public.as_bytes(), peer.as_bytes());
        let recv = expand_pair(&hk, peer.as_bytes(), self.public.as_bytes());
        Ok((send, recv))
    }
}

/// `HKDF-Expand(prk, PAIR_INFO || from || to, 32)`.
fn expand_pair(hk: &Hkdf<Sha256>, from: &[u8; 32], to: &[u8; 32]) -> AeadKey {
    let mut out = [0u8; KEY_LEN];
    let mut info = Vec::with_capacity(PAIR_INFO.len() + 64);
    info.extend_from_slice(PAIR_INFO);
    info.extend_from_slice(from);
    info.extend_from_slice(to);
    // 32 bytes is far below HKDF-SHA256's limit of 8160, so expand cannot fail.
    let _ = hk.expand(&info, &mut out);
    AeadKey(out)
}

/// Splits the caller's 32-byte seed into (token HMAC key, nonce RNG seed).
pub(crate) fn split_seed(seed: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    let hk = Hkdf::<Sha256>::new(Some(SEED_SALT), seed);
    let mut token = [0u8; 32];
    let mut rng = [0u8; 32];
    let _ = hk.expand(b"token key", &mut token);
    let _ = hk.expand(b"nonce rng", &mut rng);
    (token, rng)
}

/// Stateless address-validation tokens: `HMAC-SHA256(secret, label || epoch || pk || addr)`
/// truncated to [`TOKEN_LEN`] bytes.
#[derive(Clone)]
pub(crate) struct TokenMinter {
    /// The HMAC key (from the caller's seed).
    key: [u8; 32],
    /// Length of one epoch in microseconds.
    epoch_us: u64,
}

impl fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenMinter")
            .field("epoch_us", &self.epoch_us)
            .finish_non_exhaustive()
    }
}

/// How a request's token compares with the tokens we would mint now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenCheck {
    /// Minted in the current epoch for this key and address.
    Current,
    /// Minted in the previous epoch: valid, but send a fresh one.
    Previous,
    /// Absent, or not ours for this key, address and time.
    Invalid,
}

impl TokenMinter {
    /// A minter with `key`; epochs last `epoch_us` (at least 1 µs).
    pub(crate) fn new(key: [u8; 32], epoch_us: u64) -> TokenMinter {
        TokenMinter {
            key,
            epoch_us: epoch_us.max(1),
        }
    }

    /// The token for `peer` at `addr` in the epoch of `now_us`.
    pub(crate) fn mint(&self, now_us: u64, peer: &PeerKey, addr: SocketAddr) -> [u8; TOKEN_LEN] {
        self.mint_epoch(now_us / self.epoch_us, peer, addr)
    }

    /// Checks `token` (if any) for `peer` at `addr`.
    pub(crate) fn check(
        &self,
        now_us: u64,
        peer: &PeerKey,
        addr: SocketAddr,
        token: Option<&[u8; TOKEN_LEN]>,
    ) -> TokenCheck {
        let Some(token) = token else {
            return TokenCheck::Invalid;
        };
        let epoch = now_us / self.epoch_us;
        if ct_eq(&self.mint_epoch(epoch, peer, addr), token) {
            TokenCheck::Current
        } else if epoch > 0 && ct_eq(&self.mint_epoch(epoch - 1, peer, addr), token) {
            TokenCheck::Previous
        } else {
            TokenCheck::Invalid
        }
    }

    /// The token of one epoch.
    fn mint_epoch(&self, epoch: u64, peer: &PeerKey, addr: SocketAddr) -> [u8; TOKEN_LEN] {
        // HMAC accepts keys of any length.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.key) else {
            return [0; TOKEN_LEN];
        };
        mac.update(TOKEN_LABEL);
        mac.update(&epoch.to_be_bytes());
        mac.update(peer.as_bytes());
        mac.update(&encode_addr(addr));
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; TOKEN_LEN];
        for (o, f) in out.iter_mut().zip(full.iter()) {
            *o = *f;
        }
        out
    }
}

/// Constant-time equality of two tokens.
fn ct_eq(a: &[u8; TOKEN_LEN], b: &[u8; TOKEN_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `family u8 (4 or 6) | address (4 or 16 bytes) | port u16`, IPv4-mapped IPv6
/// addresses written as IPv4 so a dual-stack socket and a v4 socket agree.
pub(crate) fn encode_addr(addr: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(19);
    match addr.ip().to_canonical() {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
    out
}
