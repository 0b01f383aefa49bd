//! The real binary as a user drives it: two `voidmesh chat --plain` processes, one typing
//! into the other's presence, over loopback.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// A `voidmesh chat --plain` process; killed when dropped.
struct ChatProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its stdout lines, read by a thread.
    lines: Receiver<String>,
}

impl ChatProcess {
    fn start(args: &[&str]) -> ChatProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_voidmesh"))
            .arg("chat")
            .arg("--plain")
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("voidmesh starts");
        let stdout = child.stdout.take().unwrap();
        let lines = common::lines_of(stdout);
        let stdin = child.stdin.take();
        ChatProcess {
            child,
            stdin,
            lines,
        }
    }

    /// Types a line.
    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next output line starting with `prefix` (others are skipped).
    fn expect(&self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no line starting {prefix:?}; got:\n{}", seen.join("\n")),
            }
        }
    }

    /// Closes stdin and waits for the exit status.
    fn finish(mut self) -> bool {
        drop(self.stdin.take());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "the chat did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChatProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `key=value` out of a line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

fn config(dir: &Path, name: &str, dht: &str, gossip: &str) -> String {
    let path = dir.join(format!("{name}.ini"));
    let text = format!(
        "data_dir = {}\n[dht]\np2p_address = 127.0.0.1:0\napi_address = 127.0.0.1:0\n\
         bootstrapper = {dht}\n[gossip]\np2p_address = 127.0.0.1:0\napi_address = 127.0.0.1:0\n\
         bootstrapper = {gossip}\n[chat]\np2p_address = 127.0.0.1:0\n",
        dir.join(name).display()
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn two_people_chat_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let alice_dir = dir.path().join("alice");
    let mut alice = ChatProcess::start(&[
        "--name",
        "alice",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        alice_dir.to_str().unwrap(),
    ]);
    let listening = alice.expect("listening ");
    let alice_handle = listening.split_whitespace().nth(1).unwrap().to_owned();
    alice.expect("ready ");
    let bob_config = config(
        dir.path(),
        "bob",
        field(&listening, "dht"),
        field(&listening, "gossip"),
    );
    let mut bob = ChatProcess::start(&["--name", "bob", "-c", &bob_config]);
    let bob_handle = bob
        .expect("listening ")
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    bob.expect("ready ");

    bob.say("hello?");
    assert!(bob.expect("error ").contains("no open session"));
    bob.say(&format!("/find {alice_handle}"));
    bob.expect(&format!("found {alice_handle} at "));
    bob.say(&format!("/chat {alice_handle}"));
    bob.expect(&format!("session-opened {alice_handle} by=me"));
    alice.expect(&format!("session-opened {bob_handle} by=peer"));
    bob.say("hi alice");
    bob.expect(&format!("delivered {alice_handle} #1"));
    assert!(alice.expect("msg ").ends_with(": hi alice"));
    // The session someone opened becomes alice's current one: a plain line answers.
    alice.say("hello bob");
    assert!(bob
        .expect(&format!("msg {alice_handle} "))
        .ends_with(": hello bob"));
    bob.say("/end");
    alice.expect(&format!("session-ended {bob_handle} by=peer"));
    alice.say("/help");
    alice.expect("help /find");

    alice.say("/quit");
    alice.expect("stopped");
    assert!(alice.finish(), "alice exits cleanly");
    bob.say(&format!("/find {alice_handle}"));
    let gone = bob.expect("not-found ");
    assert!(gone.contains("gone"), "{gone}");
    assert!(bob.finish(), "bob exits cleanly at the end of input");
}

#[test]
fn a_bad_name_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_voidmesh"))
        .args([
            "chat",
            "--plain",
            "--name",
            "no spaces",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not a name"), "{stderr}");
}
