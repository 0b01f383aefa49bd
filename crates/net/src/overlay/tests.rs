//! Two overlays on loopback, over real UDP sockets.

use super::*;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// An overlay with a fresh identity on loopback.
fn bind(config: OverlayConfig) -> (Overlay, mpsc::Receiver<DatagramRequest>) {
    Overlay::bind(&Identity::generate(), loopback(), config).unwrap()
}

/// Sends `payload` from `from` to `to` and waits for the reply (no room made for it).
async fn ask(
    from: &Overlay,
    to: &Overlay,
    payload: &'static [u8],
) -> Result<Vec<u8>, OverlayError> {
    from.request(
        &to.public_key(),
        to.local_addr(),
        Bytes::from_static(payload),
        0,
    )
    .await
}

fn config() -> OverlayConfig {
    OverlayConfig {
        request_timeout: Duration::from_millis(500),
        inbound_queue: 64,
    }
}

/// Serves every request on `inbound` by echoing its payload `times` times.
fn echo(mut inbound: mpsc::Receiver<DatagramRequest>, times: usize) {
    tokio::spawn(async move {
        while let Some(request) = inbound.recv().await {
            let reply = request.payload.repeat(times);
            let _ = request.replier.send(&reply);
        }
    });
}

#[tokio::test]
async fn a_first_request_to_a_key_learned_elsewhere_is_answered_in_one_round_trip() {
    let (a, _a_in) = bind(config());
    let b_id = Identity::generate();
    let (b, b_in) = Overlay::bind(&b_id, loopback(), config()).unwrap();
    let mut b_in = b_in;
    // Nothing but the key and the address, as a FIND_NODE reply carries them.
    let request = tokio::spawn({
        let a = a.clone();
        let (key, addr) = (b.public_key(), b.local_addr());
        async move { a.request(&key, addr, Bytes::from_static(b"ping"), 0).await }
    });
    let inbound = b_in.recv().await.expect("request arrived");
    assert_eq!(inbound.from.key, a.public_key(), "sender proved by the tag");
    assert_eq!(inbound.from.id, a.public_key().node_id());
    assert_eq!(inbound.from.addr.port(), a.local_addr().port());
    assert_eq!(&inbound.payload[..], b"ping");
    inbound.replier.send(b"pong").unwrap();
    assert_eq!(request.await.unwrap().unwrap(), b"pong");
    assert_eq!(b.public_key().node_id(), b_id.node_id());
}

#[tokio::test]
async fn a_large_reply_to_an_unvalidated_address_costs_one_retry_and_arrives() {
    let (a, _a_in) = bind(config());
    let (b, b_in) = bind(config());
    echo(b_in, 100);
    // A 10-byte request whose reply is 1000 bytes, with no room made for it: B may not
    // send 1000 bytes to an address that has not proved it receives them, so it sends a
    // token; A asks again with it and gets the reply.
    let reply = ask(&a, &b, b"0123456789").await.unwrap();
    assert_eq!(reply.len(), 1000);
    // With the token held, the next large reply comes at once.
    let reply = ask(&a, &b, b"abcdefghij").await.unwrap();
    assert_eq!(&reply[..10], b"abcdefghij");
}

#[tokio::test]
async fn a_probe_names_the_key_at_an_address() {
    let (a, _a_in) = bind(config());
    let (b, _b_in) = bind(config());
    assert_eq!(a.probe(b.local_addr()).await.unwrap(), b.public_key());
}

#[tokio::test]
async fn a_request_sealed_for_another_key_gets_no_answer_and_garbage_is_ignored() {
    let (a, _a_in) = bind(config());
    let (b, b_in) = bind(config());
    echo(b_in, 1);
    // Sealed for a key B does not hold: B cannot open it.
    let stranger = Identity::generate().public_key();
    let outcome = a
        .request(&stranger, b.local_addr(), Bytes::from_static(b"x"), 0)
        .await;
    assert_eq!(outcome, Err(OverlayError::Timeout));
    // Garbage at B's socket changes nothing; B still answers.
    let raw = std::net::UdpSocket::bind(loopback()).unwrap();
    for junk in [
        &b"\x11garbage"[..],
        &[0x12; 200][..],
        &[][..],
        &[0x13; 5][..],
    ] {
        raw.send_to(junk, b.local_addr()).unwrap();
    }
    let reply = ask(&a, &b, b"ok").await.unwrap();
    assert_eq!(reply, b"ok");
    assert!(
        b.refused().0 >= 2,
        "junk counted as refused: {:?}",
        b.refused()
    );
}

