//! The node's hostkey: an Ed25519 key kept in a PEM PKCS#8 file, and the node id derived
//! from it.
//!
//! # Node id
//! `node_id = SHA-256(SubjectPublicKeyInfo DER)`. For Ed25519 the SPKI is always 44 bytes:
//! the 12-byte prefix [`ED25519_SPKI_PREFIX`] (`SEQUENCE { SEQUENCE { OID 1.3.101.112 },
//! BIT STRING }`) followed by the 32-byte public key. The same bytes appear in the
//! certificate a node presents on every connection, so a peer derives the id from what the
//! handshake proved.

use ed25519_dalek::pkcs8::spki::der::pem::{self, LineEnding};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;
use voidmesh_proto::{Key, NodeId};

/// DER of an Ed25519 SubjectPublicKeyInfo up to the key bytes (RFC 8410).
pub const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// Length of an Ed25519 SubjectPublicKeyInfo in DER.
pub const ED25519_SPKI_LEN: usize = 44;

/// The PEM label of a PKCS#8 private key.
const PEM_LABEL: &str = "PRIVATE KEY";

/// Errors loading or creating a hostkey.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// The hostkey file does not exist.
    #[error("hostkey file {} does not exist", .0.display())]
    Missing(PathBuf),
    /// [`Identity::save`] found a file already there and left it untouched.
    #[error("hostkey file {} already exists; refusing to overwrite it", .0.display())]
    Exists(PathBuf),
    /// Reading or writing the hostkey file failed.
    #[error("cannot access hostkey file {}: {os}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said (part of the message, so not repeated as a cause).
        os: std::io::Error,
    },
    /// The text is not a PEM `PRIVATE KEY` block.
    #[error("{}not a PEM private key (expected \"-----BEGIN PRIVATE KEY-----\"): {reason}", origin(.path))]
    NotPem {
        /// The file it came from, if any.
        path: Option<PathBuf>,
        /// What the PEM decoder found wrong.
        reason: String,
    },
    /// The PEM block holds something other than an Ed25519 PKCS#8 private key.
    #[error("{}not an Ed25519 PKCS#8 private key: {reason}", origin(.path))]
    NotEd25519 {
        /// The file it came from, if any.
        path: Option<PathBuf>,
        /// What the PKCS#8 decoder found wrong.
        reason: String,
    },
}

/// `"hostkey file <path>: "` or nothing, to prefix parse errors.
fn origin(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("hostkey file {}: ", p.display()),
        None => String::new(),
    }
}

impl IdentityError {
    /// Attaches the file a parse error came from.
    fn in_file(self, file: &Path) -> IdentityError {
        match self {
            IdentityError::NotPem { reason, .. } => IdentityError::NotPem {
                path: Some(file.to_path_buf()),
                reason,
            },
            IdentityError::NotEd25519 { reason, .. } => IdentityError::NotEd25519 {
                path: Some(file.to_path_buf()),
                reason,
            },
            other => other,
        }
    }
}

/// This node's Ed25519 hostkey and the node id derived from it.
///
/// `Debug` shows only the node id, never the secret key.
#[derive(Clone)]
pub struct Identity {
    /// The secret key; signs TLS handshakes (and, later, chat records).
    key: SigningKey,
    /// DER SubjectPublicKeyInfo of the public key; hashed into `node_id`.
    spki: [u8; ED25519_SPKI_LEN],
    /// SHA-256 of `spki`, computed once.
    node_id: NodeId,
}

