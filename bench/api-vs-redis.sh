#!/usr/bin/env bash
# One node's DHT API beside redis-server, loaded by the same client (`voidmesh bench api`,
# VoidPhone API or RESP), runs interleaved in one sitting. Prints one JSON line per run
# with the load average before it.
#
#   bench/api-vs-redis.sh [ROUNDS] [SECONDS] [OTHER_VOIDMESH_BINARY]
#
# OTHER_VOIDMESH_BINARY (optional) is a second voidmesh build measured the same way as the
# server (e.g. the previous commit's), always with this build's client.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
seconds=${2:-5}
other=${3:-}
bin=target/release/voidmesh
command -v redis-server >/dev/null || { echo "redis-server not installed" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

load() { cut -d' ' -f1-2 /proc/loadavg; }

voidmesh_run() { # binary label pipeline
    local server=$1 label=$2 p=$3
    rm -rf "$work/data"
    cat >"$work/c.ini" <<EOF
data_dir = $work/data
[dht]
p2p_address = 127.0.0.1:17400
api_address = 127.0.0.1:17401
EOF
    "$server" dht -c "$work/c.ini" >"$work/out" 2>/dev/null &
    local pid=$!
    for _ in $(seq 100); do grep -q '^ready dht' "$work/out" 2>/dev/null && break; sleep 0.05; done
    local l; l=$(load)
    local line; line=$("$bin" bench api --addr 127.0.0.1:17401 --connections 50 --pipeline "$p" \
        --seconds "$seconds" --keys 10000 --protocol voidphone | tail -1)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "{\"run\":\"$label\",\"pipeline\":$p,\"load\":\"$l\",\"result\":$line}"
}

redis_run() { # pipeline
    local p=$1
    redis-server --port 16379 --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
    local pid=$!
    for _ in $(seq 100); do redis-cli -p 16379 ping >/dev/null 2>&1 && break; sleep 0.05; done
    local l; l=$(load)
    local line; line=$("$bin" bench api --addr 127.0.0.1:16379 --connections 50 --pipeline "$p" \
        --seconds "$seconds" --keys 10000 --protocol resp | tail -1)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "{\"run\":\"redis-server $(redis-server --version | cut -d' ' -f3)\",\"pipeline\":$p,\"load\":\"$l\",\"result\":$line}"
}

for round in $(seq "$rounds"); do
    for p in 1 16; do
        voidmesh_run "$bin" "voidmesh (this build) round $round" "$p"
        redis_run "$p"
        if [ -n "$other" ]; then voidmesh_run "$other" "voidmesh ($other) round $round" "$p"; fi
    done
done
