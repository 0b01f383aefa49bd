//! W1 anchor: rust-libp2p's Kademlia (libp2p 0.57, libp2p-kad 0.49) over QUIC, N swarms in
//! one process on 127.0.0.1. Prints progress on stderr and the W1 JSON object as the last
//! stdout line.
//!
//! Each node is one `Swarm` (Kademlia + Identify over QUIC) driven by its own tokio task,
//! which takes commands (join, put, get) over a channel and answers each on a oneshot.
//! Identify is there because libp2p-kad learns no address from inbound connections: a
//! node that was dialled only enters its peers' routing tables once Identify has told them
//! its listen address (the pattern the libp2p-kad documentation describes).

use anyhow::{ensure, Context, Result};
use clap::Parser;
use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use libp2p::kad::{self, store::MemoryStore, GetRecordOk, Mode, QueryId, QueryResult, Quorum, Record};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, Multiaddr, PeerId, StreamProtocol, Swarm};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

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
    /// Joins in flight while bootstrapping (voidmesh's `bench w1` uses 16).
    #[arg(long, default_value_t = 16)]
    join_concurrency: usize,
    /// Seconds an idle QUIC connection is kept open (libp2p's default is 0: close at once).
    #[arg(long, default_value_t = 60)]
    idle_timeout_s: u64,
    /// Seed for keys, values and node choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Give up after this many seconds and print what was reached (0: never).
    #[arg(long, default_value_t = 0)]
    deadline_s: u64,
}

/// How far the run got, for the report when the deadline strikes.
#[derive(Default)]
struct Progress {
    phase: std::sync::Mutex<&'static str>,
    joins: AtomicUsize,
    puts: AtomicUsize,
    gets: AtomicUsize,
    /// Figures of the phases that finished, for the partial report.
    figures: std::sync::Mutex<serde_json::Map<String, serde_json::Value>>,
}

