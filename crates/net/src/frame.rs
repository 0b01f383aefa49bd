//! One peer frame per QUIC stream: `size u32 | type u16 | body`, then FIN.
//!
//! The reader trusts nothing: it reads the 6-byte header, refuses sizes below the header
//! or above the limit before allocating, reads exactly the rest into a buffer that grows
//! with the bytes received (never beyond the declared size), and then requires the end of
//! the stream.

use crate::NetError;
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use voidmesh_proto::frame::check_peer_frame;
use voidmesh_proto::{DecodeError, PEER_HEADER_LEN};

/// Buffer reserved up front for a frame; larger frames grow as their bytes arrive.
const INITIAL_CAPACITY: usize = 16 * 1024;

/// Stream and connection error codes sent to peers.
pub(crate) mod code {
    use quinn::VarInt;
    /// The endpoint is shutting down.
    pub(crate) const CLOSED: VarInt = VarInt::from_u32(0);
    /// The frame was refused: larger than the limit.
    pub(crate) const TOO_LARGE: VarInt = VarInt::from_u32(1);
    /// The frame was refused: not a valid frame.
    pub(crate) const MALFORMED: VarInt = VarInt::from_u32(2);
    /// The request was taken but dropped without a reply (or not answered in time).
    pub(crate) const NO_REPLY: VarInt = VarInt::from_u32(3);
    /// The peer's certificate gave no usable node id.
    pub(crate) const BAD_IDENTITY: VarInt = VarInt::from_u32(4);
    /// The connection was idle and closed to stay under the connection limit.
    pub(crate) const EVICTED: VarInt = VarInt::from_u32(5);
    /// The application asked to drop this peer (misbehaviour).
    pub(crate) const DISCONNECTED: VarInt = VarInt::from_u32(6);
}

/// Checks a frame we are about to send: at most `max` bytes, and its size field equal to
/// its length.
pub(crate) fn check_outgoing(message: &[u8], max: usize) -> Result<(), NetError> {
    if message.len() > max {
        return Err(NetError::MessageTooLarge {
            size: message.len(),
            max,
        });
    }
    match check_peer_frame(message, max) {
        Ok(Some(header)) if header.size == message.len() => Ok(()),
        Ok(Some(header)) => Err(NetError::Malformed(format!(
            "size field says {} bytes but the message has {}",
            header.size,
            message.len()
        ))),
        Ok(None) => Err(NetError::Malformed(format!(
            "a {}-byte message is shorter than its header or its size field",
            message.len()
        ))),
        Err(e) => Err(decode_error(e, max)),
    }
}

/// Maps a header check failure to the transport error.
fn decode_error(e: DecodeError, max: usize) -> NetError {
    match e {
        DecodeError::TooLarge(size) => NetError::MessageTooLarge { size, max },
        other => NetError::Malformed(other.to_string()),
    }
}

