//! Helpers shared by the node integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use voidmesh_net::Identity;
use voidmesh_node::config::DhtConfig;
use voidmesh_node::service::DhtService;

/// Kademlia settings with short timeouts so failure paths finish quickly in tests.
pub fn fast_kad() -> voidmesh_kad::Config {
    voidmesh_kad::Config {
        request_timeout: Duration::from_millis(300),
        query_timeout: Duration::from_secs(3),
        ..voidmesh_kad::Config::default()
    }
}

/// A DHT module's settings on loopback (port 0) with the fast test timeouts, alone.
pub fn loopback_config() -> DhtConfig {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    DhtConfig {
        p2p_address: loopback,
        api_address: loopback,
        bootstrappers: Vec::new(),
        kad: fast_kad(),
        max_api_connections: 1024,
        api_timeouts: Default::default(),
    }
}

/// A single DHT module on loopback with fresh keys.
pub async fn single_node() -> DhtService {
    DhtService::start(&Identity::generate(), &loopback_config(), None)
        .await
        .expect("node starts")
}

/// Polls `check` until it returns `Some`, or panics with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
