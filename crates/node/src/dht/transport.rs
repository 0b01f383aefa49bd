//! How the DHT's peer messages travel: one authenticated datagram each way when they fit
//! (nearly all do: PING, FIND_NODE, FIND_VALUE, small STOREs), a QUIC stream on the same
//! UDP port when they do not (a STORE or FIND_VALUE reply with a large value).
//!
//! A request that does not fit a datagram goes over QUIC at once. A datagram request
//! whose reply would not fit is answered with ERROR 413
//! ([`ERROR_TOO_LARGE_FOR_DATAGRAM`]), and the requester asks again over QUIC: the large
//! case costs one extra round trip, the common case none.

use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use voidmesh_kad::RequestFailure;
use voidmesh_kad::RequestId;
use voidmesh_net::overlay::{
    Answered, Overlay, OverlayError, Replier, MAX_REPLY_PAYLOAD, MAX_REQUEST_PAYLOAD,
};
use voidmesh_net::{Endpoint, NetError};
use voidmesh_proto::kad_msg::ERROR_TOO_LARGE_FOR_DATAGRAM;
use voidmesh_proto::{Contact, KadMessage};

/// The DHT's two ways to a peer, on one UDP port.
#[derive(Clone)]
pub(super) struct Transport {
    pub overlay: Overlay,
    pub streams: Endpoint,
    /// The DHT's bucket size: how many contacts a reply carries.
    pub k: usize,
}

/// Room to make, on a first contact, for the reply to `message` (see
/// [`Overlay::request`]): a list of k contacts (IPv4, the common case; a longer reply costs
/// one retry), PONG and STORE_REPLY fit in any request.
fn reply_room(message: &KadMessage, k: usize) -> usize {
    match message {
        KadMessage::FindNode { .. } | KadMessage::FindValue { .. } => {
            find_reply_room(k).min(MAX_REPLY_PAYLOAD)
        }
        _ => 0,
    }
}

/// The frame of a FIND_VALUE_REPLY with `k` IPv4 contacts: header, found flag, count, and
/// 39 bytes a contact.
pub(crate) fn find_reply_room(k: usize) -> usize {
    voidmesh_proto::PEER_HEADER_LEN + 2 + 39 * k
}

impl Transport {
    /// Sends `bytes` to `to` over a QUIC stream (a message that does not fit a datagram,
    /// or whose reply did not) and returns the decoded reply.
    pub async fn request_over_stream(
        &self,
        to: Contact,
        bytes: Bytes,
    ) -> Result<KadMessage, RequestFailure> {
        match self.streams.request(to.addr, Some(to.id), bytes).await {
            Ok(response) => {
                KadMessage::decode(&response.message).map_err(|_| RequestFailure::Malformed)
            }
            Err(NetError::Timeout) => Err(RequestFailure::Timeout),
            Err(e) => {
                tracing::debug!(peer = %to.id, error = %e, "stream request failed");
                Err(RequestFailure::Unreachable)
            }
        }
    }

    /// The contact answering at `addr`: the key it names on a probe, proved by an
    /// authenticated PING. `None` (logged) if nobody answers.
    pub async fn resolve(&self, addr: SocketAddr) -> Option<Contact> {
        let key = match self.overlay.probe(addr).await {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!(%addr, error = %e, "bootstrap peer did not answer");
                return None;
            }
        };
        let contact = Contact::new(key, addr);
        let pong = self
            .overlay
            .request(&key, addr, KadMessage::Ping.encode(), 0)
            .await
            .map(|reply| KadMessage::decode(&Bytes::from(reply)));
        match pong {
            Ok(Ok(KadMessage::Pong)) => Some(contact),
            other => {
                tracing::warn!(%addr, outcome = ?other.map(|r| r.map(|m| m.msg_type())), "bootstrap peer did not prove its key");
                None
            }
        }
    }

    /// Closes both ways.
    pub fn close(&self) {
        self.streams.close();
        self.overlay.close();
    }
}