/// Reads the one frame of a stream, at most `max` bytes, and the stream's end.
///
/// # Errors
/// [`NetError::MessageTooLarge`] or [`NetError::Malformed`] for a bad header, a stream
/// ending early or bytes after the frame; [`NetError::ConnectionLost`],
/// [`NetError::NoReply`] or [`NetError::Stream`] when the stream breaks.
pub(crate) async fn read_frame(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<Bytes, NetError> {
    read_frame_counted(recv, max, None)
        .await
        .map(|(frame, _)| frame)
}

/// Like [`read_frame`], counting every byte received after the header against `budget`
/// (one permit a byte, waited for when the budget is spent): the bytes of frames still
/// arriving are bounded, and a stream holds only as much as its peer sent. The permits
/// come back with the frame; dropping them returns the bytes to the budget.
///
/// # Errors
/// As [`read_frame`]; [`NetError::Closed`] when the budget is closed.
pub(crate) async fn read_frame_counted(
    recv: &mut quinn::RecvStream,
    max: usize,
    budget: Option<&Arc<Semaphore>>,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), NetError> {
    let mut held: Option<OwnedSemaphorePermit> = None;
    let mut header = [0u8; PEER_HEADER_LEN];
    recv.read_exact(&mut header)
        .await
        .map_err(read_exact_error)?;
    let size = match check_peer_frame(&header, max) {
        Ok(Some(h)) => h.size,
        Ok(None) => u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize,
        Err(e) => return Err(decode_error(e, max)),
    };
    // Grow with the data that actually arrives: a peer declaring a large size and then
    // stalling costs us no more than it sent (small frames get one exact allocation).
    let mut frame = Vec::with_capacity(size.min(INITIAL_CAPACITY));
    frame.extend_from_slice(&header);
    while frame.len() < size {
        match recv
            .read_chunk(size - frame.len(), true)
            .await
            .map_err(read_error)?
        {
            Some(chunk) => {
                if let Some(budget) = budget {
                    let n = u32::try_from(chunk.bytes.len()).unwrap_or(u32::MAX);
                    let permit = budget
                        .clone()
                        .acquire_many_owned(n)
                        .await
                        .map_err(|_| NetError::Closed)?;
                    match held.as_mut() {
                        Some(held) => held.merge(permit),
                        None => held = Some(permit),
                    }
                }
                let needed = frame.len() + chunk.bytes.len();
                if needed > frame.capacity() {
                    // Double, but never past the declared size.
                    let target = (frame.capacity() * 2).clamp(needed, size);
                    frame.reserve_exact(target - frame.len());
                }
                frame.extend_from_slice(&chunk.bytes);
            }
            None => {
                return Err(NetError::Malformed(format!(
                    "stream ended after {} bytes, inside a {size}-byte frame",
                    frame.len()
                )))
            }
        }
    }
    match recv.read_chunk(1, true).await.map_err(read_error)? {
        None => Ok((Bytes::from(frame), held)),
        Some(_) => Err(NetError::Malformed(
            "bytes after the frame (one frame per stream)".to_owned(),
        )),
    }
}

/// Maps a failed exact read.
fn read_exact_error(e: quinn::ReadExactError) -> NetError {
    match e {
        quinn::ReadExactError::FinishedEarly(got) => {
            NetError::Malformed(format!("stream ended after {got} bytes, inside a frame"))
        }
        quinn::ReadExactError::ReadError(e) => read_error(e),
    }
}

/// Maps a failed read.
pub(crate) fn read_error(e: quinn::ReadError) -> NetError {
    match e {
        quinn::ReadError::Reset(c) if c == code::NO_REPLY => NetError::NoReply,
        quinn::ReadError::Reset(c) => {
            NetError::Stream(format!("reset by the peer ({})", describe(c)))
        }
        quinn::ReadError::ConnectionLost(e) => connection_lost(e),
        other => NetError::Stream(other.to_string()),
    }
}

/// Maps a failed write.
pub(crate) fn write_error(e: quinn::WriteError) -> NetError {
    match e {
        quinn::WriteError::Stopped(c) => {
            NetError::Stream(format!("stopped by the peer ({})", describe(c)))
        }
        quinn::WriteError::ConnectionLost(e) => connection_lost(e),
        other => NetError::Stream(other.to_string()),
    }
}

/// Maps the loss of a connection.
pub(crate) fn connection_lost(e: quinn::ConnectionError) -> NetError {
    match e {
        quinn::ConnectionError::LocallyClosed => NetError::Closed,
        other => NetError::ConnectionLost(other.to_string()),
    }
}

/// Human text for one of our stream error codes.
fn describe(c: quinn::VarInt) -> String {
    let what = match c {
        c if c == code::TOO_LARGE => "message too large",
        c if c == code::MALFORMED => "malformed message",
        c if c == code::NO_REPLY => "no reply",
        _ => "unknown code",
    };
    format!("code {c}: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(size_field: u32, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[..4].copy_from_slice(&size_field.to_be_bytes());
        f
    }

    #[test]
    fn outgoing_frame_must_match_its_size_field() {
        assert!(check_outgoing(&frame(10, 10), 100).is_ok());
        assert!(matches!(
            check_outgoing(&frame(11, 10), 100),
            Err(NetError::Malformed(_))
        ));
        assert!(matches!(
            check_outgoing(&frame(9, 10), 100),
            Err(NetError::Malformed(_))
        ));
    }

    #[test]
    fn outgoing_frame_below_header_or_above_limit_is_refused() {
        assert!(matches!(
            check_outgoing(&[0, 0, 0], 100),
            Err(NetError::Malformed(_))
        ));
        assert!(matches!(
            check_outgoing(&frame(3, 6), 100),
            Err(NetError::Malformed(_))
        ));
        assert!(matches!(
            check_outgoing(&frame(101, 101), 100),
            Err(NetError::MessageTooLarge {
                size: 101,
                max: 100
            })
        ));
    }
}
