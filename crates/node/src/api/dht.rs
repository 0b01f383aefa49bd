//! One DHT API connection: frames in, typed requests to the DHT, replies out as they
//! complete (pipelined GETs are answered in completion order, each carrying its key;
//! GETs this node answers alone are answered in order, at once).

use super::codec::{ApiCodec, FrameError};
use super::server::Slot;
use crate::dht::DhtHandle;
use bytes::{Buf, Bytes, BytesMut};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;
use voidmesh_proto::dht_api::PutSignedStatus;
use voidmesh_proto::DhtMessage;

use crate::config::ApiTimeouts;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// Requests needing the network one connection may have in flight; more wait until one
/// completes.
pub const MAX_GETS_IN_FLIGHT: usize = 256;

/// Requests needing the network all API connections of a DHT module together may have in
/// flight (each holds one permit of the module's [`GetPermits`]); beyond, connections
/// wait before reading more.
pub const MAX_GETS_IN_FLIGHT_TOTAL: usize = 8192;

/// The permits of [`MAX_GETS_IN_FLIGHT_TOTAL`], shared by a module's connections.
pub type GetPermits = std::sync::Arc<tokio::sync::Semaphore>;

/// A fresh set of permits for one DHT module.
pub fn get_permits() -> GetPermits {
    std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_GETS_IN_FLIGHT_TOTAL))
}

/// Reply bytes a connection queues for a client that does not read them before it stops
/// reading that client's requests.
const MAX_QUEUED_REPLY_BYTES: usize = 256 << 10;

/// An answer being worked out: a GET, GET SIGNED or PUT SIGNED waiting for the DHT.
type Pending = Pin<Box<dyn Future<Output = DhtMessage> + Send>>;

/// What one turn of a connection's loop brought.
enum Step {
    /// A frame from the client, or its end (`None`).
    Frame(Option<Result<Bytes, FrameError>>),
    /// An answer the DHT worked out.
    Reply(DhtMessage),
    /// Bytes of queued replies written to the socket (0 or an error: the client is gone).
    Wrote(std::io::Result<usize>),
    /// The server is shutting down.
    Shutdown,
    /// The client let its deadline pass (see [`ApiTimeouts`]).
    Deadline,
    /// A permit for one more request that needs the network (`None`: closed).
    Permit(Option<OwnedSemaphorePermit>),
}

/// Serves one API client until it disconnects, breaks the protocol, or its slot's stop
/// token fires (shutdown, or a new client took the slot while this one was idle).
///
/// One task reads frames, answers GETs this node answers alone straight into its write
/// buffer (no other task involved), drives the requests that need the network (at most
/// [`MAX_GETS_IN_FLIGHT`], polled side by side in a `FuturesUnordered`, no task per
/// request), and writes replies in completion order. Reading comes first, so a burst of
/// pipelined requests is answered with one write; a client that does not read its
/// replies stops being read once [`MAX_QUEUED_REPLY_BYTES`] wait for it.
pub async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    dht: DhtHandle,
    timeouts: ApiTimeouts,
    permits: GetPermits,
    slot: Slot,
) {
    let (read_half, mut write_half) = stream.into_split();
    let mut frames = FramedRead::with_capacity(read_half, ApiCodec, 8 * 1024);
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut pending: FuturesUnordered<Pending> = FuturesUnordered::new();
    // The permit the next request that needs the network takes.
    let mut spare: Option<OwnedSemaphorePermit> = permits.clone().try_acquire_owned().ok();
    let mut client_done = false;
    // When the client last completed a request, and since when a frame of its is only
    // partly here.
    let mut last_request = Instant::now();
    let mut partial_since: Option<Instant> = None;
    // One timer for the connection, moved only when its deadline moves by much (arming a
    // timer per request would cost every GET).
    let timer = tokio::time::sleep(timeouts.read);
    tokio::pin!(timer);
    // Created once: a fresh `cancelled()` per frame would register a waiter every time.
    let cancelled = slot.stop().cancelled();
    tokio::pin!(cancelled);

    let outcome: Result<(), String> = loop {
        let can_read = !client_done
            && spare.is_some()
            && pending.len() < MAX_GETS_IN_FLIGHT
            && out.len() < MAX_QUEUED_REPLY_BYTES;
        if client_done && pending.is_empty() && out.is_empty() {
            break Ok(());
        }
        // Bytes of a frame arrive without waking this loop (the codec reads on while the
        // frame is short), so it also wakes every read timeout to look for one.
        let now = Instant::now();
        let idle = pending.is_empty() && out.is_empty();
        slot.set_idle_since((idle && partial_since.is_none()).then_some(last_request));
        let deadline = match partial_since {
            Some(since) => since + timeouts.read,
            None if idle => (last_request + timeouts.idle).min(now + timeouts.read),
            None => now + timeouts.read,
        };
        let armed = timer.deadline();
        if deadline < armed || deadline > armed + timeouts.read / 4 {
            timer.as_mut().reset(deadline);
        }
        let step = tokio::select! {
            biased;
            _ = &mut cancelled => Step::Shutdown,
            frame = frames.next(), if can_read => Step::Frame(frame),
            Some(reply) = pending.next(), if !pending.is_empty() => Step::Reply(reply),
            written = write_half.write(&out), if !out.is_empty() => Step::Wrote(written),
            permit = permits.clone().acquire_owned(), if spare.is_none() => Step::Permit(permit.ok()),
            _ = &mut timer => Step::Deadline,
        };
        // A frame started but not finished keeps its first byte's time.
        if frames.read_buffer().is_empty() {
            partial_since = None;
        } else if partial_since.is_none() {
            partial_since = Some(Instant::now());
        }
        match step {
            Step::Shutdown => break Ok(()),
            Step::Frame(None) => client_done = true,
            Step::Frame(Some(Err(FrameError::Io(e)))) => break Err(format!("read failed: {e}")),
            Step::Frame(Some(Err(FrameError::Protocol(e)))) => break Err(e.to_string()),
            Step::Deadline => {
                let now = Instant::now();
                // Fired: it is re-armed at the top of the loop.
                timer.as_mut().reset(now + timeouts.read);
                if let Some(since) = partial_since {
                    if now >= since + timeouts.read {
                        break Err(format!(
                            "a frame took longer than {:?} to arrive",
                            timeouts.read
                        ));
                    }
                } else if pending.is_empty()
                    && out.is_empty()
                    && now >= last_request + timeouts.idle
                {
                    break Err(format!("idle for {:?}", timeouts.idle));
                }
            }
            Step::Frame(Some(Ok(frame))) => {
                last_request = Instant::now();
                match on_frame(&frame, &dht, &mut spare, &mut pending, &mut out).await {
                    Ok(true) => {}
                    Ok(false) => break Ok(()),
                    Err(reason) => break Err(reason),
                }
            }
            Step::Reply(reply) => encode_reply(&reply, &mut out),
            Step::Permit(Some(permit)) => spare = Some(permit),
            Step::Permit(None) => break Ok(()),
            Step::Wrote(Ok(n)) if n > 0 => out.advance(n),
            Step::Wrote(_) => break Ok(()),
        }
    };
    match outcome {
        Ok(()) => {
            let _ = write_half.write_all(&out).await;
            let _ = write_half.shutdown().await;
        }
        Err(reason) => tracing::warn!(%peer, %reason, "closing DHT API connection"),
    }
}

