#!/bin/sh
# Runs W1 for voidmesh and the three anchors, one after the other, at the sizes given
# (default 100) and appends each JSON line, tagged with the load average before the run,
# to bench/anchors/results/<date>.jsonl. Run from anywhere; builds what is missing.
#   bench/anchors/run-all.sh 100 300
# SYSTEMS (default "voidmesh voidmesh-d1 mainline python-kademlia libp2p-kad") picks which to run.
# LIBP2P_DEADLINE (seconds, default 900) bounds each libp2p run; it then reports how far it got.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/bench/anchors/results/$(date +%F).jsonl"
mkdir -p "$(dirname "$out")"
cd "$root"
cargo build --release -q -p voidmesh || [ -x target/release/voidmesh ] || exit 1
cargo build --release -q --manifest-path bench/anchors/mainline/Cargo.toml || exit 1
cargo build --release -q --manifest-path bench/anchors/libp2p-kad/Cargo.toml || exit 1

run() { # name, command...
    name=$1; shift
    case " ${SYSTEMS:-voidmesh voidmesh-d1 mainline python-kademlia libp2p-kad} " in
        *" $name "*) ;;
        *) return ;;
    esac
    load=$(cut -d' ' -f1 /proc/loadavg)
    echo "== $name (load $load): $*" >&2
    line=$("$@" | tail -n 1)
    case "$line" in
        "{"*) printf '{"load1":%s,"run":%s}\n' "$load" "$line" | tee -a "$out" ;;
        *) printf '{"load1":%s,"failed":"%s %s"}\n' "$load" "$name" "$*" | tee -a "$out" ;;
    esac
}

for n in ${@:-100}; do
    run voidmesh ./target/release/voidmesh bench w1 --nodes "$n"
    # voidmesh without its hardening defaults: one lookup path, first value wins, which is
    # what every anchor does (no anchor has disjoint paths or a read quorum).
    run voidmesh-d1 ./target/release/voidmesh bench w1 --nodes "$n" --disjoint-paths 1 --read-quorum 1
    run mainline bench/anchors/mainline/target/release/anchor-mainline --nodes "$n"
    run python-kademlia bench/anchors/python-kademlia/run.sh --nodes "$n"
    run libp2p-kad bench/anchors/libp2p-kad/target/release/anchor-libp2p-kad --nodes "$n" --deadline-s "${LIBP2P_DEADLINE:-900}"
done
