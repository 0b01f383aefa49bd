//! The DHT API of one node over real TCP: the behaviour any VoidPhone client relies on.

mod common;

use bytes::Bytes;
use common::{eventually, single_node};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use voidmesh_node::client::DhtClient;
use voidmesh_proto::dht_api::MAX_VALUE_LEN;
use voidmesh_proto::Key;

fn key(n: u8) -> Key {
    Key([n; 32])
}

#[tokio::test]
async fn put_then_get_returns_the_value() {
    let node = single_node().await;
    let mut client = DhtClient::connect(node.api_addr()).await.unwrap();
    client
        .put(key(1), Bytes::from_static(b"value one"), 60, 3)
        .await
        .unwrap();
    let got = eventually(Duration::from_secs(5), "value stored", || async {
        let mut c = DhtClient::connect(node.api_addr()).await.unwrap();
        c.get(key(1)).await.unwrap()
    })
    .await;
    assert_eq!(&got[..], b"value one");
    node.shutdown().await;
}

#[tokio::test]
async fn get_of_absent_key_answers_failure() {
    let node = single_node().await;
    let mut client = DhtClient::connect(node.api_addr()).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), client.get(key(9)))
        .await
        .expect("answered within the bounded search time")
        .unwrap();
    assert_eq!(answer, None);
    node.shutdown().await;
}

#[tokio::test]
async fn fifty_pipelined_gets_are_all_answered_with_their_keys() {
    let node = single_node().await;
    let mut client = DhtClient::connect(node.api_addr()).await.unwrap();
    for i in 0..25u8 {
        client
            .put(key(i), Bytes::from(vec![i; 10]), 60, 1)
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(5), "all stored", || async {
        let mut c = DhtClient::connect(node.api_addr()).await.unwrap();
        c.get(key(24)).await.unwrap()
    })
    .await;
    // 25 present keys and 25 absent ones, all written before any answer is read.
    for i in 0..50u8 {
        client.send_get(key(i)).await.unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let (k, value) = client.recv().await.unwrap();
        let i = k.0[0];
        assert!(seen.insert(i), "key {i} answered twice");
        if i < 25 {
            assert_eq!(value, Some(Bytes::from(vec![i; 10])), "key {i}");
        } else {
            assert_eq!(value, None, "key {i}");
        }
    }
    assert_eq!(seen.len(), 50);
    node.shutdown().await;
}

#[tokio::test]
async fn largest_value_round_trips() {
    let node = single_node().await;
    let value = Bytes::from((0..MAX_VALUE_LEN).map(|i| i as u8).collect::<Vec<_>>());
    assert_eq!(value.len(), 65495);
    let mut client = DhtClient::connect(node.api_addr()).await.unwrap();
    client.put(key(7), value.clone(), 60, 1).await.unwrap();
    let got = eventually(Duration::from_secs(5), "large value stored", || async {
        let mut c = DhtClient::connect(node.api_addr()).await.unwrap();
        c.get(key(7)).await.unwrap()
    })
    .await;
    assert_eq!(got, value);
    node.shutdown().await;
}

/// Sends `bytes` on a fresh connection and expects the server to close it.
async fn expect_closed_after(addr: std::net::SocketAddr, bytes: &[u8]) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("server reacts within 5 s");
    match read {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("expected the connection closed, got {n} bytes"),
    }
}

