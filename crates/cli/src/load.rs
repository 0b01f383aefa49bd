//! The one load client of `voidmesh bench api`, speaking either the VoidPhone DHT API or
//! redis' RESP with the same code, so voidmesh and redis-server are measured by the same
//! client: per connection, `pipeline` GETs written in one system call, replies read as
//! they come, a new GET sent for each reply.

use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use voidmesh_proto::dht_api::{DHT_FAILURE, DHT_SUCCESS};
use voidmesh_proto::{DhtMessage, Key};

/// Which protocol the load client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// The VoidPhone DHT API (voidmesh).
    Voidphone,
    /// RESP, redis' protocol: GET and SET ... EX (redis-server).
    Resp,
}

/// What the server answered to one GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A value.
    Found,
    /// Nothing under the key.
    Missing,
}

impl Protocol {
    /// Appends a GET of `key` to `buf`.
    pub fn encode_get(self, key: &Key, buf: &mut BytesMut) -> Result<()> {
        match self {
            Protocol::Voidphone => DhtMessage::Get { key: *key }.encode_into(buf)?,
            Protocol::Resp => resp_command(buf, &[b"GET", &key.0]),
        }
        Ok(())
    }

    /// Appends a store of `value` under `key` for `ttl_secs` to `buf`.
    pub fn encode_put(
        self,
        key: &Key,
        value: &Bytes,
        ttl_secs: u16,
        buf: &mut BytesMut,
    ) -> Result<()> {
        match self {
            Protocol::Voidphone => DhtMessage::Put {
                ttl: ttl_secs,
                replication: 1,
                key: *key,
                value: value.clone(),
            }
            .encode_into(buf)?,
            Protocol::Resp => {
                let ttl = ttl_secs.to_string();
                resp_command(buf, &[b"SET", &key.0, value, b"EX", ttl.as_bytes()]);
            }
        }
        Ok(())
    }

    /// Whether a store is answered (RESP `+OK`; a VoidPhone PUT has no reply).
    pub fn put_is_answered(self) -> bool {
        self == Protocol::Resp
    }

    /// Takes one whole reply off the front of `buf`: `Some(answer)` for a GET's reply,
    /// `Some(Found)` for a store's `+OK`; `None` if more bytes are needed.
    pub fn take_reply(self, buf: &mut BytesMut) -> Result<Option<Answer>> {
        match self {
            Protocol::Voidphone => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                let size = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                let kind = u16::from_be_bytes([buf[2], buf[3]]);
                if size < 4 {
                    bail!("malformed frame size {size}");
                }
                if buf.len() < size {
                    return Ok(None);
                }
                buf.advance(size);
                match kind {
                    DHT_SUCCESS => Ok(Some(Answer::Found)),
                    DHT_FAILURE => Ok(Some(Answer::Missing)),
                    other => bail!("unexpected reply type {other}"),
                }
            }
            Protocol::Resp => take_resp_reply(buf),
        }
    }
}

/// Appends a RESP array of bulk strings.
fn resp_command(buf: &mut BytesMut, parts: &[&[u8]]) {
    buf.put_slice(format!("*{}\r\n", parts.len()).as_bytes());
    for part in parts {
        buf.put_slice(format!("${}\r\n", part.len()).as_bytes());
        buf.put_slice(part);
        buf.put_slice(b"\r\n");
    }
}

/// One RESP reply: a bulk string (`$n\r\n...\r\n`, `$-1\r\n` for nil) or a status line.
fn take_resp_reply(buf: &mut BytesMut) -> Result<Option<Answer>> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[1..eol]).context("RESP header")?;
    match buf.first() {
        Some(b'+') => {
            buf.advance(eol + 2);
            Ok(Some(Answer::Found))
        }
        Some(b'-') => bail!("server error: {line}"),
        Some(b'$') => {
            let len: i64 = line.parse().context("RESP bulk length")?;
            if len < 0 {
                buf.advance(eol + 2);
                return Ok(Some(Answer::Missing));
            }
            let total = eol + 2 + len as usize + 2;
            if buf.len() < total {
                return Ok(None);
            }
            buf.advance(total);
            Ok(Some(Answer::Found))
        }
        _ => bail!("unexpected RESP reply {:?}", &buf[..eol]),
    }
}

/// A load connection's socket with its buffers.
pub struct Conn {
    protocol: Protocol,
    stream: TcpStream,
    read: BytesMut,
    write: BytesMut,
}

