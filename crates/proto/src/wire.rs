//! A bounds-checked reader over a message body, shared by the decoders.

use crate::frame::DecodeError;
use crate::id::Key;
use bytes::{BufMut, Bytes, BytesMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Reads big-endian fields from a frame body; every read checks the remaining length.
pub struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading `buf` at `pos` (usually just after the header).
    pub fn new(buf: &'a Bytes, pos: usize) -> Self {
        Reader { buf, pos }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(DecodeError::Truncated(field))?;
        let slice = self
            .buf
            .get(self.pos..end)
            .ok_or(DecodeError::Truncated(field))?;
        self.pos = end;
        Ok(slice)
    }

    /// Reads one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    /// Reads a big-endian u16.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Reads a big-endian u32.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a big-endian u64.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Reads `N` raw bytes.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let b = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    /// Reads `n` bytes, without copying.
    pub fn bytes(&mut self, n: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        self.take(n, field)?;
        Ok(self.buf.slice(start..self.pos))
    }

    /// Reads a socket address: `family u8 (4 or 6) | ip [4 or 16] | port u16`.
    ///
    /// # Errors
    /// [`DecodeError::BadField`] for another family, or a truncated address.
    pub fn socket_addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let ip = match self.u8("address family")? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>("ipv4")?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>("ipv6")?)),
            _ => return Err(DecodeError::BadField("address family")),
        };
        Ok(SocketAddr::new(ip, self.u16("port")?))
    }

    /// Reads a 32-byte key or node id.
    pub fn key(&mut self, field: &'static str) -> Result<Key, DecodeError> {
        Ok(Key(self.array::<32>(field)?))
    }

    /// Takes everything that is left, without copying.
    pub fn rest(&mut self) -> Bytes {
        let rest = self.buf.slice(self.pos.min(self.buf.len())..);
        self.pos = self.buf.len();
        rest
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Fails if any byte is left unread: a message must not carry trailing garbage.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.remaining()))
        }
    }
}

/// Appends a socket address as [`Reader::socket_addr`] reads it.
pub fn put_socket_addr(buf: &mut BytesMut, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            buf.put_u8(4);
            buf.put_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            buf.put_u8(6);
            buf.put_slice(&ip.octets());
        }
    }
    buf.put_u16(addr.port());
}
