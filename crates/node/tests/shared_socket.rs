//! The DHT and gossip configured with one p2p_address share one UDP socket: both serve
//! peers through it, and either may close without the other.

mod common;

use bytes::Bytes;
use common::{eventually, loopback_config};
use std::net::SocketAddr;
use std::time::Duration;
use voidmesh_net::Identity;
use voidmesh_node::client::{DhtClient, GossipApiClient};
use voidmesh_node::config::{DhtConfig, GossipConfig};
use voidmesh_node::service::{DhtService, GossipService};
use voidmesh_node::socket::P2pSockets;
use voidmesh_node::NodeError;
use voidmesh_proto::Key;

fn gossip_config(p2p_address: SocketAddr, bootstrap: Option<SocketAddr>) -> GossipConfig {
    GossipConfig {
        p2p_address,
        api_address: ([127, 0, 0, 1], 0).into(),
        bootstrappers: bootstrap.map(|a| vec![a.to_string()]).unwrap_or_default(),
        known_peers: Vec::new(),
        gossip: voidmesh_gossip::Config {
            degree: 4,
            min_connections: 1,
            max_connections: 8,
            search_cooldown: Duration::from_millis(300),
            pow_difficulty: 4,
            ..voidmesh_gossip::Config::default()
        },
        max_api_connections: 16,
        api_read_timeout: Duration::from_secs(10),
    }
}

/// A DHT and a gossip module of one node on one socket, joining through `bootstrap`.
async fn node(bootstrap: Option<SocketAddr>) -> (DhtService, GossipService) {
    let identity = Identity::generate();
    let sockets = P2pSockets::new();
    let dht_config = DhtConfig {
        bootstrappers: bootstrap.map(|a| vec![a.to_string()]).unwrap_or_default(),
        ..loopback_config()
    };
    let dht = DhtService::start_with(&identity, &dht_config, None, &sockets)
        .await
        .unwrap();
    // Configured with the address the DHT got: the same socket.
    let gossip = GossipService::start_with(
        &identity,
        &gossip_config(dht.p2p_addr(), bootstrap),
        None,
        &sockets,
    )
    .await
    .unwrap();
    (dht, gossip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dht_and_gossip_on_one_socket_serve_peers_and_close_apart() {
    let (dht_a, gossip_a) = node(None).await;
    assert_eq!(dht_a.p2p_addr(), gossip_a.p2p_addr(), "one port for both");
    let (dht_b, gossip_b) = node(Some(dht_a.p2p_addr())).await;

    // The DHT through the shared sockets: a small value in datagrams, a large one over
    // QUIC on the same port.
    let mut client_b = DhtClient::connect(dht_b.api_addr()).await.unwrap();
    let small = Key([1; 32]);
    let large = Key([2; 32]);
    let large_value = Bytes::from(vec![7u8; 40_000]);
    eventually(Duration::from_secs(10), "B joined A", || async {
        (!dht_b.handle().contacts().await.unwrap().is_empty()).then_some(())
    })
    .await;
    client_b
        .put(small, Bytes::from_static(b"small"), 600, 3)
        .await
        .unwrap();
    client_b
        .put(large, large_value.clone(), 600, 3)
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "both values at A", || async {
        let s = dht_a.handle().get(small).await.unwrap();
        let l = dht_a.handle().get(large).await.unwrap();
        (s.as_deref() == Some(&b"small"[..]) && l.as_ref() == Some(&large_value)).then_some(())
    })
    .await;

    // Gossip through the same sockets: an item announced at B reaches A's subscriber.
    let mut subscriber = GossipApiClient::connect(gossip_a.api_addr()).await.unwrap();
    subscriber.notify(9).await.unwrap();
    let mut announcer = GossipApiClient::connect(gossip_b.api_addr()).await.unwrap();
    eventually(Duration::from_secs(10), "gossip views", || async {
        (!gossip_b.handle().view().await.unwrap().is_empty()).then_some(())
    })
    .await;
    announce_until_received(&mut announcer, &mut subscriber, b"one").await;

    // A's DHT closes; its gossip keeps the socket and keeps serving.
    dht_a.shutdown().await;
    announce_until_received(&mut announcer, &mut subscriber, b"two").await;
    gossip_a.shutdown().await;
    gossip_b.shutdown().await;
    dht_b.shutdown().await;
}

/// Announces `data` until the subscriber has it (a first item may race the join).
async fn announce_until_received(
    announcer: &mut GossipApiClient,
    subscriber: &mut GossipApiClient,
    data: &'static [u8],
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        announcer
            .announce(3, 9, Bytes::from_static(data))
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_millis(500), subscriber.recv()).await {
            Ok(Ok(item)) if &item.data[..] == data => {
                subscriber.validate(item.message_id, true).await.unwrap();
                return;
            }
            Ok(Ok(item)) => subscriber.validate(item.message_id, true).await.unwrap(),
            Ok(Err(e)) => panic!("subscriber: {e}"),
            Err(_) => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "item {data:?} never arrived"
        );
    }
}

#[tokio::test]
async fn one_address_cannot_speak_for_two_hostkeys() {
    let sockets = P2pSockets::new();
    let dht = DhtService::start_with(&Identity::generate(), &loopback_config(), None, &sockets)
        .await
        .unwrap();
    let other = GossipService::start_with(
        &Identity::generate(),
        &gossip_config(dht.p2p_addr(), None),
        None,
        &sockets,
    )
    .await;
    match other {
        Err(NodeError::Bind { reason, .. }) => assert!(reason.contains("another hostkey")),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a second hostkey took the socket"),
    }
    dht.shutdown().await;
}
