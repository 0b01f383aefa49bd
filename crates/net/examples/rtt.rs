//! Mean round-trip time of warm requests between two endpoints on loopback.
//!
//! `cargo run --release -p voidmesh-net --example rtt [requests]` (default 10 000).
//! Prints the mean and a few percentiles of sequential request/response exchanges on one
//! warm connection, the throughput of 64 concurrent requesters, and the cost of a cold
//! request (new connection: QUIC + TLS 1.3 handshake with Ed25519 certificates).

use bytes::{BufMut, Bytes, BytesMut};
use std::time::{Duration, Instant};
use voidmesh_net::{Endpoint, EndpointConfig, Identity};

fn frame(msg_type: u16, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(6 + body.len());
    b.put_u32(6 + body.len() as u32);
    b.put_u16(msg_type);
    b.put_slice(body);
    b.freeze()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map_or(Ok(10_000), |s| s.parse())?;
    let config = EndpointConfig::default();
    let local = "127.0.0.1:0".parse()?;
    let (a, _a_rx) = Endpoint::bind(&Identity::generate(), local, config.clone())?;
    let server = Identity::generate();
    let (b, mut b_rx) = Endpoint::bind(&server, local, config)?;
    tokio::spawn(async move {
        let reply = frame(670, &[0u8; 32]);
        while let Some(inbound) = b_rx.recv().await {
            if let Some(r) = inbound.reply {
                r.send(reply.clone());
            }
        }
    });
    let (to, id) = (b.local_addr(), Some(server.node_id()));
    let request = frame(660, &[0u8; 40]);
    for _ in 0..1000 {
        a.request(to, id, request.clone()).await?;
    }

    let mut samples = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        a.request(to, id, request.clone()).await?;
        samples.push(t.elapsed());
    }
    let total = start.elapsed();
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{n} sequential warm requests: mean {:.1} µs, p50 {:?}, p99 {:?}, max {:?}",
        total.as_secs_f64() * 1e6 / n as f64,
        pct(0.5),
        pct(0.99),
        samples[samples.len() - 1]
    );

    let concurrency = 64;
    let per_task = n / concurrency;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (a, request) = (a.clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                a.request(to, id, request.clone()).await?;
            }
            Ok::<_, voidmesh_net::NetError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let took = start.elapsed().max(Duration::from_nanos(1));
    println!(
        "{} requests from {concurrency} concurrent requesters: {:.0} requests/s",
        per_task * concurrency,
        (per_task * concurrency) as f64 / took.as_secs_f64()
    );
    println!(
        "connections: a {}, b {}",
        a.connection_count(),
        b.connection_count()
    );

    // Cold requests: a fresh client endpoint each time, so every request needs a handshake.
    let cold = 200;
    let mut clients = Vec::with_capacity(cold);
    for _ in 0..cold {
        clients.push(Endpoint::bind(
            &Identity::generate(),
            local,
            EndpointConfig::default(),
        )?);
    }
    let cpu_before = cpu_seconds();
    let start = Instant::now();
    for (client, _) in &clients {
        client.request(to, id, request.clone()).await?;
    }
    let took = start.elapsed();
    println!(
        "{cold} cold requests (handshake included): mean {:.0} µs, process CPU {:.0} µs each",
        took.as_secs_f64() * 1e6 / cold as f64,
        (cpu_seconds() - cpu_before) * 1e6 / cold as f64
    );
    Ok(())
}

/// User + system CPU time of this process so far, in seconds (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the full line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}
