//! The one `voidmesh` binary.

mod api_client;
mod bench;
mod chat_cmd;
mod load;
mod testnet_demo;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use voidmesh_node::config::Config;
use voidmesh_node::service::{DhtService, GossipService};

/// jemalloc instead of glibc's malloc: with QUIC's many short-lived allocations spread
/// over tokio's worker threads, glibc's malloc and free took a fifth of the CPU of busy
/// nodes; jemalloc cut the CPU of W1 by 15 % (docs/benchmarks.md, "Allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// voidmesh: a Kademlia DHT and a gossip module speaking the VoidPhone API over an
/// authenticated QUIC overlay.
#[derive(Parser)]
#[command(name = "voidmesh", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new Ed25519 hostkey (PEM, PKCS#8) to PATH and print its node id.
    /// The node id solves the S/Kademlia puzzle: SHA-256(node id) starts with
    /// --id-difficulty zero bits (about 2^difficulty keys are tried; progress on stderr).
    Keygen {
        /// Where to write the key; an existing file is never overwritten.
        path: PathBuf,
        /// Leading zero bits SHA-256(node id) must have; use the network's `id_difficulty`
        /// or more.
        #[arg(long, default_value_t = voidmesh_kad::RECOMMENDED_ID_DIFFICULTY)]
        id_difficulty: u8,
    },
    /// Run the DHT module alone, configured by the [dht] section of CONFIG.
    Dht {
        /// The INI configuration file.
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
    },
    /// Run the gossip module alone, configured by the [gossip] section of CONFIG.
    Gossip {
        /// The INI configuration file.
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
    },
    /// Run a full peer: the DHT and the gossip module in one process, each on its own
    /// addresses, sharing the hostkey.
    Node {
        /// The INI configuration file.
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
    },
    /// Start N DHT nodes on 127.0.0.1 in this process, show PUT/GET through the real API,
    /// and keep running until Ctrl-C.
    Testnet {
        /// How many nodes.
        #[arg(long, default_value_t = 20)]
        nodes: usize,
        /// Node i's API listens on BASE+2i and its peer socket on BASE+2i+1 (default: any
        /// free ports).
        #[arg(long)]
        base_port: Option<u16>,
    },
    /// Store VALUE under KEY through a node's DHT API (VoidPhone DHT PUT). KEY is 64 hex
    /// digits, or any text (then its SHA-256 is the key).
    Put {
        /// The node's DHT API address, HOST:PORT.
        #[arg(long)]
        api: String,
        /// The key.
        key: String,
        /// The value (UTF-8 text).
        value: String,
        /// Seconds the value lives (the node caps it by its max_ttl).
        #[arg(long, default_value_t = 3600)]
        ttl: u16,
        /// Nodes asked to store it (clamped to [1, max_replication]).
        #[arg(long, default_value_t = 5)]
        replication: u8,
    },
    /// Fetch the value under KEY through a node's DHT API (VoidPhone DHT GET) and print it;
    /// exit status 1 if it is not found.
    Get {
        /// The node's DHT API address, HOST:PORT.
        #[arg(long)]
        api: String,
        /// The key (as for `put`).
        key: String,
    },
    /// The deterministic simulator: the real Kademlia and gossip state machines on a
    /// virtual network of up to 100 000 nodes (latency, loss, churn, adversaries).
    Sim(Box<voidmesh_sim::SimArgs>),
    /// The chat: a full peer (DHT + gossip + chat sessions) with a terminal UI, or a line
    /// mode with --plain. Find people by name#id, talk directly, join #rooms.
    Chat(Box<chat_cmd::ChatArgs>),
    /// Benchmarks: the W1 workload on a loopback network, or load on one DHT API.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// W1: N nodes in this process, 500 PUTs then a GET of each key from another node.
    W1(bench::W1Args),
    /// Load one node's DHT API with C connections and P requests in flight each.
    Api(bench::ApiArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::Chat(args) = cli.command {
        // The chat sets up its own logging (to a file under the terminal UI).
        return exit_code(chat_cmd::run(*args));
    }
    // The testnet prints its own summary; its nodes' routine lines would drown it.
    let default_level = match cli.command {
        Command::Testnet { .. } | Command::Put { .. } | Command::Get { .. } => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    exit_code(run(cli))
}

fn exit_code(result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen {
            path,
            id_difficulty,
        } => keygen(&path, id_difficulty),
        Command::Dht { config } => run_modules(&config, true, false),
        Command::Gossip { config } => run_modules(&config, false, true),
        Command::Node { config } => run_modules(&config, true, true),
        Command::Testnet { nodes, base_port } => {
            runtime()?.block_on(testnet_demo::run(nodes, base_port))
        }
        Command::Put {
            api,
            key,
            value,
            ttl,
            replication,
        } => runtime()?.block_on(api_client::put(&api, &key, &value, ttl, replication)),
        Command::Get { api, key } => runtime()?.block_on(api_client::get(&api, &key)),
        Command::Sim(args) => voidmesh_sim::run_cli(*args),
        Command::Chat(args) => chat_cmd::run(*args),
        Command::Bench(BenchCommand::W1(args)) => runtime()?.block_on(bench::w1(args)),
        Command::Bench(BenchCommand::Api(args)) => runtime()?.block_on(bench::api(args)),
    }
}

