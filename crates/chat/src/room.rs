//! Public rooms: posts signed by their author's user key, spread by gossip under a data
//! type derived from the room's name.

use crate::user::{check_name, Handle, UserKey};
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use sha2::{Digest, Sha256};
use voidmesh_proto::RoomPost;

/// Gossip data types of rooms: `0xC000 | 14 bits of SHA-256(room name)`. Two rooms may
/// share a type; posts carry the room name, and members show only their rooms' posts.
pub fn room_data_type(room: &str) -> u16 {
    let digest = Sha256::digest(room.as_bytes());
    0xC000 | (u16::from_be_bytes([digest[0], digest[1]]) & 0x3FFF)
}

/// Every data type a room can have.
pub const ROOM_TYPES: std::ops::RangeInclusive<u16> = 0xC000..=0xFFFF;

/// Whether `data_type` is in the range rooms use.
pub fn is_room_type(data_type: u16) -> bool {
    data_type & 0xC000 == 0xC000
}

/// Writes and signs a post.
pub fn sign_post(
    author: &UserKey,
    author_name: &str,
    room: &str,
    text: &str,
    sent_at_ms: u64,
    nonce: u64,
) -> RoomPost {
    let mut post = RoomPost {
        room: room.to_owned(),
        author_key: author.public_key(),
        author_name: author_name.to_owned(),
        sent_at_ms,
        nonce,
        signature: [0; 64],
        text: text.to_owned(),
    };
    post.signature = author.signing_key().sign(&post.signed_bytes()).to_bytes();
    post
}

/// Checks a post's names and signature; returns its author's handle.
///
/// # Errors
/// Why the post is not genuine.
pub fn check_post(post: &RoomPost) -> Result<Handle, String> {
    check_name(&post.room).map_err(|e| e.to_string())?;
    check_name(&post.author_name).map_err(|e| e.to_string())?;
    let key = VerifyingKey::from_bytes(&post.author_key).map_err(|_| "bad author key")?;
    key.verify_strict(
        &post.signed_bytes(),
        &Signature::from_bytes(&post.signature),
    )
    .map_err(|_| "signature does not hold")?;
    Ok(Handle::new(&post.author_name, &post.author_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genuine_posts_pass_and_forgeries_fail() {
        let alice = UserKey::generate();
        let post = sign_post(&alice, "alice", "rust", "hello", 1, 2);
        assert_eq!(
            check_post(&post).unwrap(),
            Handle::new("alice", &alice.public_key())
        );
        let mut changed = post.clone();
        changed.text = "goodbye".into();
        assert!(check_post(&changed).is_err());
        let mut other_author = post.clone();
        other_author.author_key = UserKey::generate().public_key();
        assert!(check_post(&other_author).is_err());
        let mut renamed = post;
        renamed.author_name = "bob".into();
        assert!(check_post(&renamed).is_err());
    }

    #[test]
    fn room_types_are_in_their_range() {
        for room in ["rust", "a", "voidmesh-dev"] {
            assert!(is_room_type(room_data_type(room)));
        }
        assert_ne!(room_data_type("rust"), room_data_type("go"));
    }
}
