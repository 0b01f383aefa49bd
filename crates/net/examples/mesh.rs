//! Memory of N endpoints in one process, meshed: every node exchanges a request with each
//! of its `degree` successors on a ring (all others by default: a full mesh), then each of
//! those answers with a request back on the same connection.
//!
//! `cargo run --release -p voidmesh-net --example mesh [nodes] [degree]` (default 100,
//! full mesh). Prints the process RSS after binding and after meshing, and the number of
//! connection ends (two per connected pair).

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
    let degree: usize = std::env::args()
        .nth(2)
        .map_or(Ok(n.saturating_sub(1)), |s| s.parse())?
        .min(n.saturating_sub(1));
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
        let peers: Vec<_> = (1..=degree)
            .map(|k| &nodes[(i + k) % n])
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
    // And back, on the existing connections.
    let mut tasks = Vec::new();
    for (i, (_, ep)) in nodes.iter().enumerate() {
        let ep = ep.clone();
        let peers: Vec<_> = (1..=degree)
            .map(|k| &nodes[(i + n - k) % n])
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
        "meshed in {:?}: {} connection ends, RSS {:.1} MiB",
        start.elapsed(),
        connections,
        rss_mib()
    );
    Ok(())
}