/// Runs the DHT and/or the gossip module from the configuration at `path` until SIGINT or
/// SIGTERM. The whole file is read and checked before any socket is opened.
fn run_modules(path: &std::path::Path, dht: bool, gossip: bool) -> Result<()> {
    let config = Config::load(path)?;
    let dht_config = if dht {
        Some(config.require_dht()?.clone())
    } else {
        None
    };
    let gossip_config = if gossip {
        let g = config.require_gossip()?.clone();
        g.gossip
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: [gossip]: {e}", path.display()))?;
        Some(g)
    } else {
        None
    };
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let identity = voidmesh_node::identity::load_or_create(&config)?;
    let data_dir = config.data_dir.clone();
    runtime()?.block_on(async move {
        // Modules that name the same p2p_address share its socket.
        let sockets = voidmesh_node::socket::P2pSockets::new();
        let dht = match &dht_config {
            Some(c) => Some(DhtService::start_with(&identity, c, Some(&data_dir), &sockets).await?),
            None => None,
        };
        let gossip = match &gossip_config {
            Some(c) => {
                Some(GossipService::start_with(&identity, c, Some(&data_dir), &sockets).await?)
            }
            None => None,
        };
        drop(sockets);
        // Machine-readable lines, so scripts and tests learn the bound ports.
        if let Some(s) = &dht {
            println!(
                "ready dht node_id={} p2p={} api={}",
                s.node_id(),
                s.p2p_addr(),
                s.api_addr()
            );
        }
        if let Some(s) = &gossip {
            println!(
                "ready gossip node_id={} p2p={} api={}",
                s.node_id(),
                s.p2p_addr(),
                s.api_addr()
            );
        }
        wait_for_signal().await?;
        tracing::info!("shutting down");
        if let Some(s) = gossip {
            s.shutdown().await;
        }
        if let Some(s) = dht {
            s.shutdown().await;
        }
        Ok(())
    })
}

fn keygen(path: &std::path::Path, difficulty: u8) -> Result<()> {
    anyhow::ensure!(
        difficulty <= 32,
        "--id-difficulty above 32 would take years"
    );
    anyhow::ensure!(
        !path.exists(),
        "{} exists; it is never overwritten",
        path.display()
    );
    let bar = indicatif::ProgressBar::new_spinner().with_message(format!(
        "searching a key whose node id solves a {difficulty}-bit puzzle"
    ));
    let identity = voidmesh_node::identity::generate_with_puzzle(difficulty, |tries| {
        bar.set_position(tries);
        bar.tick();
    });
    bar.finish_and_clear();
    identity
        .save(path)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("{}", identity.node_id());
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