#[tokio::test]
async fn an_oversized_payload_is_refused_before_sending() {
    let (a, _a_in) = bind(config());
    let (b, _b_in) = bind(config());
    let big = Bytes::from(vec![0u8; MAX_REQUEST_PAYLOAD + 1]);
    assert_eq!(
        a.request(&b.public_key(), b.local_addr(), big, 0).await,
        Err(OverlayError::TooLarge(MAX_REQUEST_PAYLOAD + 1))
    );
}

#[tokio::test]
async fn quic_streams_share_the_overlay_port() {
    let quic_config = || crate::EndpointConfig {
        alpn: b"test/1".to_vec(),
        request_timeout: Duration::from_secs(2),
        max_message_size: 1 << 17,
        idle_timeout: Duration::from_secs(10),
    };
    let (a_id, b_id) = (Identity::generate(), Identity::generate());
    let (a, _a_in) = Overlay::bind(&a_id, loopback(), config()).unwrap();
    let (b, b_in) = Overlay::bind(&b_id, loopback(), config()).unwrap();
    echo(b_in, 1);
    let (a_quic, _) =
        crate::Endpoint::bind_on(&a_id, a.quic_socket().unwrap(), quic_config()).unwrap();
    let (b_quic, mut b_streams) =
        crate::Endpoint::bind_on(&b_id, b.quic_socket().unwrap(), quic_config()).unwrap();
    assert_eq!(b_quic.local_addr(), b.local_addr(), "one port");
    tokio::spawn(async move {
        while let Some(inbound) = b_streams.recv().await {
            if let Some(reply) = inbound.reply {
                reply.send(inbound.message);
            }
        }
    });
    // A 60 KB frame over QUIC (too large for a datagram), on the overlay's port.
    let mut frame = vec![0u8; 60_000];
    frame[..4].copy_from_slice(&60_000u32.to_be_bytes());
    frame[4..6].copy_from_slice(&660u16.to_be_bytes());
    let reply = a_quic
        .request(
            b.local_addr(),
            Some(b_id.node_id()),
            Bytes::from(frame.clone()),
        )
        .await
        .unwrap();
    assert_eq!(reply.message.len(), 60_000);
    // Datagrams keep working beside it.
    let reply = ask(&a, &b, b"dgram").await.unwrap();
    assert_eq!(reply, b"dgram");
}

#[tokio::test]
async fn a_request_whose_datagram_is_lost_is_sent_again_before_the_timeout() {
    let config = OverlayConfig {
        request_timeout: Duration::from_secs(3),
        inbound_queue: 64,
    };
    let (a, _a_in) = bind(config.clone());
    let (b, mut b_in) = bind(config);
    // B "loses" the first copy (takes it, never answers), answers the second.
    tokio::spawn(async move {
        let lost = b_in.recv().await;
        let again = b_in.recv().await.expect("sent again");
        again.replier.send(b"second copy").unwrap();
        drop(lost);
    });
    let started = std::time::Instant::now();
    let reply = ask(&a, &b, b"a request of some bytes").await.unwrap();
    assert_eq!(reply, b"second copy");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "resent within a few round trips, not after the 3 s timeout: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn requests_sent_without_waiting_are_answered_on_the_channel_by_ticket() {
    let config = OverlayConfig {
        request_timeout: Duration::from_secs(3),
        inbound_queue: 64,
    };
    let (a, _a_in) = bind(config.clone());
    let (b, mut b_in) = bind(config);
    // B takes the first copy of ticket 7 without answering (a lost datagram); it answers
    // everything after.
    tokio::spawn(async move {
        let lost = b_in.recv().await;
        while let Some(request) = b_in.recv().await {
            let reply = request.payload.to_vec();
            let _ = request.replier.send(&reply);
        }
        drop(lost);
    });
    let (tx, mut answers) = mpsc::unbounded_channel();
    let payload = |s: &'static str| Bytes::from_static(s.as_bytes());
    a.send_request(
        7,
        &b.public_key(),
        b.local_addr(),
        payload("seven, lost once"),
        0,
        &tx,
    )
    .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(2), answers.recv())
        .await
        .expect("resent and answered well before the timeout")
        .unwrap();
    assert_eq!(first.ticket, 7);
    assert_eq!(first.outcome.unwrap(), b"seven, lost once");
    a.send_request(
        8,
        &b.public_key(),
        b.local_addr(),
        payload("eight, at once"),
        0,
        &tx,
    )
    .unwrap();
    let second = answers.recv().await.unwrap();
    assert_eq!(
        (second.ticket, second.outcome.unwrap()),
        (8, b"eight, at once".to_vec())
    );
}

