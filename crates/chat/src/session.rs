//! The session handshake: each side signs, with its user key, a binding of that key to
//! its node id, the other side's node id and the session id. The transport already
//! proves node ids, so each side knows the user key it talks to is held by the node at
//! the other end of the connection, for this session only.

use crate::user::{check_name, Handle, UserKey};
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use voidmesh_proto::chat_msg::{refusal, ChatMessage, SessionId};
use voidmesh_proto::NodeId;

/// Domain of the caller's binding.
const OPEN_DOMAIN: &[u8] = b"voidmesh-chat/v1 session open\0";
/// Domain of the callee's binding.
const ACCEPT_DOMAIN: &[u8] = b"voidmesh-chat/v1 session accept\0";

/// `domain | session | signer's node | other node | signer's name`.
fn binding_bytes(
    domain: &[u8],
    session: &SessionId,
    own_node: &NodeId,
    other_node: &NodeId,
    name: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(domain.len() + 16 + 64 + 1 + name.len());
    out.extend_from_slice(domain);
    out.extend_from_slice(session);
    out.extend_from_slice(own_node.as_bytes());
    out.extend_from_slice(other_node.as_bytes());
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out
}

fn verify(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    VerifyingKey::from_bytes(key)
        .and_then(|k| k.verify_strict(message, &Signature::from_bytes(signature)))
        .is_ok()
}

/// The caller's side of a session, as both ends see it.
pub struct Caller<'a> {
    /// The caller's key.
    pub user: &'a UserKey,
    /// The caller's name.
    pub name: &'a str,
    /// The caller's node.
    pub node: NodeId,
}

/// Builds the SESSION OPEN that `caller` sends to `callee` (whose key was looked up)
/// at node `callee_node`.
pub fn open(
    caller: &Caller<'_>,
    session: SessionId,
    callee_key: [u8; 32],
    callee_name: &str,
    callee_node: &NodeId,
) -> ChatMessage {
    let signed = binding_bytes(
        OPEN_DOMAIN,
        &session,
        &caller.node,
        callee_node,
        caller.name,
    );
    ChatMessage::SessionOpen {
        session,
        caller_key: caller.user.public_key(),
        caller_name: caller.name.to_owned(),
        callee_key,
        callee_name: callee_name.to_owned(),
        binding: caller.user.signing_key().sign(&signed).to_bytes(),
    }
}

/// A refusal: code and reason.
pub type Refusal = (u16, String);

/// The callee's check of a SESSION OPEN that arrived from node `from` (proved by the
/// transport): it must be meant for us and carry a valid binding. Returns the caller's
/// handle and key.
///
/// # Errors
/// The refusal to send back.
pub fn check_open(
    msg: &ChatMessage,
    from: &NodeId,
    me: &Caller<'_>,
) -> Result<(Handle, [u8; 32]), Refusal> {
    let ChatMessage::SessionOpen {
        session,
        caller_key,
        caller_name,
        callee_key,
        callee_name,
        binding,
    } = msg
    else {
        return Err((refusal::BAD_BINDING, "not a session open".into()));
    };
    if *callee_key != me.user.public_key() || callee_name != me.name {
        return Err((refusal::WRONG_USER, format!("{callee_name} is not here")));
    }
    check_name(caller_name).map_err(|e| (refusal::BAD_BINDING, e.to_string()))?;
    let signed = binding_bytes(OPEN_DOMAIN, session, from, &me.node, caller_name);
    if !verify(caller_key, &signed, binding) {
        return Err((
            refusal::BAD_BINDING,
            "binding signature does not hold".into(),
        ));
    }
    Ok((Handle::new(caller_name, caller_key), *caller_key))
}

/// The callee's SESSION ACCEPT.
pub fn accept(me: &Caller<'_>, session: SessionId, caller_node: &NodeId) -> ChatMessage {
    let signed = binding_bytes(ACCEPT_DOMAIN, &session, &me.node, caller_node, me.name);
    ChatMessage::SessionAccept {
        session,
        callee_key: me.user.public_key(),
        callee_name: me.name.to_owned(),
        binding: me.user.signing_key().sign(&signed).to_bytes(),
    }
}

/// The caller's check of the answer from node `from` (proved by the transport, and the
/// node the presence record named): it must accept this session as the user we looked up.
///
/// # Errors
/// Why the session cannot be used.
pub fn check_accept(
    reply: &ChatMessage,
    session: &SessionId,
    expected: &Handle,
    expected_key: &[u8; 32],
    from: &NodeId,
    me: &Caller<'_>,
) -> Result<(), String> {
    match reply {
        ChatMessage::SessionAccept {
            session: got,
            callee_key,
            callee_name,
            binding,
        } => {
            if got != session {
                return Err("accepted another session".into());
            }
            if callee_key != expected_key || *callee_name != expected.name {
                return Err("answered by another user".into());
            }
            let signed = binding_bytes(ACCEPT_DOMAIN, session, from, &me.node, callee_name);
            if !verify(callee_key, &signed, binding) {
                return Err("their binding signature does not hold".into());
            }
            Ok(())
        }
        ChatMessage::Refused { reason, .. } => Err(format!("refused: {reason}")),
        other => Err(format!("unexpected answer {}", other.msg_type())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voidmesh_proto::Key;

    #[test]
    fn handshake_binds_both_users_to_their_nodes() {
        let (alice, bob) = (UserKey::generate(), UserKey::generate());
        let a = Caller {
            user: &alice,
            name: "alice",
            node: Key([1; 32]),
        };
        let b = Caller {
            user: &bob,
            name: "bob",
            node: Key([2; 32]),
        };
        let bob_handle = Handle::new("bob", &bob.public_key());
        let msg = open(&a, [9; 16], bob.public_key(), "bob", &b.node);
        let (caller, key) = check_open(&msg, &a.node, &b).unwrap();
        assert_eq!(caller, Handle::new("alice", &alice.public_key()));
        assert_eq!(key, alice.public_key());
        let reply = accept(&b, [9; 16], &a.node);
        check_accept(
            &reply,
            &[9; 16],
            &bob_handle,
            &bob.public_key(),
            &b.node,
            &a,
        )
        .unwrap();

        // Relayed from another node: the binding names alice's node, not the sender's.
        assert_eq!(
            check_open(&msg, &Key([3; 32]), &b).unwrap_err().0,
            refusal::BAD_BINDING
        );
        // Answered by a node other than the one bob's binding names.
        assert!(check_accept(
            &reply,
            &[9; 16],
            &bob_handle,
            &bob.public_key(),
            &Key([3; 32]),
            &a
        )
        .is_err());
        // Meant for someone else.
        let carol = UserKey::generate();
        let c = Caller {
            user: &carol,
            name: "carol",
            node: Key([2; 32]),
        };
        assert_eq!(
            check_open(&msg, &a.node, &c).unwrap_err().0,
            refusal::WRONG_USER
        );
        // Another session id.
        assert!(check_accept(
            &reply,
            &[8; 16],
            &bob_handle,
            &bob.public_key(),
            &b.node,
            &a
        )
        .is_err());
    }
}
