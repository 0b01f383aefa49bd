//! Byte layout of the three datagram kinds (see the module documentation for the table).

use super::keys::{NONCE_LEN, TAG_LEN, TOKEN_LEN};
use super::DatagramError;

/// The bit QUIC v1 always sets in its first byte (RFC 9000 fixed bit); ours never do.
pub const QUIC_FIXED_BIT: u8 = 0x40;
/// First byte of a request (version 1, kind 1).
pub const KIND_REQUEST: u8 = 0x11;
/// First byte of a reply (version 1, kind 2).
pub const KIND_REPLY: u8 = 0x12;
/// First byte of a retry: a reply carrying only an address token (version 1, kind 3).
pub const KIND_RETRY: u8 = 0x13;

/// Plaintext flag: a 16-byte token follows the flags byte.
pub(crate) const FLAG_TOKEN: u8 = 0x01;
/// Plaintext flag (requests only): a `u16` payload length follows, then the payload, then
/// zero padding.
pub(crate) const FLAG_PADDED: u8 = 0x02;

/// Bytes before the ciphertext of a request: kind, sender public key, nonce.
pub const REQUEST_HEADER_LEN: usize = 1 + 32 + NONCE_LEN;
/// Bytes before the ciphertext of a reply or retry: kind, request id, nonce.
pub const REPLY_HEADER_LEN: usize = 1 + 8 + NONCE_LEN;
/// Bytes a request adds to its payload when it carries no token and no padding.
pub const REQUEST_OVERHEAD: usize = REQUEST_HEADER_LEN + 1 + TAG_LEN;
/// Bytes a reply adds to its payload when it carries no token.
pub const REPLY_OVERHEAD: usize = REPLY_HEADER_LEN + 1 + TAG_LEN;
/// Length of a retry datagram.
pub const RETRY_LEN: usize = REPLY_OVERHEAD + TOKEN_LEN;
/// The datagram size every path is assumed to carry (IPv6 minimum MTU minus IP and UDP
/// headers, with margin, as QUIC assumes).
pub const DEFAULT_MAX_DATAGRAM: usize = 1200;
/// Largest request payload in a [`DEFAULT_MAX_DATAGRAM`]-byte datagram (with a token).
pub const MAX_REQUEST_PAYLOAD: usize = DEFAULT_MAX_DATAGRAM - REQUEST_OVERHEAD - TOKEN_LEN;
/// Largest reply payload in a [`DEFAULT_MAX_DATAGRAM`]-byte datagram (with a token).
pub const MAX_REPLY_PAYLOAD: usize = DEFAULT_MAX_DATAGRAM - REPLY_OVERHEAD - TOKEN_LEN;

/// A request's clear header.
#[derive(Debug)]
pub(crate) struct RequestHeader<'a> {
    /// Bytes `0..REQUEST_HEADER_LEN`, the associated data.
    pub(crate) aad: &'a [u8],
    /// The sender's Ed25519 public key.
    pub(crate) sender: [u8; 32],
    /// The XChaCha20 nonce.
    pub(crate) nonce: [u8; NONCE_LEN],
    /// Nonce bytes 0..8: the sender's counter (µs since the Unix epoch, strictly
    /// increasing per sender).
    pub(crate) counter: u64,
    /// Nonce bytes 8..16: the request id the reply echoes.
    pub(crate) request_id: u64,
    /// Ciphertext with the tag.
    pub(crate) sealed: &'a [u8],
}

/// A reply's or retry's clear header.
#[derive(Debug)]
pub(crate) struct ReplyHeader<'a> {
    /// Bytes `0..REPLY_HEADER_LEN`, the associated data.
    pub(crate) aad: &'a [u8],
    /// The request id being answered.
    pub(crate) request_id: u64,
    /// The XChaCha20 nonce.
    pub(crate) nonce: [u8; NONCE_LEN],
    /// Ciphertext with the tag.
    pub(crate) sealed: &'a [u8],
}

/// Splits a request (first byte already checked) into its header fields.
pub(crate) fn parse_request(d: &[u8]) -> Result<RequestHeader<'_>, DatagramError> {
    if d.len() < REQUEST_OVERHEAD {
        return Err(DatagramError::Truncated);
    }
    let (aad, sealed) = d.split_at(REQUEST_HEADER_LEN);
    let nonce: [u8; NONCE_LEN] = array(aad, 33)?;
    Ok(RequestHeader {
        aad,
        sender: array(aad, 1)?,
        counter: u64::from_be_bytes(array(&nonce, 0)?),
        request_id: u64::from_be_bytes(array(&nonce, 8)?),
        nonce,
        sealed,
    })
}

/// Splits a reply or retry (first byte already checked) into its header fields.
pub(crate) fn parse_reply(d: &[u8]) -> Result<ReplyHeader<'_>, DatagramError> {
    if d.len() < REPLY_OVERHEAD {
        return Err(DatagramError::Truncated);
    }
    let (aad, sealed) = d.split_at(REPLY_HEADER_LEN);
    Ok(ReplyHeader {
        aad,
        request_id: u64::from_be_bytes(array(aad, 1)?),
        nonce: array(aad, 9)?,
        sealed,
    })
}

/// A decrypted body: the token, if any, and where the payload is.
#[derive(Debug)]
pub(crate) struct Body {
    /// The token after the flags byte.
    pub(crate) token: Option<[u8; TOKEN_LEN]>,
    /// The payload's range in the plaintext.
    pub(crate) payload: std::ops::Range<usize>,
}

/// Parses `flags | [token] | [len u16] | payload | [zero padding]`; `padding_allowed`
/// only for requests.
pub(crate) fn parse_body(plain: &[u8], padding_allowed: bool) -> Result<Body, DatagramError> {
    let (&flags, _) = plain.split_first().ok_or(DatagramError::Malformed)?;
    let known = if padding_allowed {
        FLAG_TOKEN | FLAG_PADDED
    } else {
        FLAG_TOKEN
    };
    if flags & !known != 0 {
        return Err(DatagramError::Malformed);
    }
    let mut at = 1;
    let token = if flags & FLAG_TOKEN != 0 {
        let t: [u8; TOKEN_LEN] = array(plain, at).map_err(|_| DatagramError::Malformed)?;
        at += TOKEN_LEN;
        Some(t)
    } else {
        None
    };
    let payload = if flags & FLAG_PADDED != 0 {
        let len_bytes: [u8; 2] = array(plain, at).map_err(|_| DatagramError::Malformed)?;
        at += 2;
        let end = at + usize::from(u16::from_be_bytes(len_bytes));
        let padding = plain.get(end..).ok_or(DatagramError::Malformed)?;
        if padding.iter().any(|&b| b != 0) {
            return Err(DatagramError::Malformed);
        }
        at..end
    } else {
        at..plain.len().max(at)
    };
    Ok(Body { token, payload })
}

/// The `N` bytes of `s` from `at`.
fn array<const N: usize>(s: &[u8], at: usize) -> Result<[u8; N], DatagramError> {
    s.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or(DatagramError::Truncated)
}
