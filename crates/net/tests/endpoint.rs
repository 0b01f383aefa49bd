//! Two or more real endpoints on 127.0.0.1: requests, verification, limits, reuse.

use bytes::{BufMut, Bytes, BytesMut};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use voidmesh_net::{Endpoint, EndpointConfig, Identity, Inbound, NetError};
use voidmesh_proto::NodeId;

/// Generous bound for anything that should happen "at once" on loopback.
const SOON: Duration = Duration::from_secs(5);

fn config() -> EndpointConfig {
    EndpointConfig {
        alpn: b"voidmesh-test".to_vec(),
        request_timeout: Duration::from_secs(2),
        max_message_size: 128 * 1024,
        idle_timeout: Duration::from_secs(30),
    }
}

/// A peer frame `size u32 | type u16 | body`.
fn frame(msg_type: u16, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(6 + body.len());
    b.put_u32(6 + body.len() as u32);
    b.put_u16(msg_type);
    b.put_slice(body);
    b.freeze()
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

struct Node {
    id: NodeId,
    ep: Endpoint,
    addr: SocketAddr,
}

/// Binds a node whose inbound messages are left to the caller.
fn bind_with(cfg: EndpointConfig) -> (Node, mpsc::Receiver<Inbound>) {
    let identity = Identity::generate();
    let (ep, rx) = Endpoint::bind(&identity, localhost(), cfg).unwrap();
    let addr = ep.local_addr();
    assert_ne!(addr.port(), 0);
    (
        Node {
            id: identity.node_id(),
            ep,
            addr,
        },
        rx,
    )
}

/// Answers every request with a frame of type 671 whose body is the request's body
/// followed by the responder's id, and forwards one-way messages to the returned channel.
fn serve_echo(id: NodeId, mut rx: mpsc::Receiver<Inbound>) -> mpsc::UnboundedReceiver<Inbound> {
    let (oneway_tx, oneway_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(inbound) = rx.recv().await {
            match inbound.reply {
                Some(_) => {
                    let Inbound { message, reply, .. } = inbound;
                    let mut body = message[6..].to_vec();
                    body.extend_from_slice(&id.0);
                    reply.unwrap().send(frame(671, &body));
                }
                None => {
                    let _ = oneway_tx.send(inbound);
                }
            }
        }
    });
    oneway_rx
}

fn echo_node() -> (Node, mpsc::UnboundedReceiver<Inbound>) {
    let (node, rx) = bind_with(config());
    let oneway = serve_echo(node.id, rx);
    (node, oneway)
}

