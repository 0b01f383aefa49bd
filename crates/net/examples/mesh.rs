//! Memory of N endpoints in one process, fully meshed (every pair has exchanged a request).
//!
//! `cargo run --release -p voidmesh-net --example mesh [nodes]` (default 100). Prints the
//! process RSS after binding, after the mesh is built, and the connection count.

use bytes::{BufMut, Bytes, BytesMut};
use std::time::Instant;
use voidmesh_net::{Endpoint, EndpointConfig, Identity};

fn frame(msg_type: u16, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(6 + body.len());
    b.put_u32(6 + body.len() as u32);
    b.put_u16(msg_type);
    b.put_slice(body);
    b.freeze()
}

/// Resident set size from /proc (Linux), in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map_or(Ok(100), |s| s.parse())?;
    println!("start: RSS {:.1} MiB", rss_mib());
    let local = "127.0.0.1:0".parse()?;
    let mut nodes = Vec::new();
    for _ in 0..n {
        let identity = Identity::generate();
        let (ep, mut rx) = Endpoint::bind(&identity, local, EndpointConfig::default())?;
        tokio::spawn(async move {
            let reply = frame(670, &[0u8; 32]);
            while let Some(inbound) = rx.recv().await {
                if let Some(r) = inbound.reply {
                    r.send(reply.clone());
                }
            }
        });
        nodes.push((identity.node_id(), ep));
    }
    println!("{n} endpoints bound: RSS {:.1} MiB", rss_mib());

    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, (_, ep)) in nodes.iter().enumerate() {
        let ep = ep.clone();
        let peers: Vec<_> = nodes
            .iter()
            .skip(i + 1)
            .map(|(id, p)| (*id, p.local_addr()))
            .collect();
        tasks.push(tokio::spawn(async move {
            for (id, addr) in peers {
                ep.request(addr, Some(id), frame(660, &[0u8; 40])).await?;
            }
            Ok::<_, voidmesh_net::NetError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    // And back: every node asks every other one, on the existing connections.
    let mut tasks = Vec::new();
    for (i, (_, ep)) in nodes.iter().enumerate() {
        let ep = ep.clone();
        let peers: Vec<_> = nodes
            .iter()
            .take(i)
            .map(|(id, p)| (*id, p.local_addr()))
            .collect();
        tasks.push(tokio::spawn(async move {
            for (id, addr) in peers {
                ep.request(addr, Some(id), frame(660, &[0u8; 40])).await?;
            }
            Ok::<_, voidmesh_net::NetError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let connections: usize = nodes.iter().map(|(_, ep)| ep.connection_count()).sum();
    println!(
        "meshed in {:?}: {} connection ends ({} expected), RSS {:.1} MiB",
        start.elapsed(),
        connections,
        n * (n - 1),
        rss_mib()
    );
    Ok(())
}
