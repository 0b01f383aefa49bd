//! The chat when a peer dies: `kill -9` of a real `voidmesh chat --plain` process, seen
//! from another one, and the same peer restarted with its data directory.

mod common;

use common::chat::{config, free_ports, seed, ChatProcess};
use std::path::Path;
use std::time::{Duration, Instant};

/// The default liveness bound and probe interval (`[chat] liveness`).
const LIVENESS: Duration = Duration::from_secs(3);
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// bob opens a session with alice and a line goes through.
fn talk(bob: &mut ChatProcess, alice: &ChatProcess, alice_handle: &str, text: &str) {
    bob.say(&format!("/chat {alice_handle}"));
    bob.expect(&format!("session-opened {alice_handle} by=me"));
    bob.say(text);
    bob.expect(&format!("delivered {alice_handle} "));
    assert!(alice.expect("msg ").ends_with(&format!(": {text}")));
}

fn start(dir: &Path, name: &str, conf: &str) -> (ChatProcess, String) {
    let _ = dir;
    let user = ChatProcess::start(&["--name", name, "-c", conf]);
    let (handle, _) = user.listening();
    user.expect("ready ");
    (user, handle)
}

#[test]
fn a_killed_peer_is_shown_gone_within_the_liveness_bound_without_sending() {
    let dir = tempfile::tempdir().unwrap();
    let (carol, dht, gossip) = seed(dir.path());
    let (alice, alice_handle) = start(
        dir.path(),
        "alice",
        &config(dir.path(), "alice", 0, &dht, &gossip),
    );
    let (mut bob, _) = start(
        dir.path(),
        "bob",
        &config(dir.path(), "bob", 0, &dht, &gossip),
    );
    talk(&mut bob, &alice, &alice_handle, "hi");

    let killed = Instant::now();
    alice.kill();
    let gone = bob.expect_within(&format!("gone {alice_handle}"), Duration::from_secs(10));
    let took = killed.elapsed();
    println!("noticed a dead peer after {took:?}");
    assert!(
        took <= LIVENESS + PROBE_INTERVAL + Duration::from_millis(500),
        "gone after {took:?}: {gone}"
    );
    bob.say("/sessions");
    assert_eq!(
        bob.expect("sessions"),
        format!("sessions {alice_handle}(gone)")
    );
    // A line to the gone peer says so at once.
    bob.say("still there?");
    let failed = bob.expect(&format!("failed {alice_handle} #2"));
    assert!(failed.contains("not answering"), "{failed}");
    // Its presence has not expired, but /find says nobody answers.
    bob.say(&format!("/find {alice_handle}"));
    let found = bob.expect(&format!("not-found {alice_handle}"));
    assert!(found.contains("not answering"), "{found}");
    assert!(bob.finish());
    assert!(carol.finish());
}

/// `kill -9`, restarted at once with the same data directory, on the same ports and on
/// others: bob reaches the new alice within 2 s of her `ready`, every time.
#[test]
fn a_restarted_peer_is_reachable_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let (carol, dht, gossip) = seed(dir.path());
    let port = free_ports();
    let same_ports = config(dir.path(), "alice", port, &dht, &gossip);
    let (mut alice, alice_handle) = start(dir.path(), "alice", &same_ports);
    let (mut bob, _) = start(
        dir.path(),
        "bob",
        &config(dir.path(), "bob", 0, &dht, &gossip),
    );
    talk(&mut bob, &alice, &alice_handle, "before");

    for (round, ports) in [
        ("same ports", port),
        ("other ports", 0),
        ("same ports again", port),
    ] {
        alice.kill();
        // Same data directory (so the same user key and hostkey), same or other ports.
        let conf = config(dir.path(), "alice", ports, &dht, &gossip);
        let restarted;
        (alice, restarted) = start(dir.path(), "alice", &conf);
        assert_eq!(restarted, alice_handle);
        let ready = Instant::now();
        talk(&mut bob, &alice, &alice_handle, round);
        let took = ready.elapsed();
        println!("{round}: reached the restarted peer {took:?} after its ready");
        assert!(took < Duration::from_secs(2), "{round}: {took:?}");
    }
    for p in [alice, bob, carol] {
        assert!(p.finish());
    }
}
