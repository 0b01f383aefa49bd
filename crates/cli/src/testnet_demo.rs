//! `voidmesh testnet`: a local network to try the DHT API against, with the repository's
//! own client (`voidmesh put|get --api`).

use anyhow::{Context, Result};
use bytes::Bytes;
use std::time::Instant;
use voidmesh_node::client::DhtClient;
use voidmesh_node::testnet::Testnet;
use voidmesh_proto::Key;

/// Starts `n` nodes (on fixed ports from `base_port` if given), prints one line per node,
/// demonstrates PUT at one node and GET at others through the real API, then waits for
/// Ctrl-C.
pub async fn run(n: usize, base_port: Option<u16>) -> Result<()> {
    anyhow::ensure!(n >= 1, "--nodes must be at least 1");
    let started = Instant::now();
    let net = Testnet::start_at(n, voidmesh_kad::Config::default(), 32, base_port).await?;
    println!(
        "one network of {n} nodes on 127.0.0.1, node 0 first and the others joined through it, in {:.2} s",
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
    let first = net.nodes[0].api_addr();
    let last = net.nodes[n - 1].api_addr();
    println!("\nRunning. Try it from another terminal (the API is docs/voidphone-api.md):");
    println!("  voidmesh put --api {first} greeting 'hello'");
    println!("  voidmesh get --api {last} greeting");
    println!("Ctrl-C stops.");
    tokio::signal::ctrl_c().await?;
    net.shutdown().await;
    Ok(())
}
