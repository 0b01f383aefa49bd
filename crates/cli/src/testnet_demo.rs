//! `voidmesh testnet`: a local network to try the DHT API against.

use anyhow::{Context, Result};
use bytes::Bytes;
use std::time::Instant;
use voidmesh_node::client::DhtClient;
use voidmesh_node::testnet::Testnet;
use voidmesh_proto::Key;

/// Starts `n` nodes, prints their API addresses, demonstrates PUT at one node and GET at
/// others through the real API, then waits for Ctrl-C.
pub async fn run(n: usize) -> Result<()> {
    anyhow::ensure!(n >= 1, "--nodes must be at least 1");
    let started = Instant::now();
    let net = Testnet::start(n, voidmesh_kad::Config::default(), 32).await?;
    println!(
        "{n} nodes up and joined in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    for (i, node) in net.nodes.iter().enumerate() {
        println!(
            "node {i:>3}  api {}  p2p {}  id {}",
            node.api_addr(),
            node.p2p_addr(),
            &node.node_id().to_hex()[..16]
        );
    }
    println!();
    for round in 0..3usize {
        let putter = round % n;
        let getter = (round * 7 + n / 2) % n;
        let key = Key(rand::random());
        let value = Bytes::from(format!("hello from node {putter}, round {round}"));
        let mut client = DhtClient::connect(net.nodes[putter].api_addr()).await?;
        client.put(key, value.clone(), 600, 5).await?;
        // A PUT has no reply; give the STOREs a moment before asking elsewhere.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let mut reader = DhtClient::connect(net.nodes[getter].api_addr()).await?;
        let asked = Instant::now();
        let got = reader.get(key).await.context("GET")?;
        let took = asked.elapsed();
        match got {
            Some(v) if v == value => println!(
                "PUT at node {putter}, GET at node {getter}: found {:?} in {:.2} ms",
                String::from_utf8_lossy(&v),
                took.as_secs_f64() * 1000.0
            ),
            Some(_) => println!("PUT at node {putter}, GET at node {getter}: WRONG value"),
            None => println!("PUT at node {putter}, GET at node {getter}: not found"),
        }
    }
    println!("\nRunning; connect any VoidPhone DHT client to an api address above. Ctrl-C stops.");
    tokio::signal::ctrl_c().await?;
    net.shutdown().await;
    Ok(())
}
