//! `voidmesh chat`: a full peer (DHT + gossip + chat) with the terminal UI or the plain
//! line mode.

use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use voidmesh_chat::peer::{handle_for, ChatPeer};
use voidmesh_chat::signals;
use voidmesh_node::config::{default_data_dir, resolve_addr, Config};

/// Options of `voidmesh chat`.
#[derive(clap::Args)]
pub struct ChatArgs {
    /// Your name for this session (1-32 of a-z A-Z 0-9 _ - .); you appear as name#id.
    #[arg(long)]
    name: String,
    /// An INI file with [dht], [gossip] and [chat] sections (see the README); without it
    /// the peer is configured from --listen, --bootstrap and --data-dir.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Peers to join through, host:port of their DHT (their gossip module is expected on
    /// the next port, as --listen sets it up). Comma-separated; any one answering is enough.
    #[arg(long, value_delimiter = ',')]
    bootstrap: Vec<String>,
    /// Where to listen: the DHT on HOST:PORT, gossip on PORT+1, chat sessions on PORT+2
    /// (HOST may be a name). Port 0 takes any free ports (then others cannot bootstrap
    /// through you). Default 0.0.0.0:0. Not with -c (the file gives the addresses).
    #[arg(long)]
    listen: Option<String>,
    /// Where the user key, hostkey, remembered contacts and history live
    /// (default: the per-user data directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Line mode for scripts: commands on stdin, one event per line on stdout.
    #[arg(long)]
    plain: bool,
}