impl Conn {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr, protocol: Protocol) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            protocol,
            stream,
            read: BytesMut::with_capacity(64 * 1024),
            write: BytesMut::with_capacity(16 * 1024),
        })
    }

    /// Stores every key (pipelined, 256 at a time), then makes sure the last is readable.
    pub async fn preload(&mut self, keys: &[Key], value: &Bytes) -> Result<()> {
        for chunk in keys.chunks(256) {
            for key in chunk {
                self.protocol
                    .encode_put(key, value, 3600, &mut self.write)?;
            }
            self.flush().await?;
            if self.protocol.put_is_answered() {
                for _ in chunk {
                    self.next_reply().await?;
                }
            }
        }
        let last = keys.last().context("no keys")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.protocol.encode_get(last, &mut self.write)?;
            self.flush().await?;
            if self.next_reply().await? == Answer::Found {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "preload never became readable");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn flush(&mut self) -> Result<()> {
        self.stream.write_all(&self.write).await?;
        self.write.clear();
        Ok(())
    }

    async fn next_reply(&mut self) -> Result<Answer> {
        loop {
            if let Some(answer) = self.protocol.take_reply(&mut self.read)? {
                return Ok(answer);
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                bail!("server closed the connection");
            }
        }
    }

    /// GETs of keys drawn by `next_key`, `pipeline` in flight, until `until`; calls
    /// `record(latency, answer)` for each reply. Replies are matched to requests in
    /// order (both servers answer a connection's GETs of held keys in order).
    pub async fn run_gets(
        &mut self,
        pipeline: usize,
        until: Instant,
        mut next_key: impl FnMut() -> Key,
        mut record: impl FnMut(Duration, Answer) -> Result<()>,
    ) -> Result<()> {
        let mut sent: VecDeque<Instant> = VecDeque::with_capacity(pipeline);
        loop {
            let now = Instant::now();
            if now < until {
                while sent.len() < pipeline {
                    self.protocol.encode_get(&next_key(), &mut self.write)?;
                    sent.push_back(now);
                }
                self.flush().await?;
            }
            if sent.is_empty() {
                return Ok(());
            }
            let answer = self.next_reply().await?;
            let at = sent.pop_front().context("reply without a request")?;
            record(at.elapsed(), answer)?;
            // Take every reply already read before writing the next batch.
            while !sent.is_empty() {
                match self.protocol.take_reply(&mut self.read)? {
                    Some(answer) => {
                        let at = sent.pop_front().context("reply without a request")?;
                        record(at.elapsed(), answer)?;
                    }
                    None => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_replies_are_cut_whole() {
        let mut buf = BytesMut::from(&b"$3\r\nabc\r\n$-1\r\n+OK\r\n$5\r\nab"[..]);
        let p = Protocol::Resp;
        assert_eq!(p.take_reply(&mut buf).unwrap(), Some(Answer::Found));
        assert_eq!(p.take_reply(&mut buf).unwrap(), Some(Answer::Missing));
        assert_eq!(p.take_reply(&mut buf).unwrap(), Some(Answer::Found));
        assert_eq!(
            p.take_reply(&mut buf).unwrap(),
            None,
            "incomplete bulk string"
        );
        assert!(Protocol::Resp
            .take_reply(&mut BytesMut::from(&b"-ERR no\r\n"[..]))
            .is_err());
    }

    #[test]
    fn voidphone_replies_are_cut_whole() {
        let key = Key([1; 32]);
        let mut buf = BytesMut::new();
        DhtMessage::Success {
            key,
            value: Bytes::from_static(b"v"),
        }
        .encode_into(&mut buf)
        .unwrap();
        DhtMessage::Failure { key }.encode_into(&mut buf).unwrap();
        let p = Protocol::Voidphone;
        assert_eq!(p.take_reply(&mut buf).unwrap(), Some(Answer::Found));
        assert_eq!(p.take_reply(&mut buf).unwrap(), Some(Answer::Missing));
        assert_eq!(p.take_reply(&mut buf).unwrap(), None);
    }

    #[test]
    fn resp_get_is_an_array_of_bulk_strings() {
        let mut buf = BytesMut::new();
        Protocol::Resp
            .encode_get(&Key([b'k'; 32]), &mut buf)
            .unwrap();
        let expected = format!("*2\r\n$3\r\nGET\r\n$32\r\n{}\r\n", "k".repeat(32));
        assert_eq!(&buf[..], expected.as_bytes());
    }
}
