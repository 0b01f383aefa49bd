//! W1 anchor: the BitTorrent mainline DHT (crate `mainline`), N nodes in one process on
//! 127.0.0.1. Prints progress on stderr and the W1 JSON object as the last stdout line.
//!
//! Mapping of W1 (see README.md):
//! - mode `immutable` (default): BEP 44 immutable items. The DHT key of an item is the
//!   SHA-1 of its value, so the "fresh random 32-byte key" of W1 cannot be chosen; each
//!   PUT stores a fresh random 128-byte value, whose SHA-1 is a fresh uniformly random
//!   160-bit key. GET asks for that key and compares the bytes.
//! - mode `mutable`: BEP 44 mutable items. Every node has its own ed25519 key; the W1
//!   32-byte random key is the salt, so the DHT key is SHA-1(public key ‖ salt). Adds a
//!   signature per PUT and a verification per response.

use anyhow::{ensure, Context, Result};
use clap::{Parser, ValueEnum};
use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use mainline::async_dht::AsyncDht;
use mainline::{Dht, Id, MutableItem, SigningKey};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Mode {
    /// BEP 44 immutable items (key = SHA-1 of the value).
    Immutable,
    /// BEP 44 mutable items, the W1 key as salt, one signing key per node.
    Mutable,
}

#[derive(Parser)]
struct Args {
    /// Nodes in the network.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// PUT operations.
    #[arg(long, default_value_t = 500)]
    puts: usize,
    /// Operations in flight.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Seed for values and node choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Joins in flight while bootstrapping (voidmesh's `bench w1` uses 16).
    #[arg(long, default_value_t = 16)]
    join_concurrency: usize,
    /// How W1's key/value maps onto BEP 44.
    #[arg(long, value_enum, default_value_t = Mode::Immutable)]
    mode: Mode,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn peak_rss_mb() -> f64 {
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

/// Runs `op` over `items`, at most `in_flight` at once; outcome and latency per item.
async fn bounded<T, F, Fut>(items: &[T], in_flight: usize, op: F) -> Vec<(bool, Duration)>
where
    F: Fn(&T) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut out = vec![(false, Duration::ZERO); items.len()];
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
        let Some((i, ok, took)) = pending.next().await else { break };
        out[i] = (ok, took);
    }
    out
}