impl Identity {
    /// A fresh random hostkey drawn from the OS random source.
    pub fn generate() -> Identity {
        Identity::from_signing_key(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// Wraps an existing Ed25519 key.
    pub fn from_signing_key(key: SigningKey) -> Identity {
        let spki = spki_of(&key.verifying_key());
        let node_id = node_id_from_spki(&spki);
        Identity { key, spki, node_id }
    }

    /// Parses a PKCS#8 PEM Ed25519 private key (`-----BEGIN PRIVATE KEY-----`).
    ///
    /// # Errors
    /// [`IdentityError::NotPem`] if the text is not a PEM `PRIVATE KEY` block,
    /// [`IdentityError::NotEd25519`] if the block is not an Ed25519 PKCS#8 key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Identity, IdentityError> {
        if !pem.trim_start().starts_with("-----BEGIN ") {
            return Err(IdentityError::NotPem {
                path: None,
                reason: "no PEM block: the file must start with \"-----BEGIN\"".to_owned(),
            });
        }
        let (label, der) =
            pem::decode_vec(pem.trim().as_bytes()).map_err(|e| IdentityError::NotPem {
                path: None,
                reason: e.to_string(),
            })?;
        if label != PEM_LABEL {
            return Err(IdentityError::NotPem {
                path: None,
                reason: format!("found a \"{label}\" block"),
            });
        }
        let key = SigningKey::from_pkcs8_der(&der).map_err(|e| IdentityError::NotEd25519 {
            path: None,
            reason: key_kind(&der).unwrap_or_else(|| e.to_string()),
        })?;
        Ok(Identity::from_signing_key(key))
    }

    /// The key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, LF line endings).
    pub fn to_pkcs8_pem(&self) -> String {
        // Encoding 32 bytes of key into a fixed ASN.1 structure has no failure mode.
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.as_str().to_owned())
            .expect("PKCS#8 encoding of an Ed25519 key cannot fail")
    }

    /// The key as PKCS#8 DER (what the TLS stack and certificate generator consume).
    pub(crate) fn to_pkcs8_der(&self) -> Vec<u8> {
        self.key
            .to_pkcs8_der()
            .map(|doc| doc.as_bytes().to_vec())
            .expect("PKCS#8 encoding of an Ed25519 key cannot fail")
    }

    /// Reads a PEM hostkey file.
    ///
    /// # Errors
    /// [`IdentityError::Missing`] if there is no such file, [`IdentityError::Io`] if it
    /// cannot be read, and the parse errors of [`Identity::from_pkcs8_pem`] naming the file.
    pub fn load(path: &Path) -> Result<Identity, IdentityError> {
        let bytes = std::fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => IdentityError::Missing(path.to_path_buf()),
            _ => IdentityError::Io {
                path: path.to_path_buf(),
                os: source,
            },
        })?;
        let text = std::str::from_utf8(&bytes).map_err(|_| IdentityError::NotPem {
            path: Some(path.to_path_buf()),
            reason: "the file is not text".to_owned(),
        })?;
        Identity::from_pkcs8_pem(text).map_err(|e| e.in_file(path))
    }

    /// Writes the PEM hostkey to `path`, creating it with mode 0600 (owner read/write only).
    ///
    /// # Errors
    /// [`IdentityError::Exists`] if the file is already there (it is never overwritten),
    /// [`IdentityError::Io`] for any other failure.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let io_err = |source: std::io::Error| match source.kind() {
            std::io::ErrorKind::AlreadyExists => IdentityError::Exists(path.to_path_buf()),
            _ => IdentityError::Io {
                path: path.to_path_buf(),
                os: source,
            },
        };
        let mut file = options.open(path).map_err(io_err)?;
        file.write_all(self.to_pkcs8_pem().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_err)
    }

    /// SHA-256 of the public key's DER SubjectPublicKeyInfo.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The secret key, for signing application records (e.g. chat presence).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The public key as contacts carry it (its node id is [`Identity::node_id`]).
    pub fn public_key(&self) -> voidmesh_proto::PublicKey {
        voidmesh_proto::PublicKey(self.verifying_key().to_bytes())
    }

    /// The Ed25519 verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as DER SubjectPublicKeyInfo (44 bytes); its SHA-256 is the node id.
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// What a PKCS#8 key that is not Ed25519 is, for the error message: its algorithm by
/// name (or OID). `None` if the DER is not PKCS#8 at all, or is Ed25519.
fn key_kind(der: &[u8]) -> Option<String> {
    let info = ed25519_dalek::pkcs8::PrivateKeyInfo::try_from(der).ok()?;
    let oid = info.algorithm.oid.to_string();
    let name = match oid.as_str() {
        "1.3.101.112" => return None,
        "1.2.840.113549.1.1.1" => "an RSA key",
        "1.2.840.10045.2.1" => "an elliptic-curve (ECDSA) key",
        "1.3.101.110" => "an X25519 key",
        "1.3.101.113" => "an Ed448 key",
        _ => "a key of another algorithm",
    };
    Some(format!(
        "it is {name} (OID {oid}); a hostkey must be Ed25519 (`voidmesh keygen PATH` makes one)"
    ))
}

