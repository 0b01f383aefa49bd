//! The terminal UI as a terminal runs it: `voidmesh chat` on a pseudo-terminal (openpty),
//! read back byte for byte. Start-up, Ctrl-C, SIGTERM and what the terminal is left in.

mod common;

use common::chat::{config, seed, ChatProcess};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `voidmesh chat ARGS` with a pseudo-terminal of 100x30 as its terminal.
struct TtyChat {
    child: Child,
    /// The terminal's own side (kept open to read its settings after the exit).
    slave: OwnedFd,
    master: std::fs::File,
    /// Everything the chat wrote to the terminal.
    screen: Arc<Mutex<Vec<u8>>>,
    started: Instant,
}

impl TtyChat {
    fn start(args: &[&str]) -> TtyChat {
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize {
            ws_row: 30,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two descriptors we own from here on.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty");
        // SAFETY: fresh descriptors, owned once each.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let stdio = || Stdio::from(slave.try_clone().unwrap());
        let mut command = Command::new(env!("CARGO_BIN_EXE_voidmesh"));
        command
            .arg("chat")
            .args(args)
            .env("TERM", "xterm-256color")
            .env("RUST_LOG", "info")
            .stdin(stdio())
            .stdout(stdio())
            .stderr(stdio());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let child = command.spawn().expect("voidmesh starts");
        let master = std::fs::File::from(master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let into = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                into.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        TtyChat {
            child,
            slave,
            master,
            screen,
            started,
        }
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits until the terminal shows `text`; returns how long after the start.
    fn wait_for(&self, text: &str, within: Duration) -> Duration {
        let deadline = Instant::now() + within;
        loop {
            if self.output().contains(text) {
                return self.started.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} not shown within {within:?}; the terminal got:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn type_bytes(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
        self.master.flush().unwrap();
    }

    fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for the exit; returns whether it succeeded and how long it took.
    fn wait_exit(&mut self, within: Duration) -> (bool, Duration) {
        let from = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.success(), from.elapsed());
            }
            assert!(from.elapsed() < within, "the chat did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the terminal is back in its normal mode: line editing and echo on.
    fn cooked(&self) -> bool {
        // SAFETY: tcgetattr fills the struct for a descriptor we own.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut t) },
            0
        );
        t.c_lflag & libc::ICANON != 0 && t.c_lflag & libc::ECHO != 0
    }
}

impl Drop for TtyChat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The UI is drawn at once and says `alone` while the bootstrapper does not answer;
/// Ctrl-C leaves at once, with the terminal restored.
#[test]
fn with_an_unreachable_bootstrapper_the_ui_is_drawn_at_once_and_says_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("alice");
    let mut chat = TtyChat::start(&[
        "--name",
        "alice",
        "--listen",
        "127.0.0.1:0",
        "--bootstrap",
        "127.0.0.1:9",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let drawn = chat.wait_for("voidmesh chat", Duration::from_secs(5));
    let alone = chat.wait_for("alone (retrying)", Duration::from_secs(5));
    println!("UI drawn {drawn:?} after the start, alone shown after {alone:?}");
    assert!(drawn < Duration::from_secs(1), "drawn after {drawn:?}");
    assert!(alone < Duration::from_secs(1), "alone after {alone:?}");
    assert!(!chat.output().contains(" ready "), "not ready while alone");
    chat.type_bytes(b"\x03");
    let (ok, took) = chat.wait_exit(Duration::from_secs(10));
    assert!(ok, "Ctrl-C exits cleanly");
    println!("Ctrl-C while alone: exit after {took:?}");
    assert!(chat.cooked(), "the terminal is restored");
    assert!(
        chat.output().contains("\x1b[?1049l"),
        "left the alternate screen"
    );
}

/// SIGTERM under the terminal UI: presence withdrawn (another peer finds a tombstone),
/// the terminal restored, exit status 0.
#[test]
fn sigterm_under_the_ui_withdraws_presence_and_restores_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let (carol, dht, gossip) = seed(dir.path());
    let conf = config(dir.path(), "alice", 0, &dht, &gossip);
    let mut chat = TtyChat::start(&["--name", "alice", "-c", &conf]);
    chat.wait_for(
        "ready: others can find you as alice#",
        Duration::from_secs(30),
    );
    let output = chat.output();
    let at = output.find("find you as alice#").unwrap() + "find you as ".len();
    let handle: String = output[at..].chars().take("alice#".len() + 10).collect();
    assert!(!chat.cooked(), "raw mode while the UI runs");
    chat.signal(libc::SIGTERM);
    let (ok, took) = chat.wait_exit(Duration::from_secs(20));
    println!("SIGTERM: exit after {took:?}");
    assert!(ok, "a clean exit after SIGTERM");
    assert!(chat.cooked(), "the terminal is restored");
    assert!(
        chat.output().contains("\x1b[?1049l"),
        "left the alternate screen"
    );
    let finder_conf = config(dir.path(), "finder", 0, &dht, &gossip);
    let mut finder = ChatProcess::start(&["--name", "finder", "-c", &finder_conf]);
    finder.expect("ready ");
    finder.say(&format!("/find {handle}"));
    let gone = finder.expect("not-found ");
    assert!(gone.contains("gone (signed off)"), "{gone}");
    assert!(finder.finish());
    assert!(carol.finish());
}
