//! Small VoidPhone API clients (DHT and Gossip) over TCP, used by the testnet demo, the benchmarks
//! and the tests. It speaks the wire format exactly as any other client would.

use crate::api::codec::{ApiCodec, FrameError};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use voidmesh_proto::dht_api::EncodeError;
use voidmesh_proto::{DecodeError, DhtMessage, GossipApiMessage, Key};

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
        DhtClient::from_stream(TcpStream::connect(addr).await?)
    }

    /// A client on a connection already open.
    ///
    /// # Errors
    /// When the socket refuses `TCP_NODELAY`.
    pub fn from_stream(stream: TcpStream) -> Result<DhtClient, ClientError> {
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

    /// Reads the next message of any DHT type (for the signed-record extension replies).
    ///
    /// # Errors
    /// When the connection closes or the frame is not a DHT message.
    pub async fn recv_message(&mut self) -> Result<DhtMessage, ClientError> {
        let frame = self.framed.next().await.ok_or(ClientError::Closed)??;
        Ok(DhtMessage::decode(&frame)?)
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

/// One connection to a Gossip API.
pub struct GossipApiClient {
    framed: Framed<TcpStream, ApiCodec>,
}

/// A notification as a client receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedItem {
    /// The id to validate it with.
    pub message_id: u16,
    /// Its data type.
    pub data_type: u16,
    /// Its data.
    pub data: Bytes,
}

impl GossipApiClient {
    /// Connects to `addr`.
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn connect(addr: SocketAddr) -> Result<GossipApiClient, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(GossipApiClient {
            framed: Framed::new(stream, ApiCodec),
        })
    }

    async fn send(&mut self, msg: GossipApiMessage) -> Result<(), ClientError> {
        let bytes = msg
            .encode()
            .map_err(|_| ClientError::Unexpected(msg.msg_type()))?;
        self.framed.send(bytes).await?;
        Ok(())
    }

    /// GOSSIP NOTIFY for `data_type`.
    ///
    /// # Errors
    /// When the write fails.
    pub async fn notify(&mut self, data_type: u16) -> Result<(), ClientError> {
        self.send(GossipApiMessage::Notify { data_type }).await
    }

    /// GOSSIP ANNOUNCE.
    ///
    /// # Errors
    /// When the data is too large or the write fails.
    pub async fn announce(
        &mut self,
        ttl: u8,
        data_type: u16,
        data: Bytes,
    ) -> Result<(), ClientError> {
        self.send(GossipApiMessage::Announce {
            ttl,
            data_type,
            data,
        })
        .await
    }

    /// GOSSIP VALIDATION.
    ///
    /// # Errors
    /// When the write fails.
    pub async fn validate(&mut self, message_id: u16, valid: bool) -> Result<(), ClientError> {
        self.send(GossipApiMessage::Validation { message_id, valid })
            .await
    }

    /// The next GOSSIP NOTIFICATION.
    ///
    /// # Errors
    /// When the connection closes or the module sends something else.
    pub async fn recv(&mut self) -> Result<ReceivedItem, ClientError> {
        let frame = self.framed.next().await.ok_or(ClientError::Closed)??;
        match GossipApiMessage::decode(&frame)? {
            GossipApiMessage::Notification {
                message_id,
                data_type,
                data,
            } => Ok(ReceivedItem {
                message_id,
                data_type,
                data,
            }),
            other => Err(ClientError::Unexpected(other.msg_type())),
        }
    }
}
