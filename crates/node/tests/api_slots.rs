//! A DHT API client holds its connection only while it does its part: a frame must be
//! finished within `api_read_timeout` once started, and a connection with nothing to
//! do is closed after `api_idle_timeout`. Written as the attacks: slowloris and idle
//! connections.

mod common;

use common::loopback_config;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use voidmesh_net::Identity;
use voidmesh_node::client::DhtClient;
use voidmesh_node::config::{ApiTimeouts, DhtConfig};
use voidmesh_node::service::DhtService;
use voidmesh_proto::{DhtMessage, Key};

async fn node(timeouts: ApiTimeouts) -> DhtService {
    let config = DhtConfig {
        api_timeouts: timeouts,
        ..loopback_config()
    };
    DhtService::start(&Identity::generate(), &config, None)
        .await
        .expect("node starts")
}

/// Waits until the server closes `stream` (EOF or reset); returns how long that took.
async fn closed_after(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        match timeout(
            limit.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_a_byte_at_a_time_is_cut_off() {
    let node = node(ApiTimeouts {
        read: Duration::from_millis(800),
        idle: Duration::from_secs(60),
    })
    .await;
    let frame = DhtMessage::Get { key: Key([7; 32]) }.encode().unwrap();
    let mut slow = TcpStream::connect(node.api_addr()).await.unwrap();
    let started = Instant::now();
    // 36 bytes at one per 100 ms would take 3.6 s; the server gives the frame 0.8 s.
    let mut sent = 0;
    let closed = loop {
        if slow.write_all(&frame[sent..sent + 1]).await.is_err() {
            break true;
        }
        sent += 1;
        if sent == frame.len() {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(2) {
            break closed_after(&mut slow, Duration::from_millis(10))
                .await
                .is_some();
        }
    };
    let closed = closed
        || closed_after(&mut slow, Duration::from_secs(2))
            .await
            .is_some();
    assert!(
        closed,
        "slowloris client still connected after {sent} bytes"
    );
    assert!(
        sent < frame.len(),
        "the whole frame got through ({sent} bytes)"
    );
    // Honest clients are served meanwhile and after.
    let mut client = DhtClient::connect(node.api_addr()).await.unwrap();
    assert_eq!(client.get(Key([1; 32])).await.unwrap(), None);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_and_a_busy_one_is_not() {
    let node = node(ApiTimeouts {
        read: Duration::from_secs(10),
        idle: Duration::from_millis(700),
    })
    .await;
    let mut idle = TcpStream::connect(node.api_addr()).await.unwrap();
    let mut busy = DhtClient::connect(node.api_addr()).await.unwrap();
    // The busy client asks every 300 ms, for 2 s; the idle one never does.
    for _ in 0..7 {
        assert_eq!(busy.get(Key([2; 32])).await.unwrap(), None);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let idle_closed = closed_after(&mut idle, Duration::from_millis(100)).await;
    assert!(
        idle_closed.is_some(),
        "idle connection kept past its timeout"
    );
    assert_eq!(
        busy.get(Key([2; 32])).await.unwrap(),
        None,
        "busy client kept"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_a_new_client_takes_the_longest_idle_slot() {
    const LIMIT: usize = 400;
    let config = DhtConfig {
        max_api_connections: LIMIT,
        ..loopback_config()
    };
    let node = DhtService::start(&Identity::generate(), &config, None)
        .await
        .expect("node starts");
    let addr = node.api_addr();
    // The attack: connections that say nothing, up to the limit. The first of them
    // then makes one request, so the longest idle is the second.
    let mut idle = Vec::new();
    for _ in 0..LIMIT {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut first = DhtClient::from_stream(idle.remove(0)).unwrap();
    assert_eq!(first.get(Key([9; 32])).await.unwrap(), None);

    let mut fresh = timeout(Duration::from_secs(1), async {
        let mut c = DhtClient::connect(addr).await.unwrap();
        c.get(Key([3; 32])).await.unwrap();
        c
    })
    .await
    .expect("a new client is served within 1 s at the limit");
    assert_eq!(fresh.get(Key([3; 32])).await.unwrap(), None);
    let given_way = closed_after(&mut idle[0], Duration::from_secs(2)).await;
    assert!(given_way.is_some(), "the longest idle connection gave way");
    assert!(
        closed_after(&mut idle[1], Duration::from_millis(200))
            .await
            .is_none(),
        "only one connection gave way"
    );
    // The one that had made a request was idle for less time: still served.
    assert_eq!(first.get(Key([4; 32])).await.unwrap(), None);
}
