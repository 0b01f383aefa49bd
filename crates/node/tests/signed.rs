//! Signed mutable records through the DHT API extension (654–657) on a 10-node network:
//! only the key's owner can write, newer sequence numbers win, forgeries are refused.

mod common;

use bytes::Bytes;
use common::fast_kad;
use ed25519_dalek::SigningKey;
use std::time::{SystemTime, UNIX_EPOCH};
use voidmesh_node::client::DhtClient;
use voidmesh_node::testnet::Testnet;
use voidmesh_proto::dht_api::PutSignedStatus;
use voidmesh_proto::signed::SignedRecord;
use voidmesh_proto::DhtMessage;

fn in_an_hour() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600
}

fn record(owner: &SigningKey, seq: u64, value: &'static [u8]) -> SignedRecord {
    SignedRecord::sign(
        owner,
        Bytes::from_static(b"profile"),
        seq,
        in_an_hour(),
        Bytes::from_static(value),
    )
    .unwrap()
}

async fn put_signed(net: &Testnet, at: usize, record: SignedRecord) -> PutSignedStatus {
    let mut client = DhtClient::connect(net.nodes[at].api_addr()).await.unwrap();
    let key = record.key();
    client
        .send(&DhtMessage::PutSigned {
            replication: 5,
            record,
        })
        .await
        .unwrap();
    match client.recv_message().await.unwrap() {
        DhtMessage::PutSignedResult { key: k, status } => {
            assert_eq!(k, key);
            status
        }
        other => panic!("unexpected reply {other:?}"),
    }
}

async fn get_signed(net: &Testnet, at: usize, key: voidmesh_proto::Key) -> Option<SignedRecord> {
    let mut client = DhtClient::connect(net.nodes[at].api_addr()).await.unwrap();
    client.send(&DhtMessage::GetSigned { key }).await.unwrap();
    match client.recv_message().await.unwrap() {
        DhtMessage::SignedSuccess { key: k, record } => {
            assert_eq!(k, key);
            record
                .verify()
                .expect("the node returns only verified records");
            Some(record)
        }
        DhtMessage::Failure { key: k } => {
            assert_eq!(k, key);
            None
        }
        other => panic!("unexpected reply {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_writes_and_the_highest_sequence_wins() {
    let net = Testnet::start(10, fast_kad(), 4).await.unwrap();
    let owner = SigningKey::from_bytes(&[7; 32]);
    let first = record(&owner, 1, b"version one");
    let key = first.key();
    assert_eq!(
        put_signed(&net, 1, first.clone()).await,
        PutSignedStatus::Stored
    );
    for at in [0usize, 4, 9] {
        assert_eq!(
            get_signed(&net, at, key).await,
            Some(first.clone()),
            "at {at}"
        );
    }

    let second = record(&owner, 2, b"version two");
    assert_eq!(
        put_signed(&net, 6, second.clone()).await,
        PutSignedStatus::Stored
    );
    for at in [0usize, 1, 8] {
        assert_eq!(
            get_signed(&net, at, key).await,
            Some(second.clone()),
            "at {at}"
        );
    }

    // A replay of the older record is valid but not newer: nobody takes it.
    assert_eq!(put_signed(&net, 3, first).await, PutSignedStatus::NotStored);
    // A record claiming the owner's key but signed by someone else is refused.
    let thief = SigningKey::from_bytes(&[8; 32]);
    let mut forged = record(&thief, 99, b"stolen");
    forged.public_key = owner.verifying_key().to_bytes();
    assert_eq!(forged.key(), key);
    assert_eq!(put_signed(&net, 2, forged).await, PutSignedStatus::Invalid);
    // A tampered value under a genuine signature is refused too.
    let mut tampered = record(&owner, 3, b"genuine");
    tampered.value = Bytes::from_static(b"tampered");
    assert_eq!(
        put_signed(&net, 5, tampered).await,
        PutSignedStatus::Invalid
    );

    for at in 0..10 {
        assert_eq!(
            get_signed(&net, at, key).await,
            Some(second.clone()),
            "at {at}"
        );
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_signed_of_an_absent_key_answers_failure() {
    let net = Testnet::start(5, fast_kad(), 4).await.unwrap();
    let owner = SigningKey::from_bytes(&[9; 32]);
    let key = record(&owner, 1, b"never stored").key();
    assert_eq!(get_signed(&net, 2, key).await, None);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_records_survive_a_restart_from_the_data_dir() {
    use voidmesh_net::Identity;
    use voidmesh_node::service::DhtService;

    let dir = tempfile::tempdir().unwrap();
    let config = common::loopback_config();
    let identity = Identity::generate();
    let owner = SigningKey::from_bytes(&[11; 32]);
    let rec = record(&owner, 5, b"kept on disk");
    let node = DhtService::start(&identity, &config, Some(dir.path()))
        .await
        .unwrap();
    assert_eq!(
        node.handle().put_signed(rec.clone(), 3).await.unwrap(),
        PutSignedStatus::Stored
    );
    node.shutdown().await;

    let identity = Identity::from_pkcs8_pem(&identity.to_pkcs8_pem()).unwrap();
    let node = DhtService::start(&identity, &config, Some(dir.path()))
        .await
        .unwrap();
    assert_eq!(
        node.handle().get_signed(rec.key()).await.unwrap(),
        Some(rec)
    );
    node.shutdown().await;
}