impl Progress {
    fn record(&self, key: &str, value: f64) {
        self.figures
            .lock()
            .expect("not poisoned")
            .insert(key.to_string(), serde_json::json!(value));
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    kad: kad::Behaviour<MemoryStore>,
    identify: identify::Behaviour,
}

/// What the harness asks of one node.
enum Command {
    /// Learn `seed` at `addr` and run the Kademlia bootstrap; answers when it finished.
    Join(PeerId, Multiaddr, oneshot::Sender<bool>),
    /// `put_record` with quorum 1; answers true once one remote peer stored it.
    Put(Vec<u8>, Vec<u8>, oneshot::Sender<bool>),
    /// `get_record`; answers the first value found, or None.
    Get(Vec<u8>, oneshot::Sender<Option<Vec<u8>>>),
}

/// A query in progress and whom to tell when it ends.
enum Pending {
    Join(oneshot::Sender<bool>),
    Put(oneshot::Sender<bool>),
    Get(oneshot::Sender<Option<Vec<u8>>>),
}

fn build_swarm(idle: Duration) -> Result<Swarm<Behaviour>> {
    let swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_quic()
        .with_behaviour(|key| {
            let id = key.public().to_peer_id();
            let mut config = kad::Config::new(StreamProtocol::new("/ipfs/kad/1.0.0"));
            config
                .set_replication_factor(NonZeroUsize::new(20).expect("nonzero")) // k
                .set_kbucket_size(NonZeroUsize::new(20).expect("nonzero")) // k
                .set_parallelism(NonZeroUsize::new(3).expect("nonzero")); // alpha
            let mut kad = kad::Behaviour::with_config(id, MemoryStore::new(id), config);
            // No external address is ever confirmed on loopback, so without this every
            // node would stay a client and refuse inbound Kademlia requests.
            kad.set_mode(Some(Mode::Server));
            let identify = identify::Behaviour::new(identify::Config::new(
                "/w1-anchor/1.0.0".into(),
                key.public(),
            ));
            Behaviour { kad, identify }
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}

/// Drives one swarm until the command channel closes.
async fn run_node(mut swarm: Swarm<Behaviour>, mut commands: mpsc::Receiver<Command>) {
    let mut pending: HashMap<QueryId, Pending> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { return };
                let kad = &mut swarm.behaviour_mut().kad;
                match command {
                    Command::Join(peer, addr, reply) => {
                        kad.add_address(&peer, addr);
                        match kad.bootstrap() {
                            Ok(id) => { pending.insert(id, Pending::Join(reply)); }
                            Err(_) => { let _ = reply.send(false); }
                        }
                    }
                    Command::Put(key, value, reply) => {
                        match kad.put_record(Record::new(key, value), Quorum::One) {
                            Ok(id) => { pending.insert(id, Pending::Put(reply)); }
                            Err(_) => { let _ = reply.send(false); }
                        }
                    }
                    Command::Get(key, reply) => {
                        let id = kad.get_record(key.into());
                        pending.insert(id, Pending::Get(reply));
                    }
                }
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                    peer_id, info, ..
                })) => {
                    for addr in info.listen_addrs {
                        swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                    id, result, step, ..
                })) => match result {
                    QueryResult::Bootstrap(outcome) => {
                        // One event per bootstrap step (self-lookup, then bucket refreshes).
                        if step.last {
                            if let Some(Pending::Join(reply)) = pending.remove(&id) {
                                let _ = reply.send(outcome.is_ok());
                            }
                        }
                    }
                    QueryResult::PutRecord(outcome) => {
                        if let Some(Pending::Put(reply)) = pending.remove(&id) {
                            let _ = reply.send(outcome.is_ok());
                        }
                    }
                    QueryResult::GetRecord(Ok(GetRecordOk::FoundRecord(found))) => {
                        if let Some(Pending::Get(reply)) = pending.remove(&id) {
                            let _ = reply.send(Some(found.record.value));
                        }
                        // The first record is enough (quorum 1): stop the lookup.
                        if let Some(mut query) = swarm.behaviour_mut().kad.query_mut(&id) {
                            query.finish();
                        }
                    }
                    QueryResult::GetRecord(_) => {
                        if let Some(Pending::Get(reply)) = pending.remove(&id) {
                            let _ = reply.send(None);
                        }
                    }
                    _ => {}
                },
                _ => {}
            },
        }
    }
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
async fn bounded<T, F, Fut>(
    items: &[T],
    in_flight: usize,
    done: &AtomicUsize,
    op: F,
) -> Vec<(bool, Duration)>
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
        done.fetch_add(1, Ordering::Relaxed);
    }
    out
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.nodes >= 2, "W1 needs at least 2 nodes");
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let (nodes, deadline_s) = (args.nodes, args.deadline_s);
    let run = w1(args, progress.clone());
    let line = if deadline_s == 0 {
        run.await?
    } else {
        match tokio::time::timeout(Duration::from_secs(deadline_s), run).await {
            Ok(line) => line?,
            Err(_) => {
                let phase = *progress.phase.lock().expect("not poisoned");
                let notes = format!(
                    "ABORTED at the {deadline_s} s deadline during the {phase} phase: {}/{} joins returned, \
                     {} PUTs and {} GETs finished; figures of finished phases kept, the others null",
                    progress.joins.load(Ordering::Relaxed),
                    nodes - 1,
                    progress.puts.load(Ordering::Relaxed),
                    progress.gets.load(Ordering::Relaxed),
                );
                eprintln!("{notes}");
                let mut line = serde_json::json!({
                    "system": "rust-libp2p 0.57.1 kad 0.49.0",
                    "nodes": nodes,
                    "bootstrap_s": null,
                    "put_ok": null, "put_p50_ms": null, "put_p99_ms": null,
                    "get_ok": null, "get_p50_ms": null, "get_p99_ms": null,
                    "get_ops_per_s": null,
                    "rss_mb": round(peak_rss_mb(), 1),
                    "notes": notes,
                    "elapsed_s": round(started.elapsed().as_secs_f64(), 1),
                });
                // Keep the figures of the phases that did finish.
                for (key, value) in progress.figures.lock().expect("not poisoned").iter() {
                    line[key] = value.clone();
                }
                line
            }
        }
    };
    println!("{line}");
    use std::io::Write;
    std::io::stdout().flush().ok();
    // Don't wait for 100s of swarms to wind down.
    std::process::exit(0);
}

