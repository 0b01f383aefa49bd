//! One DHT API connection: frames in, typed requests to the DHT, replies out as they
//! complete (pipelined GETs are answered in completion order, each carrying its key).

use super::codec::{ApiCodec, FrameError};
use crate::dht::DhtHandle;
use bytes::BytesMut;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use voidmesh_proto::dht_api::PutSignedStatus;
use voidmesh_proto::DhtMessage;

/// GETs one connection may have in flight; more wait until one completes.
const MAX_GETS_IN_FLIGHT: usize = 1024;

/// An answer being worked out: a GET, GET SIGNED or PUT SIGNED waiting for the DHT.
type Pending = Pin<Box<dyn Future<Output = DhtMessage> + Send>>;

/// Serves one API client until it disconnects, breaks the protocol, or `shutdown` fires.
///
/// One task reads frames and drives the connection's outstanding requests (at most
/// [`MAX_GETS_IN_FLIGHT`], polled side by side in a `FuturesUnordered`, no task per
/// request); a second task writes the replies in completion order, so a client that
/// reads slowly does not stop this one from reading.
pub async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    dht: DhtHandle,
    shutdown: CancellationToken,
) {
    let (read_half, write_half) = stream.into_split();
    let mut frames = FramedRead::with_capacity(read_half, ApiCodec, 8 * 1024);
    let (replies_tx, replies_rx) = mpsc::channel::<DhtMessage>(MAX_GETS_IN_FLIGHT);
    let writer = tokio::spawn(write_replies(write_half, replies_rx));
    let mut pending: FuturesUnordered<Pending> = FuturesUnordered::new();
    // Created once: a fresh `cancelled()` per frame would register a waiter every time.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);

    let outcome = loop {
        let frame = tokio::select! {
            biased;
            _ = &mut cancelled => break Ok(()),
            Some(reply) = pending.next(), if !pending.is_empty() => {
                if !queue_reply(&replies_tx, reply).await {
                    break Ok(());
                }
                continue;
            }
            frame = frames.next(), if pending.len() < MAX_GETS_IN_FLIGHT => frame,
        };
        let frame = match frame {
            None => break Ok(()),
            Some(Err(FrameError::Io(e))) => break Err(format!("read failed: {e}")),
            Some(Err(FrameError::Protocol(e))) => break Err(e.to_string()),
            Some(Ok(frame)) => frame,
        };
        match DhtMessage::decode(&frame) {
            Ok(DhtMessage::Put {
                ttl,
                replication,
                key,
                value,
            }) => {
                let ttl = Duration::from_secs(u64::from(ttl));
                if dht
                    .put_detached(key, value, ttl, replication)
                    .await
                    .is_err()
                {
                    break Ok(());
                }
            }
            Ok(DhtMessage::Get { key }) => {
                let dht = dht.clone();
                pending.push(Box::pin(async move {
                    match dht.get(key).await {
                        Ok(Some(value)) => DhtMessage::Success { key, value },
                        Ok(None) | Err(_) => DhtMessage::Failure { key },
                    }
                }));
            }
            Ok(DhtMessage::GetSigned { key }) => {
                let dht = dht.clone();
                pending.push(Box::pin(async move {
                    match dht.get_signed(key).await {
                        Ok(Some(record)) => DhtMessage::SignedSuccess { key, record },
                        Ok(None) | Err(_) => DhtMessage::Failure { key },
                    }
                }));
            }
            Ok(DhtMessage::PutSigned {
                replication,
                record,
            }) => {
                let dht = dht.clone();
                pending.push(Box::pin(async move {
                    let key = record.key();
                    let status = dht
                        .put_signed(record, replication)
                        .await
                        .unwrap_or(PutSignedStatus::NotStored);
                    DhtMessage::PutSignedResult { key, status }
                }));
            }
            Ok(other) => {
                break Err(format!(
                    "message type {} may not be sent by a client",
                    other.msg_type()
                ))
            }
            Err(e) => break Err(e.to_string()),
        }
    };
    match outcome {
        Ok(()) => {
            // The client finished sending: let its outstanding requests answer, then close.
            while let Some(reply) = pending.next().await {
                if !queue_reply(&replies_tx, reply).await {
                    break;
                }
            }
            drop(replies_tx);
            let _ = writer.await;
        }
        Err(reason) => {
            tracing::warn!(%peer, %reason, "closing DHT API connection");
            writer.abort();
        }
    }
}

/// Queues `reply` for the writer; false once the writer is gone.
async fn queue_reply(replies: &mpsc::Sender<DhtMessage>, reply: DhtMessage) -> bool {
    replies.send(reply).await.is_ok()
}

/// Writes replies as they come, encoding each straight into the write buffer and
/// flushing whenever no further reply is queued.
async fn write_replies(mut socket: OwnedWriteHalf, mut replies: mpsc::Receiver<DhtMessage>) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    while let Some(reply) = replies.recv().await {
        encode_reply(&reply, &mut buf);
        while buf.len() < 64 * 1024 {
            match replies.try_recv() {
                Ok(more) => encode_reply(&more, &mut buf),
                Err(_) => break,
            }
        }
        if socket.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
    let _ = socket.shutdown().await;
}

/// Appends `reply`'s frame to `buf`; a reply that cannot be encoded is logged and left out.
fn encode_reply(reply: &DhtMessage, buf: &mut BytesMut) {
    let len = buf.len();
    if let Err(e) = reply.encode_into(buf) {
        buf.truncate(len);
        tracing::warn!(error = %e, "reply could not be encoded");
    }
}
