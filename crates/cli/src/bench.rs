//! `voidmesh bench`: the standard W1 workload on a real loopback network, and a load
//! client for one node's DHT API. Each prints one JSON line as its last line.

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use voidmesh_node::client::DhtClient;
use voidmesh_node::testnet::Testnet;
use voidmesh_proto::Key;

/// Options of `voidmesh bench w1`.
#[derive(clap::Args)]
pub struct W1Args {
    /// Nodes in the network.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// PUT operations (each a fresh key).
    #[arg(long, default_value_t = 500)]
    pub puts: usize,
    /// Operations in flight.
    #[arg(long, default_value_t = 16)]
    pub in_flight: usize,
    /// Joins in flight while bootstrapping.
    #[arg(long, default_value_t = 16)]
    pub join_concurrency: usize,
    /// Seed for keys, values and node choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Kademlia `disjoint_paths` (default: the node's default).
    #[arg(long)]
    pub disjoint_paths: Option<usize>,
    /// Kademlia `read_quorum` (default: the node's default).
    #[arg(long)]
    pub read_quorum: Option<usize>,
}

/// Options of `voidmesh bench api`.
#[derive(clap::Args)]
pub struct ApiArgs {
    /// The DHT API to load.
    #[arg(long)]
    pub addr: SocketAddr,
    /// Client connections.
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Requests in flight per connection (pipeline depth).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// What to send.
    #[arg(long, value_enum, default_value_t = Mix::Get)]
    pub mix: Mix,
    /// Distinct keys used.
    #[arg(long, default_value_t = 10_000)]
    pub keys: usize,
    /// Value size in bytes for PUTs and the preload.
    #[arg(long, default_value_t = 128)]
    pub value_size: usize,
    /// Store every key once before measuring.
    #[arg(long, default_value_t = true)]
    pub preload: bool,
    /// Seconds to measure.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Protocol to speak: the VoidPhone DHT API, or RESP to load redis-server with the
    /// same client (`--mix get` only).
    #[arg(long, value_enum, default_value_t = crate::load::Protocol::Voidphone)]
    pub protocol: crate::load::Protocol,
}

/// Request mix of `bench api`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Mix {
    /// Only GETs.
    Get,
    /// Only PUTs (no reply on the API; throughput of writes).
    Put,
    /// 90 % GET, 10 % PUT.
    Mixed,
}