/// Handles one frame: answers it into `out`, or queues the work in `pending`. `Ok(false)`
/// when the DHT has stopped; `Err` when the client broke the protocol.
async fn on_frame(
    frame: &Bytes,
    dht: &DhtHandle,
    spare: &mut Option<OwnedSemaphorePermit>,
    pending: &mut FuturesUnordered<Pending>,
    out: &mut BytesMut,
) -> Result<bool, String> {
    // Taken by a request that goes to the network, held until it is answered.
    let mut permit = || spare.take();
    match DhtMessage::decode(frame) {
        Ok(DhtMessage::Put {
            ttl,
            replication,
            key,
            value,
        }) => {
            let ttl = Duration::from_secs(u64::from(ttl));
            Ok(dht.put_detached(key, value, ttl, replication).await.is_ok())
        }
        Ok(DhtMessage::Get { key }) => {
            match dht.get_now(&key) {
                Some(value) => encode_reply(&DhtMessage::Success { key, value }, out),
                None => {
                    let dht = dht.clone();
                    let permit = permit();
                    pending.push(Box::pin(async move {
                        let _permit = permit;
                        match dht.get(key).await {
                            Ok(Some(value)) => DhtMessage::Success { key, value },
                            Ok(None) | Err(_) => DhtMessage::Failure { key },
                        }
                    }));
                }
            }
            Ok(true)
        }
        Ok(DhtMessage::GetSigned { key }) => {
            let dht = dht.clone();
            let permit = permit();
            pending.push(Box::pin(async move {
                let _permit = permit;
                match dht.get_signed(key).await {
                    Ok(Some(record)) => DhtMessage::SignedSuccess { key, record },
                    Ok(None) | Err(_) => DhtMessage::Failure { key },
                }
            }));
            Ok(true)
        }
        Ok(DhtMessage::PutSigned {
            replication,
            record,
        }) => {
            let dht = dht.clone();
            let permit = permit();
            pending.push(Box::pin(async move {
                let _permit = permit;
                let key = record.key();
                let status = dht
                    .put_signed(record, replication)
                    .await
                    .unwrap_or(PutSignedStatus::NotStored);
                DhtMessage::PutSignedResult { key, status }
            }));
            Ok(true)
        }
        Ok(other) => Err(format!(
            "message type {} may not be sent by a client",
            other.msg_type()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Appends `reply`'s frame to `buf`; a reply that cannot be encoded is logged and left out.
fn encode_reply(reply: &DhtMessage, buf: &mut BytesMut) {
    let len = buf.len();
    if let Err(e) = reply.encode_into(buf) {
        buf.truncate(len);
        tracing::warn!(error = %e, "reply could not be encoded");
    }
}
