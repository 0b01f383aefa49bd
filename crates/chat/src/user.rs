//! Who a user is: their key (kept under `data_dir`), the short id derived from it, and the
//! `name#id` handle people type.

use crate::ChatError;
use data_encoding::BASE32_NOPAD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use voidmesh_net::Identity;
use voidmesh_proto::chat_msg::MAX_NAME_LEN;

/// Characters of a user id: 10 base32 characters = the first 50 bits of SHA-256(key).
pub const USER_ID_LEN: usize = 10;

/// File name of the user key under `data_dir`.
pub const USER_KEY_FILE: &str = "user.key";

/// The short, typeable fingerprint of a user key (lowercase base32).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// The id of `public_key`.
    pub fn of(public_key: &[u8; 32]) -> UserId {
        let digest = Sha256::digest(public_key);
        // 7 bytes = 56 bits encode to 12 characters; the first 10 carry exactly 50 bits.
        let text = BASE32_NOPAD.encode(&digest[..7]).to_ascii_lowercase();
        UserId(text[..USER_ID_LEN].to_owned())
    }

    /// Whether `public_key` hashes to this id.
    pub fn matches(&self, public_key: &[u8; 32]) -> bool {
        UserId::of(public_key) == *self
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserId {
    type Err = ChatError;

    /// Accepts exactly [`USER_ID_LEN`] base32 characters, in either case.
    fn from_str(s: &str) -> Result<UserId, ChatError> {
        let lower = s.to_ascii_lowercase();
        let valid = lower.len() == USER_ID_LEN
            && lower
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
        if valid {
            Ok(UserId(lower))
        } else {
            Err(ChatError::BadHandle(format!(
                "`{s}` is not a user id ({USER_ID_LEN} characters a-z, 2-7)"
            )))
        }
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a user or room name: 1 to 32 ASCII letters, digits, `_`, `-` or `.`.
///
/// # Errors
/// [`ChatError::BadHandle`] saying what is wrong.
pub fn check_name(name: &str) -> Result<(), ChatError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if valid {
        Ok(())
    } else {
        Err(ChatError::BadHandle(format!(
            "`{name}` is not a name (1-{MAX_NAME_LEN} of a-z A-Z 0-9 _ - .)"
        )))
    }
}

/// `name#id`: how users name each other.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle {
    /// The name the user chose for the session.
    pub name: String,
    /// The fingerprint of their key.
    pub id: UserId,
}

impl Handle {
    /// The handle of `name` with `public_key`.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Handle {
        Handle {
            name: name.to_owned(),
            id: UserId::of(public_key),
        }
    }
}

impl FromStr for Handle {
    type Err = ChatError;

    /// Parses `name#id`.
    fn from_str(s: &str) -> Result<Handle, ChatError> {
        let (name, id) = s
            .split_once('#')
            .ok_or_else(|| ChatError::BadHandle(format!("`{s}` is not name#id")))?;
        check_name(name)?;
        Ok(Handle {
            name: name.to_owned(),
            id: id.parse()?,
        })
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.name, self.id)
    }
}

/// The user's own key pair.
#[derive(Clone)]
pub struct UserKey {
    key: SigningKey,
}

impl UserKey {
    /// A fresh random key.
    pub fn generate() -> UserKey {
        UserKey {
            key: Identity::generate().signing_key().clone(),
        }
    }

    /// Loads `data_dir/user.key`, creating it (PEM, PKCS#8, mode 0600) the first time.
    ///
    /// # Errors
    /// [`ChatError::UserKey`] when the file exists but cannot be read, or cannot be written.
    pub fn load_or_create(data_dir: &Path) -> Result<UserKey, ChatError> {
        let path = data_dir.join(USER_KEY_FILE);
        let identity = if path.exists() {
            Identity::load(&path)
        } else {
            voidmesh_node::private::private_dir(data_dir)
                .map_err(|e| ChatError::UserKey(format!("{}: {e}", data_dir.display())))?;
            let identity = Identity::generate();
            identity.save(&path).map(|()| identity)
        }
        .map_err(|e| ChatError::UserKey(format!("{}: {e}", path.display())))?;
        Ok(UserKey {
            key: identity.signing_key().clone(),
        })
    }

    /// The signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// This user's id.
    pub fn id(&self) -> UserId {
        UserId::of(&self.public_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_round_trips_and_is_case_insensitive_in_the_id() {
        let key = UserKey::generate();
        let handle = Handle::new("alice", &key.public_key());
        assert_eq!(handle.id.as_str().len(), USER_ID_LEN);
        let parsed: Handle = handle.to_string().parse().unwrap();
        assert_eq!(parsed, handle);
        let upper = format!("alice#{}", handle.id.as_str().to_ascii_uppercase());
        assert_eq!(upper.parse::<Handle>().unwrap(), handle);
        assert!(handle.id.matches(&key.public_key()));
        assert!(!handle.id.matches(&UserKey::generate().public_key()));
    }

    #[test]
    fn bad_handles_are_refused() {
        for bad in [
            "alice",
            "#abcdefghij",
            "alice#abc",
            "alice#abcdefghi1",
            "al ice#abcdefghij",
            "alice#abcdefghijk",
        ] {
            assert!(bad.parse::<Handle>().is_err(), "{bad}");
        }
    }

    #[test]
    fn user_key_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = UserKey::load_or_create(dir.path()).unwrap();
        let again = UserKey::load_or_create(dir.path()).unwrap();
        assert_eq!(first.public_key(), again.public_key());
    }
}
