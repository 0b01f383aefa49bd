//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the checks the fuzz
//! targets run (`voidmesh_proto::fuzz_checks` for the wire formats,
//! `voidmesh_node::fuzz_checks` for the config and the hostkey), so the normal test suite
//! on the stable toolchain keeps every input the fuzzer found interesting, and every crash
//! it found.
//! See the "Fuzzing" section of `docs/robustness.md`.

use std::path::{Path, PathBuf};
use voidmesh_node::fuzz_checks as node_checks;
use voidmesh_proto::fuzz_checks;

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

/// The files of one target's corpus, in name order; fails if there are none, so that a
/// moved or emptied corpus cannot make the test pass without checking anything.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_root().join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "the corpus {} is empty: nothing would be checked",
        dir.display()
    );
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

/// Runs `check` on every input of `target`'s corpus; fails naming the first input that
/// panics.
fn replay_with(target: &str, check: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    for (path, bytes) in corpus(target) {
        let outcome = std::panic::catch_unwind(|| check(&bytes));
        assert!(
            outcome.is_ok(),
            "{target}: corpus input {} fails the check",
            path.display()
        );
    }
}

/// Replays a wire-format target through `voidmesh_proto::fuzz_checks::check`.
fn replay(target: &str) {
    replay_with(target, |bytes| fuzz_checks::check(target, bytes));
}

#[test]
fn api_dht_corpus() {
    replay("api_dht");
}

#[test]
fn api_gossip_corpus() {
    replay("api_gossip");
}

#[test]
fn peer_kad_corpus() {
    replay("peer_kad");
}

#[test]
fn peer_gossip_corpus() {
    replay("peer_gossip");
}

#[test]
fn peer_chat_corpus() {
    replay("peer_chat");
}

#[test]
fn signed_record_corpus() {
    replay("signed_record");
}

#[test]
fn config_corpus() {
    replay_with("config", node_checks::config);
}

#[test]
fn pem_corpus() {
    replay_with("pem", node_checks::pem);
}

/// Every corpus directory belongs to a target that a test above replays, and every
/// target has a corpus.
#[test]
fn datagram_corpus_is_replayed() {
    replay_with("datagram", voidmesh_net::datagram::fuzz_open);
}

#[test]
fn every_corpus_directory_is_replayed() {
    let node_targets = ["config", "pem", "datagram"];
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(corpus_root()).expect("fuzz/corpus exists") {
        let entry = entry.expect("directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            fuzz_checks::TARGETS.contains(&name.as_str()) || node_targets.contains(&name.as_str()),
            "fuzz/corpus/{name} is replayed by no test"
        );
        seen.push(name);
    }
    for target in fuzz_checks::TARGETS {
        assert!(
            seen.iter().any(|s| s == target),
            "no corpus for target {target}"
        );
    }
}
