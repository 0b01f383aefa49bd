//! What other people's VoidPhone clients rely on, over the real API: short TTLs live as
//! long as the PUT asked (and no longer), and a GET right after a PUT at the same node
//! sees it, on any connection.

mod common;

use bytes::Bytes;
use common::{fast_kad, single_node};
use std::time::Duration;
use tokio::time::{sleep_until, Instant};
use voidmesh_node::client::DhtClient;
use voidmesh_node::testnet::Testnet;
use voidmesh_proto::Key;

/// What each node of `net` answers for `key`, through its API.
async fn answers(net: &Testnet, key: Key) -> Vec<Option<Bytes>> {
    let mut out = Vec::new();
    for node in &net.nodes {
        let mut client = DhtClient::connect(node.api_addr()).await.unwrap();
        out.push(client.get(key).await.unwrap());
    }
    out
}

/// Slack allowed after a TTL before every copy is gone: each hop may add its transit time
/// and 1 ms of rounding up; on loopback that is far below this.
const EXPIRY_SLACK: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_put_is_found_from_every_node_and_gone_after_its_ttl() {
    let net = Testnet::start(5, fast_kad(), 4).await.expect("testnet");
    for (n, ttl_secs) in [(0u8, 1u16), (1, 1), (2, 2), (3, 2), (4, 1), (5, 2)] {
        let putter = usize::from(n) % net.nodes.len();
        let key = Key([0x40 + n; 32]);
        let value = Bytes::from(format!("short {n}"));
        let ttl = Duration::from_secs(u64::from(ttl_secs));
        let mut client = DhtClient::connect(net.nodes[putter].api_addr())
            .await
            .unwrap();
        // The reference client's PUT: replication 1, no reply, then GETs.
        let put_at = Instant::now();
        client.put(key, value.clone(), ttl_secs, 1).await.unwrap();

        // Before the TTL: half a second after the PUT, and half a second before its end.
        sleep_until(put_at + Duration::from_millis(500)).await;
        let early = answers(&net, key).await;
        assert!(
            early.iter().all(|a| a.as_ref() == Some(&value)),
            "key {n} (TTL {ttl_secs} s, put at node {putter}) after 0.5 s: {early:?}"
        );
        if ttl_secs > 1 {
            sleep_until(put_at + ttl - Duration::from_millis(500)).await;
            let late = answers(&net, key).await;
            assert!(
                late.iter().all(|a| a.as_ref() == Some(&value)),
                "key {n} 0.5 s before its TTL: {late:?}"
            );
        }
        // After the TTL and the slack: gone everywhere (no copy outlived it).
        sleep_until(put_at + ttl + EXPIRY_SLACK).await;
        let after = answers(&net, key).await;
        assert!(
            after.iter().all(Option::is_none),
            "key {n} (TTL {ttl_secs} s) still found after TTL + {EXPIRY_SLACK:?}: {after:?}"
        );
    }
    net.shutdown().await;
}

/// PUT on one connection, GET on another with no delay in between, `rounds` times.
/// Returns the rounds whose GET missed.
async fn put_here_get_there(api: std::net::SocketAddr, rounds: u32, tag: u8) -> Vec<u32> {
    let mut writer = DhtClient::connect(api).await.unwrap();
    let mut reader = DhtClient::connect(api).await.unwrap();
    let mut missed = Vec::new();
    for round in 0..rounds {
        let mut key = [tag; 32];
        key[..4].copy_from_slice(&round.to_be_bytes());
        let key = Key(key);
        let value = Bytes::from(round.to_be_bytes().to_vec());
        writer.put(key, value.clone(), 60, 1).await.unwrap();
        if reader.get(key).await.unwrap() != Some(value) {
            missed.push(round);
        }
    }
    missed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_on_another_connection_right_after_a_put_sees_it_on_a_single_node() {
    let node = single_node().await;
    let missed = put_here_get_there(node.api_addr(), 1000, 1).await;
    assert!(missed.is_empty(), "GETs that missed the PUT: {missed:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_on_another_connection_right_after_a_put_sees_it_in_a_network() {
    // The defaults (read quorum 3): the GET asks the network, which may not hold the
    // record yet; the node's own write still counts.
    let net = Testnet::start(8, fast_kad(), 4).await.expect("testnet");
    let missed = put_here_get_there(net.nodes[3].api_addr(), 200, 2).await;
    assert!(missed.is_empty(), "GETs that missed the PUT: {missed:?}");
    net.shutdown().await;
}