/// Runs the chat until `/quit`, the end of stdin in plain mode, or SIGINT/SIGTERM/SIGHUP.
/// Everything the user gave is checked before anything is created or bound.
pub fn run(args: ChatArgs) -> Result<()> {
    voidmesh_chat::user::check_name(&args.name)?;
    let config = match &args.config {
        Some(path) => {
            if args.listen.is_some() {
                anyhow::bail!(
                    "--listen cannot be used with -c: the addresses come from {} ([dht], [gossip] and [chat] p2p_address)",
                    path.display()
                );
            }
            let mut config = Config::load(path)?;
            if let Some(dir) = &args.data_dir {
                config.data_dir = dir.clone();
            }
            add_bootstrappers(&mut config, &args.bootstrap)?;
            config
        }
        None => {
            let listen = args.listen.as_deref().unwrap_or("0.0.0.0:0");
            let listen = resolve_addr(listen).map_err(|e| anyhow::anyhow!("--listen: {e}"))?;
            let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
            let text = config_text(listen, &args.bootstrap, &data_dir)?;
            Config::parse(Path::new("<command line>"), &text)?
        }
    };
    config.require_dht()?;
    config.require_gossip()?;
    if config.chat.is_none() {
        anyhow::bail!("{}: the [chat] section is missing", config.path.display());
    }
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if !args.plain && !terminal {
        anyhow::bail!(
            "the chat's terminal UI needs a terminal (stdin and stdout are not one); use --plain for scripts and pipes"
        );
    }
    init_logging(&config.data_dir, args.plain)?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let identity = voidmesh_node::identity::load_or_create(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = runtime.block_on(async move {
        // From here on, these signals quit the chat cleanly instead of killing it.
        let mut signals = signals::listen()?;
        if args.plain {
            let start = ChatPeer::start(&args.name, &config, &identity);
            let (peer, ui) = tokio::select! {
                started = start => started?,
                Some(_) = signals.recv() => {
                    println!("stopped");
                    return Ok(());
                }
            };
            let me = peer.handle().clone();
            println!(
                "listening {me} dht={} gossip={} chat={}",
                peer.dht_addr(),
                peer.gossip_addr(),
                peer.chat_addr()
            );
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            voidmesh_chat::plain::run(ui, stdin, tokio::io::stdout(), signals).await?;
            peer.shutdown().await;
        } else {
            let me = handle_for(&args.name, &config.data_dir)?;
            let start = ChatPeer::start(&args.name, &config, &identity);
            let peer = voidmesh_chat::tui::run(me, start, signals).await?;
            if let Some(peer) = peer {
                peer.shutdown().await;
            }
        }
        tracing::info!("stopped");
        Ok::<(), anyhow::Error>(())
    });
    // The reader of stdin may still be blocked in a read (a signal ended the line mode).
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    outcome
}

/// The configuration `voidmesh chat` uses without `-c`, as INI text (so that it is
/// checked by the same parser as a file).
fn config_text(listen: SocketAddr, bootstrap: &[String], data_dir: &Path) -> Result<String> {
    let port = |offset: u16| -> Result<SocketAddr> {
        if listen.port() == 0 {
            return Ok(listen);
        }
        let port = listen
            .port()
            .checked_add(offset)
            .context("--listen port too high (it needs the two ports after it)")?;
        Ok(SocketAddr::new(listen.ip(), port))
    };
    let gossip_peers = bootstrap
        .iter()
        .map(|b| next_port(b, 1))
        .collect::<Result<Vec<_>>>()?;
    let mut text = String::new();
    writeln!(text, "data_dir = {}", data_dir.display())?;
    writeln!(
        text,
        "[dht]\np2p_address = {}\napi_address = 127.0.0.1:0",
        port(0)?
    )?;
    if !bootstrap.is_empty() {
        writeln!(text, "bootstrapper = {}", bootstrap.join(","))?;
    }
    writeln!(
        text,
        "[gossip]\np2p_address = {}\napi_address = 127.0.0.1:0",
        port(1)?
    )?;
    if !gossip_peers.is_empty() {
        writeln!(text, "bootstrapper = {}", gossip_peers.join(","))?;
    }
    writeln!(text, "[chat]\np2p_address = {}", port(2)?)?;
    Ok(text)
}

/// `host:port` with the port moved up by `offset`.
fn next_port(entry: &str, offset: u16) -> Result<String> {
    let (host, port) = entry
        .rsplit_once(':')
        .with_context(|| format!("--bootstrap `{entry}` is not host:port"))?;
    let port: u16 = port
        .parse()
        .ok()
        .and_then(|p: u16| p.checked_add(offset))
        .with_context(|| format!("--bootstrap `{entry}` has no usable port"))?;
    Ok(format!("{host}:{port}"))
}

/// `--bootstrap` with `-c`: added to the file's DHT bootstrappers (and port+1 to gossip's).
fn add_bootstrappers(config: &mut Config, bootstrap: &[String]) -> Result<()> {
    for entry in bootstrap {
        let gossip = next_port(entry, 1)?;
        if let Some(dht) = config.dht.as_mut() {
            dht.bootstrappers.push(entry.clone());
        }
        if let Some(g) = config.gossip.as_mut() {
            g.bootstrappers.push(gossip);
        }
    }
    Ok(())
}

/// Logs go to stderr in plain mode, and to `data_dir/chat.log` under the terminal UI
/// (where they would garble the screen). `RUST_LOG` sets the level (default: info).
fn init_logging(data_dir: &Path, plain: bool) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if plain {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init();
    } else {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let path = data_dir.join("chat.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .init();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_and_bootstrap_make_a_checked_config() {
        let text = config_text(
            "127.0.0.1:7000".parse().unwrap(),
            &["10.0.0.1:7000".into()],
            Path::new("/tmp/x"),
        )
        .unwrap();
        let config = Config::parse(Path::new("<command line>"), &text).unwrap();
        assert_eq!(config.require_dht().unwrap().p2p_address.port(), 7000);
        assert_eq!(config.require_gossip().unwrap().p2p_address.port(), 7001);
        assert_eq!(config.chat.unwrap().p2p_address.port(), 7002);
        assert_eq!(
            config.gossip.unwrap().bootstrappers,
            vec!["10.0.0.1:7001".to_string()]
        );
        assert!(next_port("nohost", 1).is_err());
    }
}
