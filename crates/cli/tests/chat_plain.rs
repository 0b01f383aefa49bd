//! The real binary as a user drives it: `voidmesh chat --plain` processes typing into
//! each other over loopback, and what the command line refuses.

mod common;

use common::chat::{config, field, seed, ChatProcess};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    let (alice_handle, listening) = alice.listening();
    alice.expect("ready ");
    let bob_config = config(
        dir.path(),
        "bob",
        0,
        field(&listening, "dht"),
        field(&listening, "gossip"),
    );
    let mut bob = ChatProcess::start(&["--name", "bob", "-c", &bob_config]);
    let (bob_handle, _) = bob.listening();
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

/// `/msg` to someone with no session opens one and sends; `/history` then gives one
/// `history-entry` line per message, dated, in the local zone (TZ), "you" for one's own.
#[test]
fn msg_opens_a_session_and_times_are_local() {
    let dir = tempfile::tempdir().unwrap();
    let (carol, dht, gossip) = seed(dir.path());
    let alice_config = config(dir.path(), "alice", 0, &dht, &gossip);
    let bob_config = config(dir.path(), "bob", 0, &dht, &gossip);
    let kolkata = [("TZ", "Asia/Kolkata")];
    let mut alice = ChatProcess::start_with(&["--name", "alice", "-c", &alice_config], &kolkata);
    let (alice_handle, _) = alice.listening();
    alice.expect("ready ");
    let mut bob = ChatProcess::start_with(&["--name", "bob", "-c", &bob_config], &kolkata);
    let (bob_handle, _) = bob.listening();
    bob.expect("ready ");

    bob.say(&format!("/msg {alice_handle} one-shot"));
    let sent = bob.expect(&format!("sent {alice_handle} #1 "));
    assert!(sent.ends_with(" +05:30: one-shot"), "{sent}");
    bob.expect(&format!("session-opened {alice_handle} by=me"));
    bob.expect(&format!("delivered {alice_handle} #1"));
    let got = alice.expect(&format!("msg {bob_handle} "));
    assert!(got.ends_with(" +05:30: one-shot"), "{got}");
    alice.say(&format!("/msg {bob_handle} reply"));
    alice.expect(&format!("delivered {bob_handle} #1"));

    bob.say(&format!("/history {alice_handle}"));
    assert_eq!(
        bob.expect("history "),
        format!("history {alice_handle} 2 messages")
    );
    let mine = bob.expect("history-entry ");
    assert!(mine.contains(" +05:30 you [delivered]: one-shot"), "{mine}");
    let theirs = bob.expect("history-entry ");
    assert!(
        theirs.contains(&format!(" +05:30 {alice_handle} [received]: reply")),
        "{theirs}"
    );
    // YYYY-MM-DD HH:MM:SS after the target.
    let date = theirs.split_whitespace().nth(2).unwrap();
    assert_eq!(date.len(), 10, "{theirs}");
    assert_eq!(date.as_bytes()[4], b'-');
    for p in [alice, bob, carol] {
        assert!(p.finish());
    }
}

/// With a bootstrapper that does not answer: `network alone` within a second, commands
/// refused until `ready`, and SIGTERM still ends with `stopped` and status 0.
#[test]
fn an_unreachable_bootstrapper_gives_alone_at_once_and_commands_wait_for_ready() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut alice = ChatProcess::start(&[
        "--name",
        "alice",
        "--listen",
        "127.0.0.1:0",
        "--bootstrap",
        "127.0.0.1:9",
        "--data-dir",
        dir.path().join("alice").to_str().unwrap(),
    ]);
    let alone = alice.expect_within("network alone", Duration::from_secs(3));
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "alone after {took:?}");
    assert!(
        alone.contains("no bootstrapper answered yet; retrying"),
        "{alone}"
    );
    alice.say("/find bob#abcdefghij");
    alice.expect("error not ready yet");
    alice.signal(libc::SIGTERM);
    alice.expect("stopped");
    assert!(alice.wait_exit(), "a clean exit");
}

/// SIGTERM (and SIGHUP) quit like `/quit`: `stopped`, status 0, presence withdrawn.
#[test]
fn sigterm_and_sighup_withdraw_presence_and_say_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (carol, dht, gossip) = seed(dir.path());
    for (name, signal) in [("alice", libc::SIGTERM), ("dave", libc::SIGHUP)] {
        let conf = config(dir.path(), name, 0, &dht, &gossip);
        let mut user = ChatProcess::start(&["--name", name, "-c", &conf]);
        let (handle, _) = user.listening();
        user.expect("ready ");
        user.signal(signal);
        user.expect("stopped");
        assert!(user.wait_exit(), "{name} exits cleanly");
        let finder_conf = config(dir.path(), &format!("{name}-finder"), 0, &dht, &gossip);
        let mut finder = ChatProcess::start(&["--name", "finder", "-c", &finder_conf]);
        finder.expect("ready ");
        finder.say(&format!("/find {handle}"));
        let gone = finder.expect("not-found ");
        assert!(gone.contains("gone (signed off)"), "{gone}");
        assert!(finder.finish());
    }
    assert!(carol.finish());
}

fn voidmesh(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_voidmesh"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_bad_name_is_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let output = voidmesh(&[
        "chat",
        "--plain",
        "--name",
        "no spaces",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not a name"), "{stderr}");
    assert!(!data.join("hostkey.pem").exists(), "no hostkey made");
}

#[test]
fn the_command_line_is_checked_and_explained() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let data = data.to_str().unwrap();
    // --listen with -c: refused, not ignored.
    let conf = config(dir.path(), "x", 0, "127.0.0.1:9", "127.0.0.1:10");
    let output = voidmesh(&[
        "chat",
        "--plain",
        "--name",
        "x",
        "-c",
        &conf,
        "--listen",
        "127.0.0.1:7000",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--listen cannot be used with -c"),
        "{stderr}"
    );
    // No terminal: the UI says to use --plain (stdin is /dev/null here).
    let output = voidmesh(&["chat", "--name", "x", "--data-dir", data]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("use --plain"), "{stderr}");
    assert!(!stderr.contains("No such device"), "{stderr}");
    // A host name in --listen is resolved.
    let named = ChatProcess::start(&[
        "--name",
        "named",
        "--listen",
        "localhost:0",
        "--data-dir",
        data,
    ]);
    let (_, line) = named.listening();
    assert!(
        field(&line, "dht").starts_with("127.0.0.1:") || field(&line, "dht").starts_with("[::1]:"),
        "{line}"
    );
    named.expect("ready ");
    assert!(named.finish());
}
