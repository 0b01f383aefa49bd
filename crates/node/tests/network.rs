//! Thirty DHT modules in one process over loopback QUIC, used through the real API.

mod common;

use bytes::Bytes;
use common::{eventually, fast_kad};
use std::time::{Duration, Instant};
use voidmesh_node::client::DhtClient;
use voidmesh_node::testnet::Testnet;
use voidmesh_proto::Key;

async fn testnet(n: usize) -> Testnet {
    Testnet::start(n, fast_kad(), 8)
        .await
        .expect("testnet starts")
}

/// Fetches `key` from node `i` through its API.
async fn get_at(net: &Testnet, i: usize, key: Key) -> Option<Bytes> {
    let mut client = DhtClient::connect(net.nodes[i].api_addr()).await.unwrap();
    client.get(key).await.unwrap()
}

/// Puts through node `i`'s handle, waiting until the STOREs are answered.
async fn put_at(net: &Testnet, i: usize, key: Key, value: &Bytes, ttl: u64, replication: u8) {
    let report = net.nodes[i]
        .handle()
        .put(key, value.clone(), Duration::from_secs(ttl), replication)
        .await
        .unwrap();
    assert!(
        report.stored_remote >= 1,
        "PUT at node {i} stored on no remote node: {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_put_at_any_node_is_found_from_every_other_node() {
    let net = testnet(30).await;
    let mut latencies = Vec::new();
    for putter in [0usize, 7, 29] {
        let key = Key([putter as u8 + 100; 32]);
        let value = Bytes::from(format!("from {putter}"));
        // Through the API, as a client would: PUT has no reply.
        let mut client = DhtClient::connect(net.nodes[putter].api_addr())
            .await
            .unwrap();
        client.put(key, value.clone(), 300, 5).await.unwrap();
        eventually(Duration::from_secs(5), "put propagated", || async {
            get_at(&net, (putter + 1) % 30, key).await
        })
        .await;
        for getter in 0..30 {
            let started = Instant::now();
            let got = get_at(&net, getter, key).await;
            latencies.push(started.elapsed());
            assert_eq!(
                got.as_ref(),
                Some(&value),
                "GET at {getter} of key put at {putter}"
            );
        }
    }
    latencies.sort();
    eprintln!(
        "30-node GET latency: p50 {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_key_and_expired_value_answer_failure() {
    let net = testnet(30).await;
    assert_eq!(get_at(&net, 5, Key([0xAB; 32])).await, None);

    let key = Key([0x22; 32]);
    let value = Bytes::from_static(b"short-lived");
    put_at(&net, 3, key, &value, 2, 5).await;
    assert_eq!(get_at(&net, 17, key).await, Some(value));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for getter in [3usize, 17, 25] {
        assert_eq!(get_at(&net, getter, key).await, None, "expired at {getter}");
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_survive_a_third_of_the_nodes_stopping() {
    let mut net = testnet(30).await;
    let mut stored = Vec::new();
    for i in 0..20u8 {
        let key = Key([i.wrapping_mul(37).wrapping_add(1); 32]);
        let value = Bytes::from(vec![i; 64]);
        put_at(&net, i as usize % 30, key, &value, 600, 8).await;
        stored.push((key, value));
    }
    // Stop 10 nodes (not node 0, to keep the test about replication, not bootstrap).
    let stopped: Vec<_> = net.nodes.drain(20..30).collect();
    for node in stopped {
        node.shutdown().await;
    }
    for (n, (key, value)) in stored.iter().enumerate() {
        for getter in [0usize, 5, 11, 19] {
            let got = get_at(&net, getter, *key).await;
            assert_eq!(got.as_ref(), Some(value), "value {n} at survivor {getter}");
        }
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_too_large_for_a_datagram_travel_over_quic_on_the_same_port() {
    let net = testnet(12).await;
    // The largest value the API takes: its STORE and FIND_VALUE reply cannot be
    // datagrams, so they go over QUIC streams to the overlay port.
    let value = Bytes::from(
        (0..voidmesh_proto::dht_api::MAX_VALUE_LEN)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
    );
    let small = Bytes::from_static(b"fits a datagram");
    put_at(&net, 2, Key([0x61; 32]), &value, 300, 3).await;
    put_at(&net, 2, Key([0x62; 32]), &small, 300, 3).await;
    for getter in [0usize, 5, 11] {
        assert_eq!(
            get_at(&net, getter, Key([0x61; 32])).await.as_ref(),
            Some(&value)
        );
        assert_eq!(
            get_at(&net, getter, Key([0x62; 32])).await.as_ref(),
            Some(&small)
        );
    }
    net.shutdown().await;
}
