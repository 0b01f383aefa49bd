//! The real binary as separate processes: `voidmesh dht -c ...` joined through one
//! bootstrapper, storing and finding values across processes.

mod common;

use bytes::Bytes;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use voidmesh_node::client::DhtClient;
use voidmesh_proto::Key;

/// A `voidmesh dht` process, killed when dropped.
struct DhtProcess {
    child: Child,
    p2p: SocketAddr,
    api: SocketAddr,
    /// Its log lines (stderr), collected by a thread.
    log: std::sync::mpsc::Receiver<String>,
}

impl DhtProcess {
    /// Waits until a log line contains `needle`.
    fn wait_for_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(line) => seen.push(line),
                Err(_) => panic!(
                    "no log line with {needle:?} within {within:?}; log:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    /// SIGKILL, no chance to clean up.
    fn kill_hard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DhtProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_dht(dir: &Path, name: &str, bootstrapper: Option<SocketAddr>) -> DhtProcess {
    let data_dir = dir.join(name);
    let config = dir.join(format!("{name}.ini"));
    let mut text = format!(
        "data_dir = {}\n\n[dht]\np2p_address = 127.0.0.1:0\napi_address = 127.0.0.1:0\n\
         request_timeout = 300ms\nget_timeout = 3s\n",
        data_dir.display()
    );
    if let Some(b) = bootstrapper {
        text.push_str(&format!("bootstrapper = {b}\n"));
    }
    std::fs::write(&config, text).unwrap();
    start_dht(&config)
}

/// Starts `voidmesh dht -c config` and waits for its ready line.
fn start_dht(config: &Path) -> DhtProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_voidmesh"))
        .args(["dht", "-c"])
        .arg(config)
        .env("RUST_LOG", "info,voidmesh_node::dht=debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("voidmesh starts");
    let stderr = child.stderr.take().unwrap();
    let log = common::lines_of(stderr);
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let field = |name: &str| -> SocketAddr {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in ready line {line:?}"))
            .parse()
            .unwrap()
    };
    DhtProcess {
        p2p: field("p2p="),
        api: field("api="),
        child,
        log,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_processes_store_and_find_values_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let first = spawn_dht(dir.path(), "node0", None);
    let mut nodes = vec![];
    let seed = first.p2p;
    nodes.push(first);
    for i in 1..10 {
        nodes.push(spawn_dht(dir.path(), &format!("node{i}"), Some(seed)));
    }
    // Each process PUTs one value; every value must then be found from every process.
    let mut values = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let key = Key([i as u8 + 1; 32]);
        let value = Bytes::from(format!("stored by process {i}"));
        let mut client = DhtClient::connect(node.api).await.unwrap();
        // Joining runs in the background: repeat the PUT until another process sees it.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            client.put(key, value.clone(), 300, 5).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let other = &nodes[(i + 5) % nodes.len()];
            let mut reader = DhtClient::connect(other.api).await.unwrap();
            if reader.get(key).await.unwrap().as_ref() == Some(&value) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "value of process {i} never found"
            );
        }
        values.push((key, value));
    }
    for (i, node) in nodes.iter().enumerate() {
        let mut client = DhtClient::connect(node.api).await.unwrap();
        for (n, (key, value)) in values.iter().enumerate() {
            assert_eq!(
                client.get(*key).await.unwrap().as_ref(),
                Some(value),
                "value {n} at process {i}"
            );
        }
    }
}

#[test]
fn config_errors_exit_non_zero_before_opening_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.ini");
    std::fs::write(
        &config,
        "[dht]\np2p_address = 127.0.0.1:0\napi_address = 127.0.0.1:0\nk = many\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_voidmesh"))
        .args(["dht", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.ini:4: key `dht.k`"), "{stderr}");

    let missing_key = dir.path().join("missing-key.ini");
    std::fs::write(
        &missing_key,
        "hostkey = nowhere.pem\n[dht]\np2p_address = 127.0.0.1:0\napi_address = 127.0.0.1:0\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_voidmesh"))
        .args(["dht", "-c"])
        .arg(&missing_key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nowhere.pem"), "{stderr}");
}

#[test]
fn keygen_prints_the_node_id_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_voidmesh"))
        .arg("keygen")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let id = String::from_utf8(out.stdout).unwrap();
    assert_eq!(id.trim().len(), 64, "{id}");
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let again = Command::new(env!("CARGO_BIN_EXE_voidmesh"))
        .arg("keygen")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), pem);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_hard_serves_its_records_and_rejoins_without_its_bootstrapper() {
    let dir = tempfile::tempdir().unwrap();
    let a = spawn_dht(dir.path(), "a", None);
    let b = spawn_dht(dir.path(), "b", Some(a.p2p));
    let c = spawn_dht(dir.path(), "c", Some(a.p2p));
    b.wait_for_log("joined the network", Duration::from_secs(20));
    c.wait_for_log("joined the network", Duration::from_secs(20));

    let key = Key([0x42; 32]);
    let value = Bytes::from_static(b"survives kill -9");
    let mut client = DhtClient::connect(b.api).await.unwrap();
    client.put(key, value.clone(), 600, 3).await.unwrap();
    b.wait_for_log("PUT done", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut reader = DhtClient::connect(c.api).await.unwrap();
        if reader.get(key).await.unwrap().as_ref() == Some(&value) {
            break;
        }
        assert!(Instant::now() < deadline, "PUT never reached c");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // b remembers both peers (the routing table is written every 2 s when it changed).
    b.wait_for_log("contacts saved count=2", Duration::from_secs(10));
    // The bootstrapper dies for good; b is killed without any chance to flush.
    a.kill_hard();
    b.kill_hard();
    let b = start_dht(&dir.path().join("b.ini"));

    // b serves what it held straight from its data_dir...
    let mut client = DhtClient::connect(b.api).await.unwrap();
    assert_eq!(client.get(key).await.unwrap(), Some(value));

    // ...and rejoins through the contact it remembered (c), though a is gone.
    b.wait_for_log("joined the network", Duration::from_secs(20));
    let fresh = Key([0x43; 32]);
    let fresh_value = Bytes::from_static(b"put after the restart");
    let mut at_c = DhtClient::connect(c.api).await.unwrap();
    at_c.put(fresh, fresh_value.clone(), 600, 3).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut at_b = DhtClient::connect(b.api).await.unwrap();
        if at_b.get(fresh).await.unwrap().as_ref() == Some(&fresh_value) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restarted node never saw the new value"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
