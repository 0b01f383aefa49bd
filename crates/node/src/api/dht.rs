//! One DHT API connection: frames in, typed requests to the DHT, replies out as they
//! complete (pipelined GETs are answered in completion order, each carrying its key).

use super::codec::{ApiCodec, FrameError};
use crate::dht::DhtHandle;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use voidmesh_proto::dht_api::PutSignedStatus;
use voidmesh_proto::DhtMessage;

/// GETs one connection may have in flight; more wait until one completes.
const MAX_GETS_IN_FLIGHT: usize = 1024;

/// Serves one API client until it disconnects, breaks the protocol, or `shutdown` fires.
pub async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    dht: DhtHandle,
    shutdown: CancellationToken,
) {
    let (read_half, write_half) = stream.into_split();
    let mut frames = FramedRead::with_capacity(read_half, ApiCodec, 8 * 1024);
    let (replies_tx, replies_rx) = mpsc::channel::<Bytes>(MAX_GETS_IN_FLIGHT);
    let writer = tokio::spawn(write_replies(write_half, replies_rx));
    let in_flight = Arc::new(Semaphore::new(MAX_GETS_IN_FLIGHT));

    let outcome = loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            frame = frames.next() => frame,
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
                answer_later(&in_flight, &replies_tx, async move {
                    match dht.get(key).await {
                        Ok(Some(value)) => DhtMessage::Success { key, value },
                        Ok(None) | Err(_) => DhtMessage::Failure { key },
                    }
                })
                .await;
            }
            Ok(DhtMessage::GetSigned { key }) => {
                let dht = dht.clone();
                answer_later(&in_flight, &replies_tx, async move {
                    match dht.get_signed(key).await {
                        Ok(Some(record)) => DhtMessage::SignedSuccess { key, record },
                        Ok(None) | Err(_) => DhtMessage::Failure { key },
                    }
                })
                .await;
            }
            Ok(DhtMessage::PutSigned {
                replication,
                record,
            }) => {
                let dht = dht.clone();
                answer_later(&in_flight, &replies_tx, async move {
                    let key = record.key();
                    let status = dht
                        .put_signed(record, replication)
                        .await
                        .unwrap_or(PutSignedStatus::NotStored);
                    DhtMessage::PutSignedResult { key, status }
                })
                .await;
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
            // The client finished sending: let its outstanding GETs answer, then close.
            drop(replies_tx);
            let _ = writer.await;
        }
        Err(reason) => {
            tracing::warn!(%peer, %reason, "closing DHT API connection");
            writer.abort();
        }
    }
}

/// Runs `reply` in its own task (at most [`MAX_GETS_IN_FLIGHT`] per connection; the
/// reader waits for a slot) and queues its answer for the writer.
async fn answer_later(
    in_flight: &Arc<Semaphore>,
    replies: &mpsc::Sender<Bytes>,
    reply: impl std::future::Future<Output = DhtMessage> + Send + 'static,
) {
    let Ok(permit) = in_flight.clone().acquire_owned().await else {
        return;
    };
    let replies = replies.clone();
    tokio::spawn(async move {
        if let Ok(bytes) = reply.await.encode() {
            let _ = replies.send(bytes).await;
        }
        drop(permit);
    });
}

/// Writes replies as they come, flushing whenever no further reply is queued.
async fn write_replies(mut socket: OwnedWriteHalf, mut replies: mpsc::Receiver<Bytes>) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    while let Some(reply) = replies.recv().await {
        buf.extend_from_slice(&reply);
        while buf.len() < 64 * 1024 {
            match replies.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
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
