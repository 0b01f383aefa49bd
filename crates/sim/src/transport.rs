//! What the real transport (one UDP socket per node, `voidmesh_net::overlay`) charges for
//! a Kademlia message, so the simulator's bytes and latencies describe the protocol we
//! ship:
//! - a message that fits is one datagram: the frame plus the datagram overhead, plus an
//!   address token once the peer has handed us one; a FIND_NODE or FIND_VALUE to a peer
//!   that has not is padded to the size of a reply with k contacts (so that reply may come
//!   back at once: no reply outweighs its request to an address not yet validated);
//! - a request that does not fit, or whose reply would not (ERROR 413, then again), goes
//!   over a QUIC stream: one more round trip for the handshake and about
//!   [`QUIC_HANDSHAKE_BYTES`] on top;
//! - a datagram lost is sent once more after three round trips (100–500 ms), as the
//!   overlay does; a second loss is a timeout.

use std::time::Duration;
use voidmesh_net::datagram::{
    DEFAULT_MAX_DATAGRAM, MAX_REPLY_PAYLOAD, MAX_REQUEST_PAYLOAD, REPLY_OVERHEAD, REQUEST_OVERHEAD,
    TOKEN_LEN,
};
use voidmesh_proto::{KadMessage, PEER_HEADER_LEN};

/// Bytes of a QUIC handshake with mutual TLS (both certificates, both directions),
/// measured on loopback for the old transport: about 4.5 KB.
pub const QUIC_HANDSHAKE_BYTES: usize = 4_500;

/// Per-packet QUIC overhead on a stream (short header, frame headers, AEAD tag).
const QUIC_PACKET_OVERHEAD: usize = 40;

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// One datagram each way.
    Datagram,
    /// A QUIC stream (a handshake first).
    Stream,
}

/// Bytes and route of a request of `frame_len` bytes (`wire_len`), to a peer that has
/// (or has not) handed us an address token.
pub fn request_cost(
    message: &KadMessage,
    frame_len: usize,
    has_token: bool,
    k: usize,
) -> (usize, Route) {
    if frame_len > MAX_REQUEST_PAYLOAD {
        return (
            stream_bytes(frame_len) + QUIC_HANDSHAKE_BYTES / 2,
            Route::Stream,
        );
    }
    let token = if has_token { TOKEN_LEN } else { 0 };
    let bare = REQUEST_OVERHEAD + token + frame_len;
    let padded = !has_token
        && matches!(
            message,
            KadMessage::FindNode { .. } | KadMessage::FindValue { .. }
        );
    // As `Codec::seal_request` pads: room for the reply's frame, its overhead and a token.
    let room =
        (REPLY_OVERHEAD + TOKEN_LEN + PEER_HEADER_LEN + 2 + 39 * k).min(DEFAULT_MAX_DATAGRAM);
    let bytes = if padded { room.max(bare) } else { bare };
    (bytes, Route::Datagram)
}

/// Bytes of a reply of `frame_len` bytes to a request that went by `route` (`first`: the
/// request carried no token, so the reply hands one over), and the round trips it adds:
/// a reply too large for a datagram is an ERROR 413, then the request again over a
/// stream (its handshake and its exchange).
pub fn reply_cost(frame_len: usize, route: Route, first: bool) -> (usize, u32) {
    match route {
        Route::Datagram if frame_len > MAX_REPLY_PAYLOAD => {
            let redirect = REPLY_OVERHEAD + 60;
            let again = 2 * QUIC_HANDSHAKE_BYTES / 2 + stream_bytes(frame_len) + 100;
            (redirect + again, 2)
        }
        Route::Datagram => (
            REPLY_OVERHEAD + if first { TOKEN_LEN } else { 0 } + frame_len,
            0,
        ),
        Route::Stream => (stream_bytes(frame_len) + QUIC_HANDSHAKE_BYTES / 2, 0),
    }
}

fn stream_bytes(frame_len: usize) -> usize {
    frame_len + frame_len.div_ceil(1200).max(1) * QUIC_PACKET_OVERHEAD
}

/// When the overlay sends a request once more: three round trips, within 100–500 ms.
pub fn resend_after(one_way: Duration) -> Duration {
    (one_way * 6).clamp(Duration::from_millis(100), Duration::from_millis(500))
}

#[cfg(test)]
mod tests {
    use super::*;
    use voidmesh_proto::Key;

    #[test]
    fn a_first_lookup_request_is_padded_and_later_ones_are_not() {
        let find = KadMessage::FindNode {
            target: Key([1; 32]),
        };
        let (first, route) = request_cost(&find, 38, false, 20);
        assert_eq!(
            (first, route),
            (
                REPLY_OVERHEAD + TOKEN_LEN + 6 + 2 + 39 * 20,
                Route::Datagram
            )
        );
        let (later, _) = request_cost(&find, 38, true, 20);
        assert_eq!(later, REQUEST_OVERHEAD + TOKEN_LEN + 38);
    }

    #[test]
    fn what_does_not_fit_a_datagram_takes_a_stream() {
        let ping = KadMessage::Ping;
        assert_eq!(request_cost(&ping, 60_000, true, 20).1, Route::Stream);
        assert_eq!(request_cost(&ping, 6, false, 20).1, Route::Datagram);
        // A reply too large for a datagram: ERROR 413, then a stream: two more round trips.
        assert_eq!(reply_cost(60_000, Route::Datagram, false).1, 2);
        assert_eq!(reply_cost(800, Route::Datagram, true).1, 0);
    }

    #[test]
    fn resends_wait_three_round_trips_within_bounds() {
        assert_eq!(
            resend_after(Duration::from_millis(40)),
            Duration::from_millis(240)
        );
        assert_eq!(
            resend_after(Duration::from_millis(1)),
            Duration::from_millis(100)
        );
        assert_eq!(
            resend_after(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
    }
}
