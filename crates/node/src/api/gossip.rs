//! One Gossip API connection: NOTIFY / ANNOUNCE / VALIDATION in, NOTIFICATIONs out.

use super::codec::{ApiCodec, FrameError};
use super::server::Slot;
use crate::gossip::{GossipHandle, Notification};
use bytes::{Buf, BytesMut};
use futures::StreamExt;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use voidmesh_proto::GossipApiMessage;

/// What one turn of a connection's loop brought.
enum Step {
    Stop,
    Frame(Option<Result<bytes::Bytes, FrameError>>),
    Note(Option<Notification>),
    Wrote(std::io::Result<usize>),
    Deadline,
}

/// Serves one API client until it disconnects, breaks the protocol, or its slot's stop
/// token fires. Its registrations end with the connection (and nothing else does). A
/// connection counts as idle (may give its slot to a new client) until its first frame;
/// after that it may be a subscriber waiting for items, and keeps its slot.
///
/// One task reads frames, takes notifications into a write buffer and writes it. Item
/// bytes count as waiting for this client until they are on the socket, so a client that
/// stops reading is dropped by the module past [`crate::gossip::CLIENT_QUEUE_BYTES`]; a
/// frame whose first bytes arrived must be complete within `read_timeout`.
pub async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    gossip: GossipHandle,
    read_timeout: Duration,
    slot: Slot,
) {
    let Ok(mut client) = gossip.connect().await else {
        return;
    };
    let (read_half, mut write_half) = stream.into_split();
    let mut frames = FramedRead::with_capacity(read_half, ApiCodec, 8 * 1024);
    let mut out = BytesMut::with_capacity(16 * 1024);
    // Item bytes in `out` not yet written.
    let mut held = 0usize;
    let mut partial_since: Option<Instant> = None;
    let timer = tokio::time::sleep(read_timeout);
    tokio::pin!(timer);
    let cancelled = slot.stop().cancelled();
    tokio::pin!(cancelled);
    let outcome: Result<(), String> = loop {
        let deadline = partial_since.unwrap_or_else(Instant::now) + read_timeout;
        if deadline < timer.deadline() || deadline > timer.deadline() + read_timeout / 4 {
            timer.as_mut().reset(deadline);
        }
        let step = tokio::select! {
            biased;
            _ = &mut cancelled => Step::Stop,
            note = client.notifications.recv_held() => Step::Note(note),
            frame = frames.next() => Step::Frame(frame),
            written = write_half.write(&out), if !out.is_empty() => Step::Wrote(written),
            _ = &mut timer => Step::Deadline,
        };
        if frames.read_buffer().is_empty() {
            partial_since = None;
        } else if partial_since.is_none() {
            partial_since = Some(Instant::now());
        }
        let frame = match step {
            Step::Stop => break Ok(()),
            Step::Note(None) => {
                break Err("the module stopped serving it (it did not read its \
                           notifications, or the module is shutting down)"
                    .into())
            }
            Step::Note(Some(note)) => {
                held += note.data.len();
                let msg = GossipApiMessage::Notification {
                    message_id: note.message_id,
                    data_type: note.data_type,
                    data: note.data,
                };
                if msg.encode_into(&mut out).is_err() {
                    tracing::warn!("notification too large for the API; dropped");
                }
                continue;
            }
            Step::Wrote(Ok(n)) if n > 0 => {
                out.advance(n);
                if out.is_empty() {
                    client.notifications.release(held);
                    held = 0;
                }
                continue;
            }
            Step::Wrote(_) => break Ok(()),
            Step::Deadline => {
                timer.as_mut().reset(Instant::now() + read_timeout);
                match partial_since {
                    Some(since) if since.elapsed() >= read_timeout => {
                        break Err(format!(
                            "a frame took longer than {read_timeout:?} to arrive"
                        ))
                    }
                    _ => continue,
                }
            }
            Step::Frame(None) => break Ok(()),
            Step::Frame(Some(Err(FrameError::Io(e)))) => break Err(format!("read failed: {e}")),
            Step::Frame(Some(Err(FrameError::Protocol(e)))) => break Err(e.to_string()),
            Step::Frame(Some(Ok(frame))) => frame,
        };
        slot.set_idle_since(None);
        let sent = match GossipApiMessage::decode(&frame) {
            Ok(GossipApiMessage::Notify { data_type }) => client.notify(data_type).await,
            Ok(GossipApiMessage::Announce {
                ttl,
                data_type,
                data,
            }) => client.announce(ttl, data_type, data).await,
            Ok(GossipApiMessage::Validation { message_id, valid }) => {
                client.validate(message_id, valid).await
            }
            Ok(GossipApiMessage::Notification { .. }) => {
                break Err("GOSSIP NOTIFICATION may not be sent by a client".into())
            }
            Err(e) => break Err(e.to_string()),
        };
        if sent.is_err() {
            break Ok(());
        }
    };
    match outcome {
        Ok(()) => {
            let _ = write_half.write_all(&out).await;
            let _ = write_half.shutdown().await;
        }
        Err(reason) => tracing::warn!(%peer, %reason, "closing gossip API connection"),
    }
    // `client` drops here: its registrations end.
}