fn histogram() -> Histogram<u64> {
    // Microseconds, up to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Peak resident set size of this process (VmHWM) in MB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Runs W1 and prints the JSON line.
pub async fn w1(args: W1Args) -> Result<()> {
    anyhow::ensure!(args.nodes >= 2, "W1 needs at least 2 nodes");
    let mut rng = StdRng::seed_from_u64(args.seed);
    let started = Instant::now();
    let defaults = voidmesh_kad::Config::default();
    let kad = voidmesh_kad::Config {
        disjoint_paths: args.disjoint_paths.unwrap_or(defaults.disjoint_paths),
        read_quorum: args.read_quorum.unwrap_or(defaults.read_quorum),
        ..defaults
    };
    let notes = format!(
        "in-process, loopback UDP (authenticated datagrams; QUIC for values over a datagram), k={} alpha={} d={} read_quorum={}, {} in flight, PUT replication 20",
        kad.k, kad.alpha, kad.disjoint_paths, kad.read_quorum, args.in_flight
    );
    let net = Testnet::start(args.nodes, kad, args.join_concurrency)
        .await
        .context("starting the network")?;
    let bootstrap_s = started.elapsed().as_secs_f64();
    eprintln!("bootstrap: {bootstrap_s:.2} s for {} nodes", args.nodes);
    let handles: Vec<_> = net.nodes.iter().map(|n| n.handle()).collect();

    // PUT phase.
    let ops: Vec<(usize, Key, Bytes)> = (0..args.puts)
        .map(|_| {
            let node = rng.gen_range(0..args.nodes);
            let mut value = vec![0u8; 128];
            rng.fill(&mut value[..]);
            (node, Key(rng.gen()), Bytes::from(value))
        })
        .collect();
    let put_results = bounded(&ops, args.in_flight, |(node, key, value)| {
        let handle = handles[*node].clone();
        let (key, value) = (*key, value.clone());
        async move {
            let report = handle.put(key, value, Duration::from_secs(3600), 20).await;
            matches!(report, Ok(r) if r.stored_remote >= 1)
        }
    })
    .await;
    let mut put_hist = histogram();
    let mut stored = Vec::new();
    for ((ok, took), op) in put_results.iter().zip(&ops) {
        put_hist.record(took.as_micros().max(1) as u64)?;
        if *ok {
            stored.push(op.clone());
        }
    }
    let put_ok = stored.len();
    eprintln!("put phase: {put_ok}/{} ok", args.puts);

    // GET phase: each stored key from a random node other than its putter.
    let gets: Vec<(usize, Key, Bytes)> = stored
        .iter()
        .map(|(putter, key, value)| {
            let mut node = rng.gen_range(0..args.nodes - 1);
            if node >= *putter {
                node += 1;
            }
            (node, *key, value.clone())
        })
        .collect();
    let get_started = Instant::now();
    let get_results = bounded(&gets, args.in_flight, |(node, key, value)| {
        let handle = handles[*node].clone();
        let (key, value) = (*key, value.clone());
        async move { matches!(handle.get(key).await, Ok(Some(v)) if v == value) }
    })
    .await;
    let get_wall = get_started.elapsed().as_secs_f64();
    let mut get_hist = histogram();
    let mut get_ok = 0usize;
    for (ok, took) in &get_results {
        get_hist.record(took.as_micros().max(1) as u64)?;
        get_ok += usize::from(*ok);
    }
    let line = serde_json::json!({
        "system": format!("voidmesh {}", env!("CARGO_PKG_VERSION")),
        "nodes": args.nodes,
        "bootstrap_s": round(bootstrap_s, 3),
        "put_ok": round(put_ok as f64 / args.puts.max(1) as f64, 4),
        "put_p50_ms": round(ms(&put_hist, 0.5), 3),
        "put_p99_ms": round(ms(&put_hist, 0.99), 3),
        "get_ok": round(get_ok as f64 / gets.len().max(1) as f64, 4),
        "get_p50_ms": round(ms(&get_hist, 0.5), 3),
        "get_p99_ms": round(ms(&get_hist, 0.99), 3),
        "get_ops_per_s": round(get_ok as f64 / get_wall.max(1e-9), 1),
        "rss_mb": round(peak_rss_mb(), 1),
        "notes": notes,
    });
    net.shutdown().await;
    println!("{line}");
    Ok(())
}

/// Runs `op` over `items` with at most `in_flight` at once; returns each outcome with its
/// latency, in the order of `items`.
async fn bounded<T, F, Fut>(items: &[T], in_flight: usize, op: F) -> Vec<(bool, Duration)>
where
    F: Fn(&T) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut results = vec![(false, Duration::ZERO); items.len()];
    let mut pending = FuturesUnordered::new();
    let mut next = items.iter().enumerate();
    loop {
        while pending.len() < in_flight.max(1) {
            let Some((i, item)) = next.next() else { break };
            let fut = op(item);
            pending.push(async move {
                let t = Instant::now();
                let ok = fut.await;
                (i, ok, t.elapsed())
            });
        }
        let Some((i, ok, took)) = pending.next().await else {
            break;
        };
        results[i] = (ok, took);
    }
    results
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// What one load connection measured.
struct ConnStats {
    hist: Histogram<u64>,
    gets: u64,
    puts: u64,
    found: u64,
}

/// Runs the API load client and prints the JSON line.
pub async fn api(args: ApiArgs) -> Result<()> {
    anyhow::ensure!(args.keys >= 1, "--keys must be at least 1");
    if args.protocol == crate::load::Protocol::Resp || matches!(args.mix, Mix::Get) {
        anyhow::ensure!(
            matches!(args.mix, Mix::Get),
            "--protocol resp measures GETs only (--mix get)"
        );
        return api_gets(args).await;
    }
    let keys: Arc<Vec<Key>> = Arc::new((0..args.keys as u64).map(bench_key).collect());
    let value = Bytes::from(vec![0x5a; args.value_size]);
    if args.preload {
        let mut client = DhtClient::connect(args.addr).await?;
        for key in keys.iter() {
            client.put(*key, value.clone(), 3600, 1).await?;
        }
        // PUT has no reply: wait until the last key is readable.
        let last = *keys.last().context("no keys")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.get(last).await?.is_none() {
            anyhow::ensure!(Instant::now() < deadline, "preload never became readable");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let duration = Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for conn in 0..args.connections {
        let keys = keys.clone();
        let value = value.clone();
        let (addr, pipeline, mix) = (args.addr, args.pipeline.max(1), args.mix);
        tasks.push(tokio::spawn(async move {
            load_connection(
                addr,
                conn as u64,
                keys,
                value,
                pipeline,
                mix,
                started + duration,
            )
            .await
        }));
    }
    let mut hist = histogram();
    let (mut gets, mut puts, mut found) = (0u64, 0u64, 0u64);
    for task in tasks {
        let stats = task.await??;
        hist.add(&stats.hist)?;
        gets += stats.gets;
        puts += stats.puts;
        found += stats.found;
    }
    let wall = started.elapsed().as_secs_f64();
    let line = serde_json::json!({
        "system": format!("voidmesh {}", env!("CARGO_PKG_VERSION")),
        "connections": args.connections,
        "pipeline": args.pipeline,
        "ops_per_s": round((gets + puts) as f64 / wall, 1),
        "gets": gets,
        "puts": puts,
        "get_found": round(found as f64 / gets.max(1) as f64, 4),
        "get_p50_ms": round(ms(&hist, 0.5), 3),
        "get_p99_ms": round(ms(&hist, 0.99), 3),
    });
    println!("{line}");
    Ok(())
}

/// `bench api --mix get`: the protocol-neutral GET load of [`crate::load`].
async fn api_gets(args: ApiArgs) -> Result<()> {
    use crate::load::{Answer, Conn, Protocol};
    let keys: Arc<Vec<Key>> = Arc::new((0..args.keys as u64).map(bench_key).collect());
    let value = Bytes::from(vec![0x5a; args.value_size]);
    if args.preload {
        let mut conn = Conn::connect(args.addr, args.protocol).await?;
        conn.preload(&keys, &value).await?;
    }
    let duration = Duration::from_secs(args.seconds);
    let started = Instant::now();
    let until = started + duration;
    let mut tasks = Vec::new();
    for conn_no in 0..args.connections {
        let keys = keys.clone();
        let (addr, pipeline, protocol) = (args.addr, args.pipeline.max(1), args.protocol);
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(conn_no as u64);
            let mut conn = Conn::connect(addr, protocol).await?;
            let mut stats = ConnStats {
                hist: histogram(),
                gets: 0,
                puts: 0,
                found: 0,
            };
            conn.run_gets(
                pipeline,
                until,
                || keys[rng.gen_range(0..keys.len())],
                |took, answer| {
                    stats.gets += 1;
                    stats.found += u64::from(answer == Answer::Found);
                    stats.hist.record(took.as_micros().max(1) as u64)?;
                    Ok(())
                },
            )
            .await?;
            anyhow::Ok(stats)
        }));
    }
    let mut hist = histogram();
    let (mut gets, mut found) = (0u64, 0u64);
    for task in tasks {
        let stats = task.await??;
        hist.add(&stats.hist)?;
        gets += stats.gets;
        found += stats.found;
    }
    let wall = started.elapsed().as_secs_f64();
    let system = match args.protocol {
        Protocol::Voidphone => format!("voidmesh {}", env!("CARGO_PKG_VERSION")),
        Protocol::Resp => "redis (RESP)".to_string(),
    };
    let line = serde_json::json!({
        "system": system,
        "client": "voidmesh bench api (same client for both protocols)",
        "connections": args.connections,
        "pipeline": args.pipeline,
        "ops_per_s": round(gets as f64 / wall, 1),
        "gets": gets,
        "puts": 0,
        "get_found": round(found as f64 / gets.max(1) as f64, 4),
        "get_p50_ms": round(ms(&hist, 0.5), 3),
        "get_p99_ms": round(ms(&hist, 0.99), 3),
    });
    println!("{line}");
    Ok(())
}