/// The DER SubjectPublicKeyInfo of an Ed25519 public key.
pub fn spki_of(key: &VerifyingKey) -> [u8; ED25519_SPKI_LEN] {
    let mut spki = [0u8; ED25519_SPKI_LEN];
    spki[..ED25519_SPKI_PREFIX.len()].copy_from_slice(&ED25519_SPKI_PREFIX);
    spki[ED25519_SPKI_PREFIX.len()..].copy_from_slice(key.as_bytes());
    spki
}

/// The node id of whoever holds the key in `der` (a DER SubjectPublicKeyInfo): its
/// SHA-256. Works for any key type; voidmesh only accepts Ed25519 keys on the wire.
pub fn node_id_from_spki(der: &[u8]) -> NodeId {
    Key(Sha256::digest(der).into())
}

/// The node id of an Ed25519 public key (SHA-256 of its SubjectPublicKeyInfo).
pub fn node_id_from_public_key(key: &VerifyingKey) -> NodeId {
    node_id_from_spki(&spki_of(key))
}

/// Whether `der` is an Ed25519 SubjectPublicKeyInfo.
pub(crate) fn is_ed25519_spki(der: &[u8]) -> bool {
    der.len() == ED25519_SPKI_LEN && der.starts_with(&ED25519_SPKI_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::EncodePublicKey;

    #[test]
    fn hand_built_spki_matches_the_pkcs8_encoder() {
        let id = Identity::generate();
        let der = id.verifying_key().to_public_key_der().unwrap();
        assert_eq!(der.as_bytes(), id.public_key_der());
        assert!(is_ed25519_spki(id.public_key_der()));
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let id = Identity::generate();
        let shown = format!("{id:?}");
        assert!(shown.contains("node_id"));
        assert!(!shown.contains(&format!("{:?}", id.signing_key().to_bytes())));
    }

    #[test]
    fn keys_that_are_not_usable_hostkeys_are_named_for_what_they_are() {
        // A PKCS#8 RSA key (rsaEncryption OID, a stand-in key body).
        let der = [
            0x30, 0x17, 0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
            0x0d, 0x01, 0x01, 0x01, 0x05, 0x00, 0x04, 0x03, 0x02, 0x01, 0x00,
        ];
        let rsa = pem::encode_string(PEM_LABEL, LineEnding::LF, &der).unwrap();
        let err = Identity::from_pkcs8_pem(&rsa).unwrap_err().to_string();
        assert!(err.contains("an RSA key"), "{err}");
        assert!(
            !err.contains("1.3.101.112"),
            "the Ed25519 OID is not the problem: {err}"
        );
        // Text that is no PEM at all is not blamed on a NUL byte.
        let err = Identity::from_pkcs8_pem("hello world\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no PEM block"), "{err}");
        assert!(!err.contains("NUL"), "{err}");
    }

    #[test]
    fn an_os_error_is_said_once() {
        let err = Identity::generate()
            .save(Path::new("/nonexistent-dir-for-voidmesh-test/key.pem"))
            .unwrap_err();
        let chain = format!("{:#}", anyhow_like(&err));
        assert_eq!(chain.matches("os error").count(), 1, "{chain}");
    }

    /// The message with its causes, as `anyhow` prints `{:#}`.
    fn anyhow_like(err: &IdentityError) -> String {
        let mut out = err.to_string();
        let mut cause = std::error::Error::source(err);
        while let Some(c) = cause {
            out.push_str(&format!(": {c}"));
            cause = c.source();
        }
        out
    }
}
