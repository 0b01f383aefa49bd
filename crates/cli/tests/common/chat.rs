//! `voidmesh chat --plain` processes as a user drives them: typing lines, waiting for
//! event lines with a deadline, killing and signalling them.
#![allow(dead_code)] // each test binary uses a part

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// How long any one expected line may take.
pub const WAIT: Duration = Duration::from_secs(60);

/// A `voidmesh chat --plain` process; killed when dropped.
pub struct ChatProcess {
    pub child: Child,
    stdin: Option<ChildStdin>,
    /// Its stdout lines, read by a thread.
    lines: Receiver<String>,
}

impl ChatProcess {
    /// Starts `voidmesh chat --plain ARGS` with `env` added.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> ChatProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_voidmesh"))
            .arg("chat")
            .arg("--plain")
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("voidmesh starts");
        let stdout = child.stdout.take().unwrap();
        let lines = super::lines_of(stdout);
        let stdin = child.stdin.take();
        ChatProcess {
            child,
            stdin,
            lines,
        }
    }

    /// Starts `voidmesh chat --plain ARGS`.
    pub fn start(args: &[&str]) -> ChatProcess {
        ChatProcess::start_with(args, &[])
    }

    /// Types a line.
    pub fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next output line starting with `prefix` (others are skipped), within `within`.
    pub fn expect_within(&self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!(
                    "no line starting {prefix:?} within {within:?}; got:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    /// The next output line starting with `prefix`, within [`WAIT`].
    pub fn expect(&self, prefix: &str) -> String {
        self.expect_within(prefix, WAIT)
    }

    /// `kill -9`.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (a libc signal number).
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for the exit and returns whether it succeeded.
    pub fn wait_exit(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "the chat did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Closes stdin and waits for the exit status.
    pub fn finish(mut self) -> bool {
        drop(self.stdin.take());
        self.wait_exit()
    }

    /// The handle of the `listening` line.
    pub fn listening(&self) -> (String, String) {
        let line = self.expect("listening ");
        let handle = line.split_whitespace().nth(1).unwrap().to_owned();
        (handle, line)
    }
}

impl Drop for ChatProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `key=value` out of a line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// Writes `DIR/NAME.ini`: a chat peer on 127.0.0.1 (ports PORT, PORT+1, PORT+2, or any
/// with 0) joining through `dht` and `gossip`; returns its path.
pub fn config(dir: &Path, name: &str, port: u16, dht: &str, gossip: &str) -> String {
    let path = dir.join(format!("{name}.ini"));
    let at = |offset: u16| {
        if port == 0 {
            "127.0.0.1:0".to_owned()
        } else {
            format!("127.0.0.1:{}", port + offset)
        }
    };
    let text = format!(
        "data_dir = {}\n[dht]\np2p_address = {}\napi_address = 127.0.0.1:0\n\
         bootstrapper = {dht}\n[gossip]\np2p_address = {}\napi_address = 127.0.0.1:0\n\
         bootstrapper = {gossip}\n[chat]\np2p_address = {}\n",
        dir.join(name).display(),
        at(0),
        at(1),
        at(2),
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A port P such that P, P+1 and P+2 are free for UDP on 127.0.0.1 right now.
pub fn free_ports() -> u16 {
    for _ in 0..100 {
        let first = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port > 65000 {
            continue;
        }
        let next: Vec<_> = (1..3)
            .map(|i| std::net::UdpSocket::bind(("127.0.0.1", port + i)))
            .collect();
        if next.iter().all(Result::is_ok) {
            return port;
        }
    }
    panic!("no three free ports in a row");
}

/// A seed peer (carol, first of her network) and the DHT and gossip addresses to join
/// through.
pub fn seed(dir: &Path) -> (ChatProcess, String, String) {
    let carol = ChatProcess::start(&[
        "--name",
        "carol",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.join("carol").to_str().unwrap(),
    ]);
    let (_, line) = carol.listening();
    carol.expect("ready ");
    let (dht, gossip) = (
        field(&line, "dht").to_owned(),
        field(&line, "gossip").to_owned(),
    );
    (carol, dht, gossip)
}