#[tokio::test]
async fn each_bad_message_closes_only_its_own_connection() {
    let node = single_node().await;
    let addr = node.api_addr();
    let mut bystander = DhtClient::connect(addr).await.unwrap();
    bystander
        .put(key(3), Bytes::from_static(b"still here"), 60, 1)
        .await
        .unwrap();

    let mut get_37 = vec![0u8, 37, 0x02, 0x8b];
    get_37.extend_from_slice(&[0; 33]);
    let mut put_39 = vec![0u8, 39, 0x02, 0x8a];
    put_39.extend_from_slice(&[0; 35]);
    let mut unknown = vec![0u8, 8, 0x03, 0xe7];
    unknown.extend_from_slice(&[0; 4]);
    let mut success_from_client = vec![0u8, 36, 0x02, 0x8c];
    success_from_client.extend_from_slice(&[0; 32]);
    let mut failure_from_client = vec![0u8, 36, 0x02, 0x8d];
    failure_from_client.extend_from_slice(&[0; 32]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("size below header", vec![0, 3, 0x02, 0x8b]),
        ("size zero", vec![0, 0, 0, 0]),
        ("GET of 37 bytes", get_37),
        ("PUT shorter than 40", put_39),
        ("unknown type", unknown),
        ("SUCCESS sent by a client", success_from_client),
        ("FAILURE sent by a client", failure_from_client),
    ];
    for (name, bytes) in cases {
        eprintln!("case: {name}");
        expect_closed_after(addr, &bytes).await;
    }
    // A client that vanishes mid-message costs nothing.
    {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&[0, 200, 0x02, 0x8a, 1, 2]).await.unwrap();
    }
    // The well-behaved connection opened before all that still works.
    let got = eventually(Duration::from_secs(5), "bystander served", || async {
        let mut c = DhtClient::connect(addr).await.unwrap();
        c.get(key(3)).await.unwrap()
    })
    .await;
    assert_eq!(&got[..], b"still here");
    assert_eq!(
        bystander.get(key(3)).await.unwrap().as_deref(),
        Some(&b"still here"[..])
    );
    node.shutdown().await;
}

#[tokio::test]
async fn two_hundred_concurrent_clients_are_all_served() {
    let node = single_node().await;
    let addr = node.api_addr();
    let mut setup = DhtClient::connect(addr).await.unwrap();
    setup
        .put(key(42), Bytes::from_static(b"shared"), 60, 1)
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "stored", || async {
        let mut c = DhtClient::connect(addr).await.unwrap();
        c.get(key(42)).await.unwrap()
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..200 {
        clients.push(DhtClient::connect(addr).await.unwrap());
    }
    let tasks = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| async move {
            let absent = Key([0xEE; 32]);
            let found = c.get(key(42)).await.unwrap();
            let missing = c.get(absent).await.unwrap();
            (i, found, missing)
        });
    let results = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(tasks))
        .await
        .expect("all 200 clients answered");
    assert_eq!(results.len(), 200);
    for (i, found, missing) in results {
        assert_eq!(found.as_deref(), Some(&b"shared"[..]), "client {i}");
        assert_eq!(missing, None, "client {i}");
    }
    node.shutdown().await;
}

#[tokio::test]
async fn gets_sent_before_the_client_half_closes_are_all_answered() {
    use voidmesh_proto::DhtMessage;
    let node = single_node().await;
    let mut client = DhtClient::connect(node.api_addr()).await.unwrap();
    client
        .put(key(1), Bytes::from_static(b"present"), 60, 1)
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "stored", || async {
        let mut c = DhtClient::connect(node.api_addr()).await.unwrap();
        c.get(key(1)).await.unwrap()
    })
    .await;
    // Twenty GETs in one write, then the client says it is done sending.
    let mut stream = TcpStream::connect(node.api_addr()).await.unwrap();
    let mut out = Vec::new();
    for i in 0..20u8 {
        let get = DhtMessage::Get { key: key(i % 2) };
        out.extend_from_slice(&get.encode().unwrap());
    }
    stream.write_all(&out).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut back))
        .await
        .expect("the node answers, then closes")
        .unwrap();
    let (mut found, mut missing, mut rest) = (0, 0, &back[..]);
    while rest.len() >= 2 {
        let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        match DhtMessage::decode(&Bytes::copy_from_slice(&rest[..size])).unwrap() {
            DhtMessage::Success { key: k, value } => {
                assert_eq!((k, &value[..]), (key(1), &b"present"[..]));
                found += 1;
            }
            DhtMessage::Failure { key: k } => {
                assert_eq!(k, key(0));
                missing += 1;
            }
            other => panic!("unexpected reply {other:?}"),
        }
        rest = &rest[size..];
    }
    assert_eq!((found, missing, rest.len()), (10, 10, 0));
    node.shutdown().await;
}
