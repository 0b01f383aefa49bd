//! The disk follows the record store's bounds: what the store evicts or lets expire
//! leaves `dht.redb` too, and a restart loads no more than the bounds allow. Written as
//! the attack: far more bytes than `max_record_bytes`, from the API and from a peer.

mod common;

use bytes::Bytes;
use common::{eventually, loopback_config};
use std::path::Path;
use std::time::Duration;
use voidmesh_net::Identity;
use voidmesh_node::client::DhtClient;
use voidmesh_node::config::DhtConfig;
use voidmesh_node::service::DhtService;
use voidmesh_node::storage::Storage;
use voidmesh_proto::Key;

const BOUND: usize = 1 << 20;
const VALUE: usize = 60_000;

fn bounded_config(bootstrappers: Vec<String>) -> DhtConfig {
    let base = loopback_config();
    DhtConfig {
        bootstrappers,
        kad: voidmesh_kad::Config {
            max_record_bytes: BOUND,
            ..base.kad.clone()
        },
        ..base
    }
}

fn key(n: u32) -> Key {
    let mut k = [0x77; 32];
    k[..4].copy_from_slice(&n.to_be_bytes());
    Key(k)
}

/// Bytes of record values a restart would load from `dir`, and the file's size.
fn on_disk(dir: &Path) -> (usize, u64) {
    let path = dir.join("dht.redb");
    let size = std::fs::metadata(&path).unwrap().len();
    let (_storage, loaded) = Storage::open(&path, BOUND).unwrap();
    let values = loaded.records.iter().map(|r| r.value.len()).sum();
    (values, size)
}

/// What a file holding at most `BOUND` bytes of records may weigh: the storage compacts
/// beyond this (redb's copy-on-write pages and free lists). The attack before this
/// defence left 34–68 MB.
const FILE_LIMIT: u64 = 2 * BOUND as u64 + voidmesh_node::storage::FILE_SLACK;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_puts_far_beyond_the_bound_leave_the_disk_within_it() {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::generate();
    let node = DhtService::start(&identity, &bounded_config(vec![]), Some(dir.path()))
        .await
        .unwrap();
    let mut client = DhtClient::connect(node.api_addr()).await.unwrap();
    let value = Bytes::from(vec![0xab; VALUE]);
    // 3000 × 60 KB = 180 MB offered to a 1 MiB store; each later PUT expires later, so
    // each evicts the oldest.
    for n in 0..3000 {
        client.put(key(n), value.clone(), 3600, 1).await.unwrap();
    }
    assert_eq!(client.get(key(2999)).await.unwrap(), Some(value.clone()));
    assert_eq!(client.get(key(0)).await.unwrap(), None, "evicted");
    node.shutdown().await;

    let (values, size) = on_disk(dir.path());
    eprintln!("after 3000 × 60 KB API PUTs: {values} value bytes to load, file {size} bytes");
    assert!(values <= BOUND, "a restart would load {values} bytes");
    assert!(size <= FILE_LIMIT, "dht.redb is {size} bytes");

    // The restarted node serves what it kept, and only that.
    let node = DhtService::start(&identity, &bounded_config(vec![]), Some(dir.path()))
        .await
        .unwrap();
    let mut client = DhtClient::connect(node.api_addr()).await.unwrap();
    assert_eq!(client.get(key(2999)).await.unwrap(), Some(value));
    assert_eq!(client.get(key(0)).await.unwrap(), None);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_from_a_peer_far_beyond_the_bound_leave_the_disk_within_it() {
    let dir = tempfile::tempdir().unwrap();
    let holder = DhtService::start(
        &Identity::generate(),
        &bounded_config(vec![]),
        Some(dir.path()),
    )
    .await
    .unwrap();
    let peer = DhtService::start(
        &Identity::generate(),
        &bounded_config(vec![holder.p2p_addr().to_string()]),
        None,
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(10), "peer joined", || async {
        let contacts = peer.handle().contacts().await.unwrap();
        (!contacts.is_empty()).then_some(())
    })
    .await;
    // 400 STOREs of 60 KB (replication 2: the holder is always one of the two).
    let value = Bytes::from(vec![0xcd; VALUE]);
    let mut stored = 0;
    for n in 0..400 {
        let report = peer
            .handle()
            .put(key(n), value.clone(), Duration::from_secs(3600), 2)
            .await
            .unwrap();
        stored += report.stored_remote;
    }
    assert!(stored >= 390, "the holder took the STOREs ({stored})");
    peer.shutdown().await;
    holder.shutdown().await;
    let (values, size) = on_disk(dir.path());
    eprintln!("after 400 × 60 KB STOREs: {values} value bytes to load, file {size} bytes");
    assert!(values <= BOUND, "a restart would load {values} bytes");
    assert!(size <= FILE_LIMIT, "dht.redb is {size} bytes");
}
