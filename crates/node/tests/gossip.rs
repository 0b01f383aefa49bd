//! The gossip module over real sockets: peers on loopback QUIC, clients on the real TCP
//! API, checked the way existing VoidPhone harnesses check.

mod common;

use bytes::Bytes;
use common::eventually;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use voidmesh_net::Identity;
use voidmesh_node::client::{GossipApiClient, ReceivedItem};
use voidmesh_node::config::GossipConfig;
use voidmesh_node::service::GossipService;
use voidmesh_proto::NodeId;

fn settings(bootstrap: Option<SocketAddr>, seed: u64) -> GossipConfig {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    GossipConfig {
        p2p_address: loopback,
        api_address: loopback,
        bootstrappers: bootstrap.map(|a| vec![a.to_string()]).unwrap_or_default(),
        known_peers: Vec::new(),
        gossip: voidmesh_gossip::Config {
            degree: 8,
            min_connections: 4,
            max_connections: 12,
            search_cooldown: Duration::from_millis(300),
            pow_difficulty: 6,
            validation_timeout: Duration::from_secs(5),
            rng_seed: seed,
            ..voidmesh_gossip::Config::default()
        },
        max_api_connections: 64,
        api_read_timeout: Duration::from_secs(10),
    }
}

/// `n` gossip modules; peer 0 first, the others joining through it.
async fn start_peers(n: usize, tweak: impl Fn(usize, &mut GossipConfig)) -> Vec<GossipService> {
    let mut first_config = settings(None, 0);
    tweak(0, &mut first_config);
    let first = GossipService::start(&Identity::generate(), &first_config, None)
        .await
        .unwrap();
    let seed = first.p2p_addr();
    let mut peers = vec![first];
    for i in 1..n {
        let mut config = settings(Some(seed), i as u64);
        tweak(i, &mut config);
        peers.push(
            GossipService::start(&Identity::generate(), &config, None)
                .await
                .unwrap(),
        );
    }
    peers
}