/// Sends `reply` to a datagram request: as is when it fits, else ERROR 413 so the
/// requester asks again over a stream.
pub(super) fn reply_by_datagram(replier: Replier, reply: &KadMessage) {
    let bytes = reply.encode();
    let outcome = if bytes.len() <= replier.max_reply() {
        replier.send(&bytes)
    } else {
        let redirect = KadMessage::Error {
            code: ERROR_TOO_LARGE_FOR_DATAGRAM,
            message: "reply too large for a datagram; ask over a stream".into(),
        };
        replier.send(&redirect.encode())
    };
    if let Err(e) = outcome {
        tracing::debug!(error = %e, "reply not sent");
    }
}

/// The datagram requests a driver has in flight without a task each: sent with
/// [`Overlay::send_request`], answered on one channel, remembered (peer and bytes) only
/// until their first answer or until they are too old to matter, so an ERROR 413 can be
/// followed by the same request over a stream.
pub(super) struct InFlight {
    sent: HashMap<u64, (Contact, Bytes, Instant)>,
    answers_tx: mpsc::UnboundedSender<Answered>,
    /// Entries older than this are dropped (the state machine gave up on them long ago).
    keep: Duration,
}

/// What an answer on the channel came to.
pub(super) enum Outcome {
    /// The reply, or the request's failure, for the state machine.
    Done(RequestId, Result<KadMessage, RequestFailure>),
    /// The reply did not fit a datagram: ask `to` again with `bytes` over a stream.
    OverStream(RequestId, Contact, Bytes),
    /// A second answer to a request already answered (a resent copy's): nothing to do.
    Stale,
}

impl InFlight {
    /// An empty set whose answers come on the returned receiver; entries are kept for
    /// `keep` at most.
    pub fn new(keep: Duration) -> (InFlight, mpsc::UnboundedReceiver<Answered>) {
        let (answers_tx, answers_rx) = mpsc::unbounded_channel();
        let set = InFlight {
            sent: HashMap::new(),
            answers_tx,
            keep,
        };
        (set, answers_rx)
    }

    /// Sends `message` to `to` as a datagram if it fits. `Err(bytes)` when it does not
    /// (send it over a stream); `Ok(Some(failure))` when it cannot be sent at all.
    pub fn send(
        &mut self,
        transport: &Transport,
        request: RequestId,
        to: Contact,
        message: &KadMessage,
    ) -> Result<Option<RequestFailure>, Bytes> {
        let bytes = message.encode();
        if bytes.len() > MAX_REQUEST_PAYLOAD {
            return Err(bytes);
        }
        let room = reply_room(message, transport.k);
        match transport.overlay.send_request(
            request.0,
            &to.key,
            to.addr,
            bytes.clone(),
            room,
            &self.answers_tx,
        ) {
            Ok(()) => {
                self.sent.insert(request.0, (to, bytes, Instant::now()));
                Ok(None)
            }
            Err(e) => {
                tracing::debug!(peer = %to.id, error = %e, "request not sent");
                Ok(Some(RequestFailure::Unreachable))
            }
        }
    }

    /// Turns one answer from the channel into what the driver does with it.
    pub fn on_answer(&mut self, answer: Answered) -> Outcome {
        let Some((to, bytes, _)) = self.sent.remove(&answer.ticket) else {
            return Outcome::Stale;
        };
        let request = RequestId(answer.ticket);
        match answer.outcome {
            Ok(reply) => match KadMessage::decode(&Bytes::from(reply)) {
                Ok(KadMessage::Error { code, .. }) if code == ERROR_TOO_LARGE_FOR_DATAGRAM => {
                    Outcome::OverStream(request, to, bytes)
                }
                Ok(reply) => Outcome::Done(request, Ok(reply)),
                Err(_) => Outcome::Done(request, Err(RequestFailure::Malformed)),
            },
            Err(OverlayError::Timeout) => Outcome::Done(request, Err(RequestFailure::Timeout)),
            Err(_) => Outcome::Done(request, Err(RequestFailure::Unreachable)),
        }
    }

    /// Drops entries older than the keep time (never answered).
    pub fn forget_old(&mut self) {
        let keep = self.keep;
        self.sent.retain(|_, (_, _, at)| at.elapsed() < keep);
        if self.sent.capacity() > 64 && self.sent.len() * 4 < self.sent.capacity() {
            self.sent.shrink_to(self.sent.len() * 2);
        }
    }
}
