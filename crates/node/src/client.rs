//! A small VoidPhone DHT API client over TCP, used by the testnet demo, the benchmarks
//! and the tests. It speaks the wire format exactly as any other client would.

use crate::api::codec::{ApiCodec, FrameError};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use voidmesh_proto::dht_api::EncodeError;
use voidmesh_proto::{DecodeError, DhtMessage, Key};

/// What went wrong talking to a DHT API.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Connecting or writing failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something that is not a valid frame.
    #[error("bad frame from server: {0}")]
    Frame(#[from] FrameError),
    /// The server sent a frame that is not a valid DHT reply.
    #[error("bad reply from server: {0}")]
    Decode(#[from] DecodeError),
    /// The request cannot be encoded (value too large).
    #[error("{0}")]
    Encode(#[from] EncodeError),
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// The server answered with a message that is not SUCCESS or FAILURE.
    #[error("unexpected message type {0}")]
    Unexpected(u16),
}

/// One connection to a DHT API.
pub struct DhtClient {
    framed: Framed<TcpStream, ApiCodec>,
}

impl DhtClient {
    /// Connects to `addr`.
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn connect(addr: SocketAddr) -> Result<DhtClient, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(DhtClient {
            framed: Framed::new(stream, ApiCodec),
        })
    }

    /// Sends a PUT (the API sends no reply).
    ///
    /// # Errors
    /// When the value is too large or the write fails.
    pub async fn put(
        &mut self,
        key: Key,
        value: Bytes,
        ttl: u16,
        replication: u8,
    ) -> Result<(), ClientError> {
        self.send(&DhtMessage::Put {
            ttl,
            replication,
            key,
            value,
        })
        .await
    }

    /// Sends a GET without waiting for its answer (for pipelining).
    ///
    /// # Errors
    /// When the write fails.
    pub async fn send_get(&mut self, key: Key) -> Result<(), ClientError> {
        self.send(&DhtMessage::Get { key }).await
    }

    /// Sends any message.
    ///
    /// # Errors
    /// When the message cannot be encoded or the write fails.
    pub async fn send(&mut self, msg: &DhtMessage) -> Result<(), ClientError> {
        self.framed.send(msg.encode()?).await?;
        Ok(())
    }

    /// Reads the next SUCCESS or FAILURE: `(key, Some(value))` or `(key, None)`.
    ///
    /// # Errors
    /// When the connection closes or the server sends something else.
    pub async fn recv(&mut self) -> Result<(Key, Option<Bytes>), ClientError> {
        let frame = self.framed.next().await.ok_or(ClientError::Closed)??;
        match DhtMessage::decode(&frame)? {
            DhtMessage::Success { key, value } => Ok((key, Some(value))),
            DhtMessage::Failure { key } => Ok((key, None)),
            other => Err(ClientError::Unexpected(other.msg_type())),
        }
    }

    /// GET and wait for its answer (on a connection with nothing else in flight).
    ///
    /// # Errors
    /// As [`DhtClient::recv`].
    pub async fn get(&mut self, key: Key) -> Result<Option<Bytes>, ClientError> {
        self.send_get(key).await?;
        let (got, value) = self.recv().await?;
        if got != key {
            return Err(ClientError::Unexpected(0));
        }
        Ok(value)
    }
}