/// Runs W1; returns the JSON object.
async fn w1(args: Args, progress: Arc<Progress>) -> Result<serde_json::Value> {
    *progress.phase.lock().expect("not poisoned") = "bootstrap";
    let mut rng = StdRng::seed_from_u64(args.seed);
    let idle = Duration::from_secs(args.idle_timeout_s);

    // Start every node listening on loopback QUIC; node 0 first.
    let started = Instant::now();
    let mut nodes: Vec<mpsc::Sender<Command>> = Vec::with_capacity(args.nodes);
    let mut seed: Option<(PeerId, Multiaddr)> = None;
    for i in 0..args.nodes {
        let mut swarm = build_swarm(idle).with_context(|| format!("building node {i}"))?;
        swarm.listen_on("/ip4/127.0.0.1/udp/0/quic-v1".parse()?)?;
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        };
        if i == 0 {
            seed = Some((*swarm.local_peer_id(), addr));
        }
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(run_node(swarm, rx));
        nodes.push(tx);
    }
    let (seed_id, seed_addr) = seed.context("no node 0")?;

    // Every other node joins through node 0, `join_concurrency` at a time.
    let mut failed_joins = 0usize;
    for chunk in nodes[1..].chunks(args.join_concurrency.max(1)) {
        let joins = chunk.iter().map(|node| {
            let (reply, answer) = oneshot::channel();
            let command = Command::Join(seed_id, seed_addr.clone(), reply);
            let joins = &progress.joins;
            async move {
                node.send(command).await.ok()?;
                let joined = answer.await.ok();
                joins.fetch_add(1, Ordering::Relaxed);
                joined
            }
        });
        for joined in futures::future::join_all(joins).await {
            failed_joins += usize::from(joined != Some(true));
        }
    }
    let bootstrap_s = started.elapsed().as_secs_f64();
    progress.record("bootstrap_s", round(bootstrap_s, 3));
    eprintln!(
        "bootstrap: {bootstrap_s:.2} s for {} nodes ({failed_joins} joins failed)",
        args.nodes
    );

    // PUT phase.
    let ops: Vec<(usize, Vec<u8>, Vec<u8>)> = (0..args.puts)
        .map(|_| {
            let node = rng.gen_range(0..args.nodes);
            let mut value = vec![0u8; 128];
            rng.fill(&mut value[..]);
            (node, rng.gen::<[u8; 32]>().to_vec(), value)
        })
        .collect();
    *progress.phase.lock().expect("not poisoned") = "PUT";
    let put_results = bounded(&ops, args.in_flight, &progress.puts, |(node, key, value)| {
        let node = nodes[*node].clone();
        let (reply, answer) = oneshot::channel();
        let command = Command::Put(key.clone(), value.clone(), reply);
        async move {
            node.send(command).await.is_ok() && answer.await.unwrap_or(false)
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
    eprintln!("put phase: {}/{} ok", stored.len(), args.puts);
    progress.record("put_ok", round(stored.len() as f64 / args.puts.max(1) as f64, 4));
    progress.record("put_p50_ms", round(ms(&put_hist, 0.5), 3));
    progress.record("put_p99_ms", round(ms(&put_hist, 0.99), 3));

    // GET phase: each stored key from a random node other than its putter.
    let gets: Vec<(usize, Vec<u8>, Vec<u8>)> = stored
        .iter()
        .map(|(putter, key, value)| {
            let mut node = rng.gen_range(0..args.nodes - 1);
            if node >= *putter {
                node += 1;
            }
            (node, key.clone(), value.clone())
        })
        .collect();
    let get_started = Instant::now();
    *progress.phase.lock().expect("not poisoned") = "GET";
    let get_results = bounded(&gets, args.in_flight, &progress.gets, |(node, key, value)| {
        let node = nodes[*node].clone();
        let (reply, answer) = oneshot::channel();
        let command = Command::Get(key.clone(), reply);
        let value = value.clone();
        async move {
            if node.send(command).await.is_err() {
                return false;
            }
            matches!(answer.await, Ok(Some(v)) if v == value)
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

    let line = serde_json::json!({
        "system": "rust-libp2p 0.57.1 kad 0.49.0",
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
        "notes": format!(
            "in-process, loopback QUIC (quinn, TLS 1.3), kad + identify (listen addresses), server mode, \
             k=20 (bucket size and replication) alpha=3, joins through node 0 {} at a time (kad bootstrap: \
             self-lookup + bucket refreshes), put_record Quorum::One, get_record stops at the first record \
             (a local replica counts), idle connection timeout {} s, {} in flight, {failed_joins} failed joins",
            args.join_concurrency, args.idle_timeout_s, args.in_flight
        ),
    });
    Ok(line)
}