/// One W1 operation: the node that puts, the W1 key (salt in mutable mode), the value.
#[derive(Clone)]
struct Op {
    node: usize,
    key: [u8; 32],
    value: Vec<u8>,
    /// The DHT target the PUT reported (immutable mode: SHA-1 of the value).
    target: Option<Id>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.nodes >= 2, "W1 needs at least 2 nodes");
    let mut rng = StdRng::seed_from_u64(args.seed);

    // Bootstrap: node 0 starts alone, every other node joins through it. A join has
    // returned when the node's bootstrap query (a lookup of its own id) has finished.
    let started = Instant::now();
    let first = Dht::builder()
        .server_mode()
        .no_bootstrap()
        .bind_address(Ipv4Addr::LOCALHOST)
        .build()
        .context("starting node 0")?
        .as_async();
    let seed = first.info().await.local_addr().to_string();
    let mut nodes: Vec<AsyncDht> = vec![first];
    // A mainline node starts its join as soon as it is built, so nodes are built and
    // joined `join_concurrency` at a time.
    let mut failed_joins = 0usize;
    while nodes.len() < args.nodes {
        let from = nodes.len();
        let to = (from + args.join_concurrency.max(1)).min(args.nodes);
        for i in from..to {
            let node = Dht::builder()
                .server_mode()
                .bootstrap(&[seed.clone()])
                .bind_address(Ipv4Addr::LOCALHOST)
                .build()
                .with_context(|| format!("starting node {i}"))?
                .as_async();
            nodes.push(node);
        }
        let joined = futures::future::join_all(nodes[from..to].iter().map(|n| n.bootstrapped())).await;
        failed_joins += joined.iter().filter(|ok| !**ok).count();
    }
    let bootstrap_s = started.elapsed().as_secs_f64();
    eprintln!(
        "bootstrap: {bootstrap_s:.2} s for {} nodes ({failed_joins} joins found nobody)",
        args.nodes
    );

    // One signing key per node, for mutable mode.
    let signers: Vec<SigningKey> = (0..args.nodes)
        .map(|_| SigningKey::from_bytes(&rng.gen()))
        .collect();

    // PUT phase.
    let ops: Vec<Op> = (0..args.puts)
        .map(|_| {
            let node = rng.gen_range(0..args.nodes);
            let mut value = vec![0u8; 128];
            rng.fill(&mut value[..]);
            Op { node, key: rng.gen(), value, target: None }
        })
        .collect();
    let targets: Vec<std::sync::Mutex<Option<Id>>> =
        ops.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let indexed: Vec<(usize, &Op)> = ops.iter().enumerate().collect();
    let put_results = bounded(&indexed, args.in_flight, |(i, op)| {
        let dht = nodes[op.node].clone();
        let op = (*op).clone();
        let signer = signers[op.node].clone();
        let mode = args.mode;
        let slot = &targets[*i];
        async move {
            // Ok means at least one remote node acknowledged the store.
            let target = match mode {
                Mode::Immutable => dht.put_immutable(&op.value).await.ok(),
                Mode::Mutable => {
                    let item = MutableItem::new(signer, &op.value, 1, Some(&op.key));
                    dht.put_mutable(item, None).await.ok().map(|o| o.target)
                }
            };
            let ok = target.is_some();
            *slot.lock().expect("not poisoned") = target;
            ok
        }
    })
    .await;
    let mut put_hist = histogram();
    let mut stored = Vec::new();
    for (((ok, took), op), target) in put_results.iter().zip(&ops).zip(&targets) {
        put_hist.record(took.as_micros().max(1) as u64)?;
        if *ok {
            let mut op = op.clone();
            op.target = *target.lock().expect("not poisoned");
            stored.push(op);
        }
    }
    eprintln!("put phase: {}/{} ok", stored.len(), args.puts);

    // GET phase: each stored key from a random node other than its putter.
    let gets: Vec<(usize, Op)> = stored
        .iter()
        .map(|op| {
            let mut node = rng.gen_range(0..args.nodes - 1);
            if node >= op.node {
                node += 1;
            }
            (node, op.clone())
        })
        .collect();
    let get_started = Instant::now();
    let get_results = bounded(&gets, args.in_flight, |(node, op)| {
        let dht = nodes[*node].clone();
        let op = op.clone();
        let public = signers[op.node].verifying_key().to_bytes();
        let mode = args.mode;
        async move {
            match mode {
                Mode::Immutable => {
                    let target = op.target.expect("stored ops have a target");
                    matches!(dht.get_immutable(target).await, Some(v) if *v == op.value[..])
                }
                Mode::Mutable => {
                    // The first verified item that arrives (there is only one version).
                    let mut items = dht.get_mutable(&public, Some(&op.key), None);
                    matches!(items.next().await, Some(item) if item.value() == &op.value[..])
                }
            }
        }
    })
    .await;
    let get_wall = get_started.elapsed().as_secs_f64();
    let mut get_hist = histogram();
    let mut get_ok = 0usize;
    for (ok, took) in &get_results {
        get_hist.record(took.as_micros().max(1) as u64)?;
        get_ok += usize::from(*ok);
    }
    eprintln!("get phase: {get_ok}/{} ok in {get_wall:.2} s", gets.len());

    let notes = match args.mode {
        Mode::Immutable => format!(
            "mainline 8.0.1, UDP/KRPC, no transport crypto; BEP44 immutable items: key = SHA-1(random 128-byte value) \
             (160-bit, not a chosen 32-byte key); k=20 (fixed), alpha not configurable (each step queries every unvisited one of the 20 closest \
             candidates at once); put success = >=1 remote node acknowledged (after every PUT request answered or timed out); \
             joins through node 0 {} at a time; {} in flight; {failed_joins} failed joins",
            args.join_concurrency, args.in_flight
        ),
        Mode::Mutable => format!(
            "mainline 8.0.1, UDP/KRPC, no transport crypto; BEP44 mutable items: W1 32-byte key as salt, one ed25519 \
             key per node, DHT key = SHA-1(pubkey||salt), signed PUT, verified GET (first item); k=20 (fixed), alpha \
             not configurable (all 20 closest queried at once); put success = >=1 remote node acknowledged (after every PUT request answered or timed out); \
             joins through node 0 {} at a time; {} in flight; {failed_joins} failed joins",
            args.join_concurrency, args.in_flight
        ),
    };
    let line = serde_json::json!({
        "system": match args.mode {
            Mode::Immutable => "mainline 8.0.1",
            Mode::Mutable => "mainline 8.0.1 (mutable)",
        },
        "nodes": args.nodes,
        "bootstrap_s": round(bootstrap_s, 3),
        "put_ok": round(stored.len() as f64 / args.puts.max(1) as f64, 4),
        "put_p50_ms": round(ms(&put_hist, 0.5), 3),
        "put_p99_ms": round(ms(&put_hist, 0.99), 3),
        "get_ok": round(get_ok as f64 / gets.len().max(1) as f64, 4),
        "get_p50_ms": round(ms(&get_hist, 0.5), 3),
        "get_p99_ms": round(ms(&get_hist, 0.99), 3),
        "get_ops_per_s": round(get_ok as f64 / get_wall.max(1e-9), 1),
        "rss_mb": round(peak_rss_mb(), 1),
        "notes": notes,
    });
    println!("{line}");
    // Dropping the nodes stops their actor threads; exit without waiting for them.
    use std::io::Write;
    std::io::stdout().flush().ok();
    std::process::exit(0);
}