#[tokio::test]
async fn two_services_on_one_socket_get_their_own_requests_and_close_apart() {
    let (client, _client_in) = bind(config());
    let server = Overlay::open(&Identity::generate(), loopback(), config()).unwrap();
    let (upper, upper_in) = server.subscribe(|p| p.first().is_some_and(u8::is_ascii_uppercase));
    let (lower, lower_in) = server.subscribe(|p| p.first().is_some_and(u8::is_ascii_lowercase));
    echo(upper_in, 1);
    echo(lower_in, 2);
    assert_eq!(ask(&client, &server, b"UP").await.unwrap(), b"UP");
    assert_eq!(ask(&client, &server, b"lo").await.unwrap(), b"lolo");
    // Taken by no service: dropped, the requester times out.
    assert_eq!(
        ask(&client, &server, b"7").await,
        Err(OverlayError::Timeout)
    );

    // One service closing leaves the socket to the other.
    upper.close();
    assert_eq!(
        ask(&client, &server, b"UP").await,
        Err(OverlayError::Timeout)
    );
    assert_eq!(ask(&client, &server, b"lo").await.unwrap(), b"lolo");
    // The last one closes the socket: its own requests fail at once.
    lower.close();
    let after = lower
        .request(
            &client.public_key(),
            client.local_addr(),
            Bytes::from_static(b"x"),
            0,
        )
        .await;
    assert!(after.is_err(), "closed socket still sent: {after:?}");
}

/// A peer stream frame: `size u32 | type u16 | body`.
fn stream_frame(body: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(6 + body.len());
    frame.extend_from_slice(&(6 + body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&1u16.to_be_bytes());
    frame.extend_from_slice(body);
    Bytes::from(frame)
}

#[tokio::test]
async fn two_quic_protocols_share_the_overlay_socket() {
    use crate::{Endpoint, EndpointConfig, StreamSocket};
    let stream_config = |alpn: &[u8]| EndpointConfig {
        alpn: alpn.to_vec(),
        request_timeout: Duration::from_secs(2),
        max_message_size: 4096,
        idle_timeout: Duration::from_secs(30),
    };
    let id = Identity::generate();
    let server = Overlay::open(&id, loopback(), config()).unwrap();
    let streams = StreamSocket::bind_on(&id, server.quic_socket().unwrap()).unwrap();
    let (one, one_in) = streams.add(stream_config(b"one")).unwrap();
    let (two, two_in) = streams.add(stream_config(b"two")).unwrap();
    assert!(
        streams.add(stream_config(b"two")).is_err(),
        "an ALPN is served once per socket"
    );
    assert_eq!(one.local_addr(), server.local_addr());
    for (mut inbound, answer) in [(one_in, b"from one"), (two_in, b"from two")] {
        tokio::spawn(async move {
            while let Some(message) = inbound.recv().await {
                if let Some(reply) = message.reply {
                    reply.send(stream_frame(answer));
                }
            }
        });
    }
    let to = server.local_addr();
    let ask_quic = |alpn: &'static [u8]| async move {
        let (client, _) =
            Endpoint::bind(&Identity::generate(), loopback(), stream_config(alpn)).unwrap();
        client.request(to, None, stream_frame(b"hi")).await
    };
    let via_one = ask_quic(b"one").await.unwrap();
    assert!(via_one.message.ends_with(b"from one"));
    let via_two = ask_quic(b"two").await.unwrap();
    assert!(via_two.message.ends_with(b"from two"));
    // The overlay's own datagrams still work beside QUIC.
    let (client, _client_in) = bind(config());
    let (_service, service_in) = server.subscribe(|_| true);
    echo(service_in, 1);
    assert_eq!(ask(&client, &server, b"dg").await.unwrap(), b"dg");
    // One protocol closing leaves the other served.
    one.close();
    assert!(ask_quic(b"one").await.is_err());
    assert!(ask_quic(b"two")
        .await
        .unwrap()
        .message
        .ends_with(b"from two"));
    drop(two);
}
