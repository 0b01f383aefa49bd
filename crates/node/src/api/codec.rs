//! Size-prefixed API framing (`size u16 | type u16 | body`) as a tokio-util codec.
//!
//! The decoder only cuts frames; turning a frame into a typed message is the handler's
//! job, so the same codec serves the DHT and the gossip API.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};
use voidmesh_proto::frame::check_api_frame;
use voidmesh_proto::DecodeError;

/// Why reading from an API connection stopped.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes cannot be a valid frame.
    #[error("protocol error: {0}")]
    Protocol(#[from] DecodeError),
}

/// Cuts whole API frames out of a byte stream; writes encoded frames as they are.
#[derive(Debug, Default, Clone, Copy)]
pub struct ApiCodec;

impl Decoder for ApiCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match check_api_frame(src)? {
            Some(header) => Ok(Some(src.split_to(header.size).freeze())),
            None => {
                // Reserve for the rest of the frame so it arrives in as few reads as possible.
                if src.len() >= 2 {
                    let size = u16::from_be_bytes([src[0], src[1]]) as usize;
                    src.reserve(size.saturating_sub(src.len()));
                }
                Ok(None)
            }
        }
    }
}

impl Encoder<Bytes> for ApiCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        dst.extend_from_slice(&item);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_reads_are_joined() {
        let mut codec = ApiCodec;
        let mut buf = BytesMut::from(&[0u8, 36, 2, 139][..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&[1; 32]);
        buf.extend_from_slice(&[0, 36]);
        let frame = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.len(), 36);
        assert_eq!(&buf[..], &[0, 36]);
    }

    #[test]
    fn size_below_header_is_a_protocol_error() {
        let mut buf = BytesMut::from(&[0u8, 2, 2, 139][..]);
        assert!(matches!(
            ApiCodec.decode(&mut buf),
            Err(FrameError::Protocol(_))
        ));
    }
}