/// Checks a reply of `serve_echo`.
fn assert_echo(reply: &Bytes, body: &[u8], responder: NodeId) {
    assert_eq!(
        reply[..],
        frame(671, &[body, &responder.0[..]].concat())[..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_reply_in_both_directions_with_and_without_expected_id() {
    let (a, _) = echo_node();
    let (b, _) = echo_node();

    let r =
        a.ep.request(b.addr, Some(b.id), frame(660, b"ping"))
            .await
            .unwrap();
    assert_eq!(r.from, b.id);
    assert_echo(&r.message, b"ping", b.id);

    let r =
        b.ep.request(a.addr, None, frame(660, b"who"))
            .await
            .unwrap();
    assert_eq!(r.from, a.id, "id learned from the handshake");
    assert_echo(&r.message, b"who", a.id);

    let r =
        b.ep.request(a.addr, Some(a.id), frame(660, b""))
            .await
            .unwrap();
    assert_eq!(r.from, a.id);

    // A fresh node without an expected id learns it.
    let (c, _) = echo_node();
    let r = c.ep.request(a.addr, None, frame(662, b"x")).await.unwrap();
    assert_eq!(r.from, a.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_names_the_proved_sender_and_its_listening_address() {
    let (a, _) = echo_node();
    let (b, mut b_rx) = bind_with(config());
    let req = tokio::spawn({
        let ep = a.ep.clone();
        async move { ep.request(b.addr, None, frame(660, b"hi")).await }
    });
    let inbound = tokio::time::timeout(SOON, b_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inbound.from, a.id);
    assert_eq!(inbound.addr, a.addr);
    assert_eq!(inbound.message, frame(660, b"hi"));
    inbound.reply.unwrap().send(frame(670, b"yo"));
    let r = req.await.unwrap().unwrap();
    assert_eq!((r.from, r.message), (b.id, frame(670, b"yo")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_expected_id_fails_and_delivers_nothing() {
    let (a, _) = echo_node();
    let (b, mut b_rx) = bind_with(config());
    let impostor_id = Identity::generate().node_id();

    let err =
        a.ep.request(b.addr, Some(impostor_id), frame(660, b"secret"))
            .await
            .unwrap_err();
    match err {
        NetError::WrongPeer {
            expected,
            actual,
            addr,
        } => {
            assert_eq!(expected, impostor_id);
            assert_eq!(actual, b.id);
            assert_eq!(addr, b.addr);
        }
        other => panic!("expected WrongPeer, got {other:?}"),
    }
    let err =
        a.ep.send(b.addr, Some(impostor_id), frame(660, b"secret"))
            .await
            .unwrap_err();
    assert!(matches!(err, NetError::WrongPeer { .. }), "{err:?}");

    // Nothing arrived at b.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), b_rx.recv())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_alpn_fails_the_handshake() {
    let (a, _) = echo_node();
    let (b, mut b_rx) = bind_with(EndpointConfig {
        alpn: b"other-protocol".to_vec(),
        ..config()
    });
    let start = Instant::now();
    let err =
        a.ep.request(b.addr, None, frame(660, b""))
            .await
            .unwrap_err();
    assert!(matches!(err, NetError::Handshake { .. }), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(1), "fails fast");
    let err =
        b.ep.request(a.addr, None, frame(660, b""))
            .await
            .unwrap_err();
    assert!(matches!(err, NetError::Handshake { .. }), "{err:?}");
    assert!(b_rx.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_never_comes_times_out() {
    let timeout = Duration::from_millis(300);
    let (a, _) = bind_with(EndpointConfig {
        request_timeout: timeout,
        ..config()
    });
    let (b, mut b_rx) = bind_with(config());
    // b takes requests and sits on the responders.
    let hoard = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Some(inbound) = b_rx.recv().await {
            kept.push(inbound);
        }
    });
    let start = Instant::now();
    let err =
        a.ep.request(b.addr, Some(b.id), frame(660, b""))
            .await
            .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, NetError::Timeout), "{err:?}");
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(1),
        "{took:?}"
    );
    hoard.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_times_out() {
    let timeout = Duration::from_millis(300);
    let (a, _) = bind_with(EndpointConfig {
        request_timeout: timeout,
        ..config()
    });
    // A bound UDP socket that never answers.
    let silent = std::net::UdpSocket::bind(localhost()).unwrap();
    let start = Instant::now();
    let err =
        a.ep.request(silent.local_addr().unwrap(), None, frame(660, b""))
            .await
            .unwrap_err();
    assert!(matches!(err, NetError::Timeout), "{err:?}");
    assert!(start.elapsed() < timeout + Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_responder_fails_the_request_at_once() {
    let (a, _) = echo_node();
    let (b, mut b_rx) = bind_with(config());
    tokio::spawn(async move {
        while let Some(inbound) = b_rx.recv().await {
            drop(inbound);
        }
    });
    let start = Instant::now();
    let err =
        a.ep.request(b.addr, None, frame(660, b""))
            .await
            .unwrap_err();
    assert!(matches!(err, NetError::NoReply), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_refused_and_the_endpoint_keeps_serving() {
    // a allows itself large messages; b does not.
    let (a, _) = bind_with(EndpointConfig {
        max_message_size: 1024 * 1024,
        ..config()
    });
    let (b, b_rx) = bind_with(config());
    let mut b_oneway = serve_echo(b.id, b_rx);
    let (c, _) = echo_node();

    let big = frame(661, &vec![7u8; 200 * 1024]);
    let err =
        a.ep.request(b.addr, Some(b.id), big.clone())
            .await
            .unwrap_err();
    assert!(
        matches!(err, NetError::Stream(_) | NetError::ConnectionLost(_)),
        "{err:?}"
    );
    // A one-way oversized message is dropped, never delivered.
    let _ = a.ep.send(b.addr, Some(b.id), big).await;

    // b still serves others, and a too.
    let r =
        c.ep.request(b.addr, Some(b.id), frame(660, b"still"))
            .await
            .unwrap();
    assert_echo(&r.message, b"still", b.id);
    let r =
        a.ep.request(b.addr, Some(b.id), frame(660, b"again"))
            .await
            .unwrap();
    assert_echo(&r.message, b"again", b.id);
    assert!(
        b_oneway.try_recv().is_err(),
        "oversized one-way message was delivered"
    );

    // Our own limit applies before sending.
    let err =
        c.ep.request(b.addr, None, frame(661, &vec![0u8; 128 * 1024]))
            .await
            .unwrap_err();
    assert!(matches!(err, NetError::MessageTooLarge { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_the_requesters_limit_is_refused() {
    let (a, _) = bind_with(EndpointConfig {
        max_message_size: 1000,
        ..config()
    });
    let (b, mut b_rx) = bind_with(config());
    tokio::spawn(async move {
        while let Some(inbound) = b_rx.recv().await {
            inbound.reply.unwrap().send(frame(670, &[1u8; 5000]));
        }
    });
    let err =
        a.ep.request(b.addr, None, frame(660, b""))
            .await
            .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::MessageTooLarge {
                size: 5006,
                max: 1000
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_outgoing_frames_are_refused_locally() {
    let (a, _) = echo_node();
    let (b, _) = echo_node();
    for bad in [
        Bytes::from_static(b"abc"),
        Bytes::from_static(&[0, 0, 0, 9, 2, 148, 1]),
    ] {
        let err = a.ep.request(b.addr, None, bad).await.unwrap_err();
        assert!(matches!(err, NetError::Malformed(_)), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_over_ten_peers_are_all_answered() {
    let (client, _) = echo_node();
    let mut peers = Vec::new();
    for _ in 0..10 {
        peers.push(echo_node().0);
    }
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    for i in 0..1000u32 {
        let peer = &peers[i as usize % peers.len()];
        let (ep, addr, id) = (client.ep.clone(), peer.addr, peer.id);
        let expect = if i % 2 == 0 { Some(id) } else { None };
        tasks.push(tokio::spawn(async move {
            let body = i.to_be_bytes();
            let r = ep.request(addr, expect, frame(662, &body)).await.unwrap();
            assert_eq!(r.from, id);
            assert_echo(&r.message, &body, id);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(client.ep.connection_count(), 10, "one connection per peer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_reused_whichever_side_opened_them() {
    let (a, _) = echo_node();
    let (b, _) = echo_node();
    a.ep.request(b.addr, Some(b.id), frame(660, b"1"))
        .await
        .unwrap();
    b.ep.request(a.addr, Some(a.id), frame(660, b"2"))
        .await
        .unwrap();
    b.ep.request(a.addr, None, frame(660, b"3")).await.unwrap();
    a.ep.request(b.addr, None, frame(660, b"4")).await.unwrap();
    a.ep.send(b.addr, None, frame(507, b"5")).await.unwrap();
    b.ep.send(a.addr, Some(a.id), frame(507, b"6"))
        .await
        .unwrap();
    assert_eq!(a.ep.connection_count(), 1);
    assert_eq!(b.ep.connection_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_share_one_handshake() {
    let (a, _) = echo_node();
    let (b, _) = echo_node();
    let mut tasks = Vec::new();
    for i in 0..50u8 {
        let (ep, addr) = (a.ep.clone(), b.addr);
        let expect = if i % 2 == 0 { Some(b.id) } else { None };
        tasks.push(tokio::spawn(async move {
            ep.request(addr, expect, frame(660, &[i])).await.unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().from, b.id);
    }
    assert_eq!(a.ep.connection_count(), 1);
    assert_eq!(b.ep.connection_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_messages_arrive_without_a_reply_handle() {
    let (a, _) = echo_node();
    let (b, mut b_oneway) = echo_node();
    let to =
        a.ep.send(b.addr, None, frame(504, b"announce"))
            .await
            .unwrap();
    assert_eq!(to, b.id);
    let inbound = tokio::time::timeout(SOON, b_oneway.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inbound.from, a.id);
    assert_eq!(inbound.addr, a.addr);
    assert_eq!(inbound.message, frame(504, b"announce"));
    assert!(inbound.reply.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_requests_and_the_inbound_channel() {
    let (a, _) = echo_node();
    let (b, mut b_rx) = bind_with(config());
    let b_ep = b.ep.clone();
    let pending = tokio::spawn(async move { a.ep.request(b.addr, None, frame(660, b"")).await });
    let inbound = tokio::time::timeout(SOON, b_rx.recv())
        .await
        .unwrap()
        .unwrap();
    b_ep.close();
    drop(inbound);
    let err = tokio::time::timeout(SOON, pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::ConnectionLost(_) | NetError::NoReply | NetError::Stream(_)
        ),
        "{err:?}"
    );
    let err =
        b.ep.request(b.addr, None, frame(660, b""))
            .await
            .unwrap_err();
    assert!(matches!(err, NetError::Closed), "{err:?}");
    drop(b);
    drop(b_ep);
    // Every task let go of the sender: the channel ends.
    assert!(tokio::time::timeout(SOON, b_rx.recv())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_shuts_the_endpoint_down() {
    let (a, _) = echo_node();
    let (b, mut b_rx) = bind_with(config());
    let b_addr = b.addr;
    let second = b.ep.clone();
    drop(b);
    // A clone is still alive: b answers.
    let req = tokio::spawn({
        let ep = a.ep.clone();
        async move { ep.request(b_addr, None, frame(660, b"")).await }
    });
    let inbound = tokio::time::timeout(SOON, b_rx.recv())
        .await
        .unwrap()
        .unwrap();
    inbound.reply.unwrap().send(frame(670, b""));
    req.await.unwrap().unwrap();
    drop(second);
    assert!(tokio::time::timeout(SOON, b_rx.recv())
        .await
        .unwrap()
        .is_none());
    let err =
        a.ep.request(b_addr, None, frame(660, b""))
            .await
            .unwrap_err();
    assert!(
        !matches!(err, NetError::Closed),
        "a itself is still open: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_reached_again() {
    let identity = Identity::generate();
    let (a, _) = echo_node();
    let (b, b_rx) = Endpoint::bind(&identity, localhost(), config()).unwrap();
    let addr = b.local_addr();
    serve_echo(identity.node_id(), b_rx);
    a.ep.request(addr, Some(identity.node_id()), frame(660, b""))
        .await
        .unwrap();
    drop(b);
    // Same key, same port (retry while the old socket is being released).
    let deadline = Instant::now() + SOON;
    let (b2, b2_rx) = loop {
        match Endpoint::bind(&identity, addr, config()) {
            Ok(bound) => break bound,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("rebind failed: {e}"),
        }
    };
    serve_echo(identity.node_id(), b2_rx);
    let r =
        a.ep.request(addr, Some(identity.node_id()), frame(660, b"back"))
            .await
            .unwrap();
    assert_echo(&r.message, b"back", identity.node_id());
    drop(b2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_rejects_unusable_settings() {
    let identity = Identity::generate();
    for cfg in [
        EndpointConfig {
            alpn: vec![],
            ..config()
        },
        EndpointConfig {
            max_message_size: 5,
            ..config()
        },
        EndpointConfig {
            request_timeout: Duration::ZERO,
            ..config()
        },
        EndpointConfig {
            idle_timeout: Duration::ZERO,
            ..config()
        },
    ] {
        let err = Endpoint::bind(&identity, localhost(), cfg).unwrap_err();
        assert!(matches!(err, NetError::Config(_)), "{err:?}");
    }
}

#[test]
fn bind_outside_a_runtime_is_an_error_not_a_panic() {
    let err = Endpoint::bind(&Identity::generate(), localhost(), config()).unwrap_err();
    assert!(matches!(err, NetError::Io(_)), "{err:?}");
}

/// Waits until `f` holds, failing the test after [`SOON`].
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + SOON;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_above_the_limit_are_closed_and_redialed_on_demand() {
    let idle_after = Duration::from_millis(200);
    let (a, a_rx) = bind_with(EndpointConfig {
        request_timeout: idle_after,
        ..config()
    });
    serve_echo(a.id, a_rx);
    a.ep.set_max_connections(2);
    let (b, _) = echo_node();
    let (c, _) = echo_node();
    let (d, _) = echo_node();
    a.ep.request(b.addr, Some(b.id), frame(660, b"b"))
        .await
        .unwrap();
    a.ep.request(c.addr, Some(c.id), frame(660, b"c"))
        .await
        .unwrap();
    tokio::time::sleep(idle_after + Duration::from_millis(50)).await;
    // c is used again, b is not: b is the least recently used idle connection.
    c.ep.request(a.addr, Some(a.id), frame(660, b"c2"))
        .await
        .unwrap();
    a.ep.request(d.addr, Some(d.id), frame(660, b"d"))
        .await
        .unwrap();
    eventually("a drops its connection to b", || {
        a.ep.connection_count() == 2
    })
    .await;
    eventually("b sees it closed", || b.ep.connection_count() == 0).await;
    assert_eq!(c.ep.connection_count(), 1);
    // b is dialed again when needed, from either side.
    b.ep.request(a.addr, Some(a.id), frame(660, b"b2"))
        .await
        .unwrap();
    a.ep.request(b.addr, None, frame(660, b"b3")).await.unwrap();
    assert_eq!(b.ep.connection_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dual_stack_endpoint_reuses_connections_from_ipv4_peers() {
    let identity = Identity::generate();
    let Ok((v6, v6_rx)) = Endpoint::bind(&identity, "[::]:0".parse().unwrap(), config()) else {
        eprintln!("no IPv6 here; skipped");
        return;
    };
    serve_echo(identity.node_id(), v6_rx);
    let port = v6.local_addr().port();
    let (a, _) = echo_node();
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    a.ep.request(to, None, frame(660, b"")).await.unwrap();
    // The v6 endpoint sees a at an IPv4-mapped address, and answers on the same connection
    // when asked to reach a's plain IPv4 address without an id.
    let r = v6.request(a.addr, None, frame(660, b"back")).await.unwrap();
    assert_eq!(r.from, a.id);
    let r = v6
        .request(a.addr, Some(a.id), frame(660, b"back"))
        .await
        .unwrap();
    assert_eq!(r.from, a.id);
    assert_eq!(v6.connection_count(), 1);
    assert_eq!(a.ep.connection_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_allowed_messages_round_trip_intact() {
    let (a, _) = echo_node();
    let (b, mut b_rx) = bind_with(config());
    let max = config().max_message_size;
    let body: Vec<u8> = (0..max - 6).map(|i| (i * 7 % 251) as u8).collect();
    let big = frame(661, &body);
    assert_eq!(big.len(), max);
    tokio::spawn(async move {
        while let Some(inbound) = b_rx.recv().await {
            let reply = inbound.message.clone();
            inbound.reply.unwrap().send(reply);
        }
    });
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (ep, big) = (a.ep.clone(), big.clone());
        tasks.push(tokio::spawn(async move {
            ep.request(b.addr, Some(b.id), big).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().message, big);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_reply_is_not_sent() {
    let (a, _) = echo_node();
    let (b, mut b_rx) = bind_with(config());
    tokio::spawn(async move {
        while let Some(inbound) = b_rx.recv().await {
            inbound
                .reply
                .unwrap()
                .send(Bytes::from_static(&[0, 0, 0, 99, 2, 158]));
        }
    });
    let err =
        a.ep.request(b.addr, None, frame(660, b""))
            .await
            .unwrap_err();
    assert!(matches!(err, NetError::NoReply), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_application_pushes_back_and_loses_nothing() {
    let (a, _) = echo_node();
    let (b, mut b_rx) = bind_with(config());
    // b reads nothing for a while; a keeps sending one-way messages.
    let total = voidmesh_net::INBOUND_QUEUE + 500;
    let sender = tokio::spawn({
        let ep = a.ep.clone();
        async move {
            for i in 0..total as u32 {
                ep.send(b.addr, Some(b.id), frame(507, &i.to_be_bytes()))
                    .await
                    .unwrap();
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !sender.is_finished(),
        "the sender should be held back by a full queue"
    );
    let mut seen = std::collections::HashSet::new();
    while seen.len() < total {
        let inbound = tokio::time::timeout(SOON, b_rx.recv())
            .await
            .unwrap()
            .unwrap();
        seen.insert(u32::from_be_bytes(
            inbound.message[6..10].try_into().unwrap(),
        ));
    }
    sender.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_learns_the_id_without_sending_anything() {
    let (a, _) = echo_node();
    let (b, mut b_rx) = bind_with(config());
    assert_eq!(a.ep.connect(b.addr, None).await.unwrap().node_id(), b.id);
    assert_eq!(
        a.ep.connect(b.addr, Some(b.id)).await.unwrap().node_id(),
        b.id
    );
    let wrong = Identity::generate().node_id();
    assert!(matches!(
        a.ep.connect(b.addr, Some(wrong)).await,
        Err(NetError::WrongPeer { .. })
    ));
    assert_eq!(a.ep.connection_count(), 1);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), b_rx.recv())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_closes_the_connection_and_a_later_request_dials_again() {
    let (a, _) = echo_node();
    let (b, _) = echo_node();
    a.ep.request(b.addr, Some(b.id), frame(660, b""))
        .await
        .unwrap();
    a.ep.disconnect(&b.id);
    eventually("b sees the connection closed", || {
        b.ep.connection_count() == 0
    })
    .await;
    let r =
        a.ep.request(b.addr, Some(b.id), frame(660, b"again"))
            .await
            .unwrap();
    assert_echo(&r.message, b"again", b.id);
    // Disconnecting an unknown peer is harmless.
    a.ep.disconnect(&Identity::generate().node_id());
}
