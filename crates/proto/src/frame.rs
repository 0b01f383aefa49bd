//! Message headers: check that a whole frame is there before parsing it.
//!
//! # Format
//! API messages (VoidPhone spec):  `size u16 | type u16 | body`, size counts the header.
//! Peer messages (docs/protocol.md): `size u32 | type u16 | body`, size counts the header.
//! Peer frames use a 32-bit size because a STORE must carry a full 65 495-byte API value
//! plus its metadata, which does not fit under a 16-bit size.

use thiserror::Error;

/// Bytes in an API message header (`size u16 | type u16`).
pub const API_HEADER_LEN: usize = 4;
/// Bytes in a peer message header (`size u32 | type u16`).
pub const PEER_HEADER_LEN: usize = 6;
/// Largest peer message a node accepts, header included.
pub const MAX_PEER_MESSAGE: usize = 128 * 1024;

/// Why a byte string is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The size field is smaller than the header itself.
    #[error("size field {0} is smaller than the header")]
    SizeBelowHeader(usize),
    /// The size field does not match the number of bytes in the frame.
    #[error("size field says {declared} bytes but the frame has {actual}")]
    SizeMismatch {
        /// What the header claims.
        declared: usize,
        /// What was handed to the decoder.
        actual: usize,
    },
    /// The size is not allowed for this message type (e.g. a GET that is not 36 bytes).
    #[error("message type {msg_type} cannot be {size} bytes long")]
    BadLength {
        /// The message type.
        msg_type: u16,
        /// The size found.
        size: usize,
    },
    /// A peer frame larger than [`MAX_PEER_MESSAGE`].
    #[error("message of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// A type number this decoder does not know.
    #[error("unknown message type {0}")]
    UnknownType(u16),
    /// A field runs past the end of the frame.
    #[error("truncated field `{0}`")]
    Truncated(&'static str),
    /// Bytes left over after the last field.
    #[error("{0} trailing bytes after the last field")]
    TrailingBytes(usize),
    /// A field holds a value outside its range.
    #[error("invalid field `{0}`")]
    BadField(&'static str),
}

/// Header of a frame found complete in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Length of the whole frame, header included.
    pub size: usize,
    /// The message type.
    pub msg_type: u16,
}

/// Looks at the start of `buf` for an API frame.
///
/// # Returns
/// `Ok(None)` if more bytes are needed, `Ok(Some(header))` when `buf` holds at least one
/// whole frame of `header.size` bytes.
///
/// # Errors
/// [`DecodeError::SizeBelowHeader`] when the size field cannot be valid.
pub fn check_api_frame(buf: &[u8]) -> Result<Option<Header>, DecodeError> {
    if buf.len() < API_HEADER_LEN {
        return Ok(None);
    }
    let size = u16::from_be_bytes([buf[0], buf[1]]) as usize;
    let msg_type = u16::from_be_bytes([buf[2], buf[3]]);
    if size < API_HEADER_LEN {
        return Err(DecodeError::SizeBelowHeader(size));
    }
    if buf.len() < size {
        return Ok(None);
    }
    Ok(Some(Header { size, msg_type }))
}

/// Like [`check_api_frame`], for peer frames (`size u32 | type u16`).
///
/// # Errors
/// [`DecodeError::SizeBelowHeader`] or [`DecodeError::TooLarge`] (above `max`).
pub fn check_peer_frame(buf: &[u8], max: usize) -> Result<Option<Header>, DecodeError> {
    if buf.len() < PEER_HEADER_LEN {
        return Ok(None);
    }
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let msg_type = u16::from_be_bytes([buf[4], buf[5]]);
    if size < PEER_HEADER_LEN {
        return Err(DecodeError::SizeBelowHeader(size));
    }
    if size > max {
        return Err(DecodeError::TooLarge(size));
    }
    if buf.len() < size {
        return Ok(None);
    }
    Ok(Some(Header { size, msg_type }))
}

/// The message type of a peer frame, read from its header alone (`None` if shorter than
/// a header). What a socket shared by several modules sorts requests by.
pub fn peer_frame_type(frame: &[u8]) -> Option<u16> {
    frame
        .get(4..PEER_HEADER_LEN)
        .map(|t| u16::from_be_bytes([t[0], t[1]]))
}

/// Checks that `frame` is exactly one whole API frame and returns its header.
pub(crate) fn exact_api_frame(frame: &[u8]) -> Result<Header, DecodeError> {
    let header = check_api_frame(frame)?.ok_or(DecodeError::Truncated("header"))?;
    if header.size != frame.len() {
        return Err(DecodeError::SizeMismatch {
            declared: header.size,
            actual: frame.len(),
        });
    }
    Ok(header)
}

/// Checks that `frame` is exactly one whole peer frame and returns its header.
pub(crate) fn exact_peer_frame(frame: &[u8]) -> Result<Header, DecodeError> {
    let header =
        check_peer_frame(frame, MAX_PEER_MESSAGE)?.ok_or(DecodeError::Truncated("header"))?;
    if header.size != frame.len() {
        return Err(DecodeError::SizeMismatch {
            declared: header.size,
            actual: frame.len(),
        });
    }
    Ok(header)
}

/// Writes an API header for a frame of `size` bytes.
pub(crate) fn put_api_header(buf: &mut bytes::BytesMut, size: usize, msg_type: u16) {
    use bytes::BufMut;
    debug_assert!(size <= u16::MAX as usize);
    buf.put_u16(size as u16);
    buf.put_u16(msg_type);
}

/// Writes a peer header for a frame of `size` bytes.
pub(crate) fn put_peer_header(buf: &mut bytes::BytesMut, size: usize, msg_type: u16) {
    use bytes::BufMut;
    buf.put_u32(size as u32);
    buf.put_u16(msg_type);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_header_needs_more() {
        assert_eq!(check_api_frame(&[0, 36, 2]), Ok(None));
    }

    #[test]
    fn size_below_header_is_an_error() {
        assert_eq!(
            check_api_frame(&[0, 3, 2, 139]),
            Err(DecodeError::SizeBelowHeader(3))
        );
    }

    #[test]
    fn incomplete_body_needs_more() {
        assert_eq!(check_api_frame(&[0, 36, 2, 139, 0, 0]), Ok(None));
    }

    #[test]
    fn oversized_peer_frame_is_refused_before_buffering() {
        let big = (MAX_PEER_MESSAGE as u32 + 1).to_be_bytes();
        let buf = [big[0], big[1], big[2], big[3], 2, 148];
        assert!(matches!(
            check_peer_frame(&buf, MAX_PEER_MESSAGE),
            Err(DecodeError::TooLarge(_))
        ));
    }
}
