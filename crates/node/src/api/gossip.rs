//! One Gossip API connection: NOTIFY / ANNOUNCE / VALIDATION in, NOTIFICATIONs out.

use super::codec::{ApiCodec, FrameError};
use super::server::Slot;
use crate::gossip::{GossipHandle, Notification};
use bytes::BytesMut;
use futures::StreamExt;
use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use voidmesh_proto::GossipApiMessage;

/// Serves one API client until it disconnects, breaks the protocol, or its slot's stop
/// token fires. Its registrations end with the connection (and nothing else does). A
/// connection counts as idle (may give its slot to a new client) until its first frame;
/// after that it may be a subscriber waiting for items, and keeps its slot.
pub async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    gossip: GossipHandle,
    slot: Slot,
) {
    let shutdown = slot.stop().clone();
    let Ok(mut client) = gossip.connect().await else {
        return;
    };
    let (read_half, write_half) = stream.into_split();
    let mut frames = FramedRead::with_capacity(read_half, ApiCodec, 8 * 1024);
    let (notes_tx, notes_rx) = mpsc::channel(crate::gossip::CLIENT_QUEUE);
    let writer = tokio::spawn(write_notifications(write_half, notes_rx));
    let outcome: Result<(), String> = loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            note = client.notifications.recv() => {
                match note {
                    Some(note) => {
                        if notes_tx.send(note).await.is_err() {
                            break Ok(());
                        }
                        continue;
                    }
                    None => break Ok(()),
                }
            }
            frame = frames.next() => frame,
        };
        let frame = match frame {
            None => break Ok(()),
            Some(Err(FrameError::Io(e))) => break Err(format!("read failed: {e}")),
            Some(Err(FrameError::Protocol(e))) => break Err(e.to_string()),
            Some(Ok(frame)) => frame,
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
    if let Err(reason) = outcome {
        tracing::warn!(%peer, %reason, "closing gossip API connection");
        writer.abort();
    } else {
        drop(notes_tx);
        let _ = writer.await;
    }
    // `client` drops here: its registrations end.
}

/// Writes notifications as they come, flushing when none is queued.
async fn write_notifications(mut socket: OwnedWriteHalf, mut notes: mpsc::Receiver<Notification>) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    while let Some(note) = notes.recv().await {
        let mut next = Some(note);
        while let Some(note) = next.take() {
            let msg = GossipApiMessage::Notification {
                message_id: note.message_id,
                data_type: note.data_type,
                data: note.data,
            };
            if msg.encode_into(&mut buf).is_err() {
                tracing::warn!("notification too large for the API; dropped");
            }
            if buf.len() < 64 * 1024 {
                next = notes.try_recv().ok();
            }
        }
        if socket.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
    let _ = socket.shutdown().await;
}