/// Waits until every view holds at least `min` neighbours, none of them in `gone`.
async fn wait_for_views(peers: &[GossipService], min: usize, gone: &HashSet<NodeId>) {
    eventually(Duration::from_secs(30), "views filled", || async {
        for p in peers {
            let view = p.handle().view().await.unwrap();
            if view.len() < min || view.iter().any(|c| gone.contains(&c.id)) {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// Reads the next notification, failing after `within`.
async fn next_item(client: &mut GossipApiClient, within: Duration) -> Option<ReceivedItem> {
    tokio::time::timeout(within, client.recv())
        .await
        .ok()
        .map(|r| r.unwrap())
}

async fn subscriber(peer: &GossipService, data_type: u16) -> GossipApiClient {
    let mut c = GossipApiClient::connect(peer.api_addr()).await.unwrap();
    c.notify(data_type).await.unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_spread_validate_and_respect_registrations() {
    let peers = start_peers(3, |_, _| {}).await;
    wait_for_views(&peers, 2, &HashSet::new()).await;
    let mut sub1 = subscriber(&peers[1], 7).await;
    let mut sub2 = subscriber(&peers[2], 7).await;
    let mut other_type = subscriber(&peers[2], 8).await;
    let mut unregistered = GossipApiClient::connect(peers[1].api_addr()).await.unwrap();
    // Registration travels to the driver before the announce below.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut announcer = GossipApiClient::connect(peers[0].api_addr()).await.unwrap();

    // (1) An item announced at peer 0 reaches the subscribers of peers 1 and 2.
    announcer
        .announce(0, 7, Bytes::from_static(b"hello, valid"))
        .await
        .unwrap();
    for (name, sub) in [("peer 1", &mut sub1), ("peer 2", &mut sub2)] {
        let item = next_item(sub, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{name} got the item"));
        assert_eq!(&item.data[..], b"hello, valid");
        sub.validate(item.message_id, true).await.unwrap();
    }

    // Let the first item's forwarding finish before counting messages.
    eventually(Duration::from_secs(5), "first item validated", || async {
        for p in &peers[1..] {
            if p.handle().stats().await.unwrap().items_validated < 1 {
                return None;
            }
        }
        Some(())
    })
    .await;

    // (2) Every subscriber marks the next item invalid: each sees it exactly once, and
    // neither peer 1 nor peer 2 sends it on.
    let before: Vec<u64> = futures::future::join_all(
        peers
            .iter()
            .map(|p| async { p.handle().stats().await.unwrap().announces_sent }),
    )
    .await;
    announcer
        .announce(0, 7, Bytes::from_static(b"hello, invalid"))
        .await
        .unwrap();
    for sub in [&mut sub1, &mut sub2] {
        let item = next_item(sub, Duration::from_secs(5))
            .await
            .expect("delivered");
        assert_eq!(&item.data[..], b"hello, invalid");
        sub.validate(item.message_id, false).await.unwrap();
    }
    // A third, valid item is the marker: once it arrived, anything the invalid one could
    // have caused would have arrived before it on the same paths.
    announcer
        .announce(0, 7, Bytes::from_static(b"marker"))
        .await
        .unwrap();
    for sub in [&mut sub1, &mut sub2] {
        let item = next_item(sub, Duration::from_secs(5))
            .await
            .expect("marker");
        assert_eq!(&item.data[..], b"marker", "the invalid item came back");
        sub.validate(item.message_id, true).await.unwrap();
    }
    eventually(Duration::from_secs(5), "marker forwarded", || async {
        for p in &peers[1..] {
            if p.handle().stats().await.unwrap().items_validated < 2 {
                return None;
            }
        }
        Some(())
    })
    .await;
    let invalid_total: u64 = futures::future::join_all(
        peers
            .iter()
            .map(|p| async { p.handle().stats().await.unwrap().items_invalid }),
    )
    .await
    .iter()
    .sum();
    assert_eq!(
        invalid_total, 2,
        "peers 1 and 2 each dropped the invalid item"
    );
    let after: Vec<u64> = futures::future::join_all(
        peers
            .iter()
            .map(|p| async { p.handle().stats().await.unwrap().announces_sent }),
    )
    .await;
    // Peer 0 pushed both items to its two neighbours; peers 1 and 2 forwarded only the
    // marker (to at most the one neighbour that has not seen it).
    assert_eq!(after[0] - before[0], 4);
    assert!(after[1] - before[1] <= 1 && after[2] - before[2] <= 1);

    // (3) Clients that did not register type 7 got nothing of it.
    assert!(next_item(&mut other_type, Duration::from_millis(300))
        .await
        .is_none());
    assert!(next_item(&mut unregistered, Duration::from_millis(300))
        .await
        .is_none());
    for p in peers {
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_subscribers_get_an_announced_item_but_not_the_announcer() {
    let peers = start_peers(1, |_, _| {}).await;
    let mut announcer = subscriber(&peers[0], 3).await;
    let mut local = subscriber(&peers[0], 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    announcer
        .announce(4, 3, Bytes::from_static(b"local"))
        .await
        .unwrap();
    let item = next_item(&mut local, Duration::from_secs(5))
        .await
        .expect("delivered");
    assert_eq!(&item.data[..], b"local");
    assert!(next_item(&mut announcer, Duration::from_millis(300))
        .await
        .is_none());
    peers.into_iter().next().unwrap().shutdown().await;
}

/// Subscribes one auto-validating client per peer and collects arrival times.
async fn spread_and_measure(
    peers: &[GossipService],
    from: usize,
    payload: &'static [u8],
) -> (Duration, u64) {
    let mut subs = Vec::new();
    for p in peers {
        subs.push(subscriber(p, 42).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before: u64 = futures::future::join_all(
        peers
            .iter()
            .map(|p| async { p.handle().stats().await.unwrap().announces_sent }),
    )
    .await
    .iter()
    .sum();
    let mut announcer = GossipApiClient::connect(peers[from].api_addr())
        .await
        .unwrap();
    let started = Instant::now();
    announcer
        .announce(0, 42, Bytes::from_static(payload))
        .await
        .unwrap();
    let waits = subs
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != from)
        .map(|(i, mut sub)| async move {
            let item = next_item(&mut sub, Duration::from_secs(20))
                .await
                .unwrap_or_else(|| panic!("peer {i} never got the item"));
            assert_eq!(&item.data[..], payload);
            let at = started.elapsed();
            sub.validate(item.message_id, true).await.unwrap();
            // Keep the connection (and registration) until every peer has the item.
            (at, sub)
        });
    let results = futures::future::join_all(waits).await;
    let last = results.iter().map(|(t, _)| *t).max().unwrap_or_default();
    // Let forwarding after the last validation settle before counting messages.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: u64 = futures::future::join_all(
        peers
            .iter()
            .map(|p| async { p.handle().stats().await.unwrap().announces_sent }),
    )
    .await
    .iter()
    .sum();
    (last, after - before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_peers_reach_everyone_and_survive_losing_twenty() {
    let mut peers = start_peers(100, |_, _| {}).await;
    wait_for_views(&peers, 4, &HashSet::new()).await;
    let (last, messages) = spread_and_measure(&peers, 17, b"to all hundred").await;
    eprintln!(
        "100 peers, degree 8: last delivery after {last:?}, {messages} PEER ANNOUNCE messages"
    );

    // Stop 20 peers (peer 0, the bootstrapper, among them).
    let stopped: Vec<_> = peers.drain(0..20).collect();
    let gone: HashSet<NodeId> = stopped.iter().map(|p| p.node_id()).collect();
    for p in stopped {
        p.shutdown().await;
    }
    let started = Instant::now();
    wait_for_views(&peers, 4, &gone).await;
    eprintln!(
        "survivors back at min_connections after {:?}",
        started.elapsed()
    );
    let (last, messages) = spread_and_measure(&peers, 40, b"after the losses").await;
    eprintln!("80 survivors: last delivery after {last:?}, {messages} PEER ANNOUNCE messages");
    for p in peers {
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_valid_proof_of_work_is_refused() {
    // Peer 2 works for 0 bits while the network asks for 12: its proofs are too weak.
    let peers = start_peers(3, |i, c| {
        c.gossip.pow_difficulty = if i == 2 { 0 } else { 12 };
    })
    .await;
    eventually(Duration::from_secs(20), "honest peers joined", || async {
        let v0 = peers[0].handle().view().await.unwrap();
        (v0.iter().any(|c| c.id == peers[1].node_id())).then_some(())
    })
    .await;
    // Give the cheater time to try (several search cooldowns).
    let refused = eventually(Duration::from_secs(10), "cheater refused", || async {
        let s = peers[0].handle().stats().await.unwrap();
        (s.peers_refused >= 1).then_some(s.peers_refused)
    })
    .await;
    assert!(refused >= 1);
    for p in &peers[..2] {
        let view = p.handle().view().await.unwrap();
        assert!(
            view.iter().all(|c| c.id != peers[2].node_id()),
            "the cheater entered a view"
        );
    }
    // Its items reach nobody.
    let mut sub = subscriber(&peers[1], 9).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut cheater = GossipApiClient::connect(peers[2].api_addr()).await.unwrap();
    cheater
        .announce(0, 9, Bytes::from_static(b"spam"))
        .await
        .unwrap();
    assert!(next_item(&mut sub, Duration::from_millis(800))
        .await
        .is_none());
    for p in peers {
        p.shutdown().await;
    }
}

/// Reads `stream` until the server closes it; the bytes read, or `None` if it stayed
/// open for `limit`.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<usize> {
    use tokio::io::AsyncReadExt;
    let end = tokio::time::Instant::now() + limit;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(total),
            Ok(Ok(n)) => total += n,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_is_dropped_and_the_others_keep_getting_items() {
    use tokio::io::AsyncWriteExt;
    let peers = start_peers(1, |_, _| {}).await;
    let node = &peers[0];
    // The attack: subscribe, then never read.
    let mut stalled = tokio::net::TcpStream::connect(node.api_addr())
        .await
        .unwrap();
    let notify = voidmesh_proto::GossipApiMessage::Notify { data_type: 7 }
        .encode()
        .unwrap();
    stalled.write_all(&notify).await.unwrap();
    let mut honest = subscriber(node, 7).await;
    let mut announcer = GossipApiClient::connect(node.api_addr()).await.unwrap();
    // Registered once a first item reaches the honest one (the stalled client's NOTIFY
    // was read before the honest client's: the API reads connections in arrival order).
    announcer
        .announce(1, 7, Bytes::from_static(b"warm-up"))
        .await
        .unwrap();
    let first = next_item(&mut honest, Duration::from_secs(5)).await;
    assert_eq!(
        first.expect("warm-up item").data,
        Bytes::from_static(b"warm-up")
    );

    // 400 items of 60 KB: 24 MB, more than the kernel buffers of a loopback connection
    // hold, so the node's own queue for the stalled client fills.
    let item = Bytes::from(vec![0x5a; 60_000]);
    let mut received = 0;
    for _ in 0..400 {
        announcer.announce(1, 7, item.clone()).await.unwrap();
        // The honest subscriber reads along.
        while let Some(got) = next_item(&mut honest, Duration::from_millis(1)).await {
            assert_eq!(got.data.len(), item.len());
            received += 1;
        }
    }
    while let Some(got) = next_item(&mut honest, Duration::from_secs(2)).await {
        assert_eq!(got.data.len(), item.len());
        received += 1;
    }
    assert_eq!(received, 400, "the honest subscriber got every item");
    // The stalled client was dropped: after what the kernel buffered, its connection
    // ends (before the bound, it stayed open with up to 128 MB queued for it).
    let buffered = read_until_closed(&mut stalled, Duration::from_secs(10)).await;
    let buffered = buffered.expect("the non-reading subscriber was disconnected");
    assert!(
        buffered < 24_000_000,
        "it got only part of the items: {buffered}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gossip_client_sending_a_byte_at_a_time_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    let peers = start_peers(1, |_, c| c.api_read_timeout = Duration::from_millis(800)).await;
    let frame = voidmesh_proto::GossipApiMessage::Notify { data_type: 7 }
        .encode()
        .unwrap();
    let mut slow = tokio::net::TcpStream::connect(peers[0].api_addr())
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    // 8 bytes at one per 300 ms would take 2.4 s; the frame gets 0.8 s.
    let mut cut = false;
    for byte in frame.iter() {
        if slow.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let closed = cut
        || read_until_closed(&mut slow, Duration::from_secs(3))
            .await
            .is_some();
    assert!(closed, "the slow client was not cut off");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut off late: {:?}",
        started.elapsed()
    );
}