/// The `i`-th key of the API load: `i` big-endian in the first 8 bytes.
fn bench_key(i: u64) -> Key {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&i.to_be_bytes());
    Key(k)
}

async fn load_connection(
    addr: SocketAddr,
    seed: u64,
    keys: Arc<Vec<Key>>,
    value: Bytes,
    pipeline: usize,
    mix: Mix,
    until: Instant,
) -> Result<ConnStats> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut client = DhtClient::connect(addr).await?;
    let mut stats = ConnStats {
        hist: histogram(),
        gets: 0,
        puts: 0,
        found: 0,
    };
    let mut sent: std::collections::HashMap<Key, Vec<Instant>> = Default::default();
    let mut in_flight = 0usize;
    loop {
        while in_flight < pipeline && Instant::now() < until {
            let key = keys[rng.gen_range(0..keys.len())];
            let is_put = match mix {
                Mix::Get => false,
                Mix::Put => true,
                Mix::Mixed => rng.gen_ratio(1, 10),
            };
            if is_put {
                client.put(key, value.clone(), 3600, 1).await?;
                stats.puts += 1;
            } else {
                client.send_get(key).await?;
                sent.entry(key).or_default().push(Instant::now());
                in_flight += 1;
            }
        }
        if in_flight == 0 {
            break;
        }
        let (key, got) = client.recv().await?;
        let t = sent
            .get_mut(&key)
            .and_then(|v| (!v.is_empty()).then(|| v.remove(0)))
            .context("reply for a key never asked")?;
        in_flight -= 1;
        stats.gets += 1;
        stats.found += u64::from(got.is_some());
        stats.hist.record(t.elapsed().as_micros().max(1) as u64)?;
    }
    Ok(stats)
}
