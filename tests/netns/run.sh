#!/usr/bin/env bash
# Fault tests across hosts: voidmesh DHT nodes in separate Linux network namespaces.
#
#   sudo tests/netns/run.sh            # uses target/debug/voidmesh (cargo build -p voidmesh)
#   VOIDMESH_BIN=path/to/voidmesh sudo -E tests/netns/run.sh
#
# Topology (created and removed by this script; nothing else is touched):
#   one namespace "<prefix>-br" holding three bridges, br0 (the network), br1 (the other
#   side of a partition, or one isolated node) and br2 (another isolated node), and N
#   namespaces "<prefix>-nI", each with lo and one veth "eth0" whose peer is a port of br0. Node I has 10.77.(I+1).2/16: its own /24 (as separate hosts
#   would), all on one link. No namespace has a default route and the bridge namespace has
#   no uplink, so no packet can leave; the root namespace gets no interface at all.
#
# Each namespace runs `voidmesh dht -c nI/node.ini` (own data_dir, p2p and API on its own
# address, bootstrapper = node 0, republish_interval = 5s). Test clients (dhtclient.py)
# run inside the node's namespace and speak the VoidPhone DHT API.
#
# Scenarios (details in tests/netns/README.md):
#   join       every node PUTs one value; every value is found from every node
#   partition  halves split (ports moved to br1); values stored on both sides, one key
#              updated on one side, another written on both; each side finds its own
#              values and not the other side's; heal; every value is found from every
#              node, and the newest version of each key
#   netem      50 ms delay + 5 % loss on every node's outgoing packets (tc netem, or an
#              NFQUEUE emulator where the kernel has no sch_netem); PUT/GET still succeed
#   restart    SIGKILL two nodes, values still found from the survivors; restart them from
#              their data_dir (same config, same hostkey => same node id), first each
#              alone (they must serve records from their own store), then connected:
#              they rejoin and every value is found from every node, new PUTs too
#   crash-all  SIGKILL every node, restart all but the bootstrapper: values must survive
#              on disk and nodes rejoin through remembered contacts (see PERSISTENCE
#              below)
#
# Exit status: 0 when every enforced scenario passed (or SKIPPED), 1 otherwise.
# Environment: NETNS_NODES (default 10, at least 8), VOIDMESH_BIN, NETNS_KEEP=1 (keep the
# work directory), NETNS_EXPECT_PERSISTENCE=1|0, NETNS_RUST_LOG (default info).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
N=${NETNS_NODES:-10}
SRC_BIN=${VOIDMESH_BIN:-$ROOT/target/debug/voidmesh}
PY=${PYTHON:-python3}
# The interpreter itself, not a version-manager shim (pyenv's costs ~0.5 s per start).
PY=$("$PY" -c 'import sys; print(sys.executable)' 2>/dev/null || echo "$PY")
CLIENT="$HERE/dhtclient.py"
IMPAIR="$HERE/impair.py"
VALUES_PER_NODE=3
REPLICATION=4   # > the 2 nodes killed at once in "restart": a copy always survives
TTL=3600

skip() {
    echo "SKIPPED: needs root and ip netns ($1)"
    exit 0
}
[ "$(id -u)" = 0 ] || skip "not running as root"
command -v ip >/dev/null 2>&1 || skip "no ip command (iproute2)"
PREFIX="vmnt$$"
BRNS="$PREFIX-br"
ip netns add "$BRNS" 2>/dev/null || skip "ip netns add failed"
if [ "$N" -lt 8 ]; then
    echo "NETNS_NODES must be at least 8" >&2
    ip netns del "$BRNS"
    exit 2
fi

WORK=$(mktemp -d /tmp/voidmesh-netns.XXXXXX)
RES="$WORK/results"
mkdir -p "$RES"
declare -a PIDS=() GEN=() NODE_ID=() IMPAIR_PIDS=() SC_NAME=() SC_STATUS=() SC_DETAIL=()
FAILED=0
IMPAIR_MODE=""
PHASE="setup"
T_START=$(date +%s.%N)

ns() { echo "$PREFIX-n$1"; }
ipof() { echo "10.77.$(($1 + 1)).2"; }
api() { echo "$(ipof "$1"):7401"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "[$(since "$T_START")s] $*"; }
jt() { # a time field of a summary, "never" when not everything was found
    local v
    v=$(jf "$1" "$2")
    echo "${v:-never}"
}
jf() { "$PY" -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print("" if v is None else v)' "$1" "$2"; }

record() { # name status detail
    SC_NAME+=("$1")
    SC_STATUS+=("$2")
    SC_DETAIL+=("$3")
    [ "$2" = FAIL ] && FAILED=1
    PHASE=""
    log "scenario $1: $2 - $3"
}

summary() {
    echo
    echo "================ voidmesh fault tests across hosts: summary ================"
    echo "nodes: $N namespaces (one voidmesh dht each), binary: $SRC_BIN"
    echo "impairment: ${IMPAIR_MODE:-not reached}; persistence expected: ${PERSISTENCE:-?}"
    local i
    for i in "${!SC_NAME[@]}"; do
        printf '%-10s %-5s %s\n' "${SC_NAME[$i]}" "${SC_STATUS[$i]}" "${SC_DETAIL[$i]}"
    done
    [ -n "$PHASE" ] && echo "stopped early, during: $PHASE"
    echo "total time: $(since "$T_START") s"
    if [ "$FAILED" = 0 ] && [ "${#SC_NAME[@]}" -gt 0 ]; then
        echo "RESULT: PASS"
    else
        echo "RESULT: FAIL"
    fi
    echo "============================================================================"
}

stop_everything() { # our processes, then our namespaces
    local pid i name
    for pid in "${PIDS[@]}" "${IMPAIR_PIDS[@]}"; do
        [ -n "$pid" ] && kill -9 "$pid" && wait "$pid"
    done
    # Anything else still running inside our own namespaces (clients) was started here too.
    for i in $(seq 0 $((N - 1))) br; do
        name="$PREFIX-n$i"
        [ "$i" = br ] && name="$BRNS"
        if [ -e "/run/netns/$name" ]; then
            for pid in $(ip netns pids "$name"); do kill -9 "$pid"; done
        fi
    done
    wait
    for i in $(seq 0 $((N - 1))); do
        [ -e "/run/netns/$(ns "$i")" ] && ip netns del "$(ns "$i")"
    done
    [ -e "/run/netns/$BRNS" ] && ip netns del "$BRNS" # takes br0, br1 and the veths
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_everything 2>/dev/null
    if ls /run/netns 2>/dev/null | grep -q "^$PREFIX-"; then
        echo "warning: namespaces left behind: $(ls /run/netns | grep "^$PREFIX-" | tr '\n' ' ')" >&2
    fi
    [ "$status" != 0 ] && FAILED=1
    summary
    if [ "$FAILED" = 0 ] && [ "${NETNS_KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    else
        echo "work directory kept (configs, node logs nI/node.log, client results): $WORK"
    fi
    [ "$FAILED" = 0 ] && exit 0
    exit 1
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

die() {
    echo "error: $*" >&2
    FAILED=1
    exit 1
}

# ---------------------------------------------------------------- preparation
[ -x "$SRC_BIN" ] || die "no voidmesh binary at $SRC_BIN (cargo build -p voidmesh, or set VOIDMESH_BIN)"
command -v "$PY" >/dev/null 2>&1 || die "python3 is needed for the test client"
# A private copy: others may rebuild target/ while the test runs.
BIN="$WORK/voidmesh"
cp "$SRC_BIN" "$BIN" || die "cannot copy $SRC_BIN"

# PERSISTENCE ASSERTIONS (issue 5, item 6: records and contacts survive kill -9).
# Enforced: persistence landed in commit 6d2af99 ("node: records and routing contacts
# persist in redb ..."). NETNS_EXPECT_PERSISTENCE=0 reports those checks as INFO instead,
# e.g. to test an older binary.
PERSISTENCE=${NETNS_EXPECT_PERSISTENCE:-1}

# ---------------------------------------------------------------- network
log "creating $N namespaces + bridge namespace $BRNS (10.77.0.0/16, no route out)"
ip -n "$BRNS" link set lo up || die "bridge namespace"
for br in br0 br1 br2; do
    ip -n "$BRNS" link add "$br" type bridge || die "bridge $br"
    ip -n "$BRNS" link set "$br" up || die "bridge $br up"
done
for i in $(seq 0 $((N - 1))); do
    NS=$(ns "$i")
    ip netns add "$NS" || die "netns $NS"
    ip netns exec "$NS" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 >/dev/null 2>&1
    ip -n "$BRNS" link add "p$i" type veth peer name eth0 netns "$NS" || die "veth p$i"
    ip -n "$BRNS" link set "p$i" master br0 || die "p$i master br0"
    ip -n "$BRNS" link set "p$i" up || die "p$i up"
    ip -n "$NS" link set lo up || die "lo up in $NS"
    ip -n "$NS" addr add "$(ipof "$i")/16" dev eth0 || die "address in $NS"
    ip -n "$NS" link set eth0 up || die "eth0 up in $NS"
    # The only route is the on-link 10.77.0.0/16: refuse to go on if anything else exists.
    routes=$(ip -n "$NS" route show | grep -v '^10\.77\.0\.0/16 ')
    [ -z "$routes" ] || die "unexpected route in $NS: $routes"
done

move_port() { # node bridge
    ip -n "$BRNS" link set "p$1" master "$2" || die "moving p$1 to $2"
}

# ---------------------------------------------------------------- nodes
for i in $(seq 0 $((N - 1))); do
    mkdir -p "$WORK/n$i/data"
    {
        echo "data_dir = $WORK/n$i/data"
        echo
        echo "[dht]"
        echo "p2p_address = $(ipof "$i"):6501"
        echo "api_address = $(api "$i")"
        [ "$i" != 0 ] && echo "bootstrapper = $(ipof 0):6501"
        echo "request_timeout = 1s"
        echo "get_timeout = 6s"
        echo "republish_interval = 5s"
        echo "refresh_interval = 20s"
    } >"$WORK/n$i/node.ini"
    GEN[$i]=0
done

start_node() {
    local i=$1
    GEN[$i]=$((GEN[i] + 1))
    local out="$WORK/n$i/ready.${GEN[$i]}"
    : >"$out"
    echo "=== start ${GEN[$i]} at $(since "$T_START")s" >>"$WORK/n$i/node.log"
    RUST_LOG=${NETNS_RUST_LOG:-info} ip netns exec "$(ns "$i")" "$BIN" dht -c "$WORK/n$i/node.ini" \
        >"$out" 2>>"$WORK/n$i/node.log" &
    PIDS[$i]=$!
}

wait_ready() { # node -> sets NODE_ID[i] (fails the run if the node does not come up)
    local i=$1
    local out="$WORK/n$i/ready.${GEN[$i]}" t=0 line
    while ! line=$(grep -m1 '^ready dht' "$out" 2>/dev/null); do
        kill -0 "${PIDS[$i]}" 2>/dev/null || die "node $i exited before it was ready (see $WORK/n$i/node.log): $(tail -3 "$WORK/n$i/node.log")"
        t=$((t + 1))
        [ "$t" -gt 300 ] && die "node $i not ready after 30 s"
        sleep 0.1
    done
    local id=${line#*node_id=}
    id=${id%% *}
    if [ -n "${NODE_ID[$i]:-}" ] && [ "${NODE_ID[$i]}" != "$id" ]; then
        echo "node $i came back with another node id: ${NODE_ID[$i]} -> $id" >&2
        return 1
    fi
    NODE_ID[$i]=$id
}

kill_node() { # SIGKILL, like a crash
    {
        kill -9 "${PIDS[$1]}"
        wait "${PIDS[$1]}"
    } 2>/dev/null
    PIDS[$1]=""
}

alive_check() { # every node that should run still runs
    local i dead=""
    for i in $(seq 0 $((N - 1))); do
        [ -n "${PIDS[$i]}" ] && ! kill -0 "${PIDS[$i]}" 2>/dev/null && dead="$dead n$i"
    done
    if [ -n "$dead" ]; then
        record "alive" FAIL "node(s) died on their own:$dead (see their node.log)"
        return 1
    fi
}

# ---------------------------------------------------------------- client helpers
names_of() { # prefix node... -> names
    local p=$1 i j
    shift
    for i in "$@"; do
        for j in $(seq 1 "$VALUES_PER_NODE"); do echo "$p-n$i-$j"; done
    done
}

put_all() { # prefix node... : each node PUTs its own values (names_of), in parallel
    local p=$1 i pids=()
    shift
    for i in "$@"; do
        # shellcheck disable=SC2046
        put_from "$i" $(names_of "$p" "$i") &
        pids+=($!)
    done
    wait "${pids[@]}"
}

put_tagged() { # node tag name... : PUT "value of NAME TAG"
    local i=$1 tag=$2
    shift 2
    ip netns exec "$(ns "$i")" "$PY" "$CLIENT" put "$(api "$i")" --ttl "$TTL" \
        --replication "$REPLICATION" --tag "$tag" --label "n$i" "$@" >>"$RES/puts.log" 2>&1
}

put_from() { # node name...
    local i=$1
    shift
    ip netns exec "$(ns "$i")" "$PY" "$CLIENT" put "$(api "$i")" --ttl "$TTL" \
        --replication "$REPLICATION" --label "n$i" "$@" >>"$RES/puts.log" 2>&1
}

# get_from_nodes TAG DEADLINE "CLIENT OPTS" "NODES" NAME... -> prints summary JSON
get_from_nodes() {
    local tag=$1 deadline=$2 opts=$3 nodes=$4 i
    shift 4
    local pids=()
    for i in $nodes; do
        # shellcheck disable=SC2086
        ip netns exec "$(ns "$i")" "$PY" "$CLIENT" get "$(api "$i")" --deadline "$deadline" \
            --label "n$i" $opts "$@" >"$RES/$tag.n$i.json" 2>"$RES/$tag.n$i.err" &
        pids+=($!)
    done
    wait "${pids[@]}" 2>/dev/null
    local files=()
    for i in $nodes; do files+=("$RES/$tag.n$i.json"); done
    "$PY" "$CLIENT" summary "${files[@]}"
}

ALL=$(seq 0 $((N - 1)) | tr '\n' ' ')
HALF=$((N / 2))
SIDE_A=$(seq 0 $((HALF - 1)) | tr '\n' ' ')
SIDE_B=$(seq "$HALF" $((N - 1)) | tr '\n' ' ')

# ================================================================ join
PHASE=join
log "starting $N nodes (node 0 first, then the rest through it)"
T0=$(now)
start_node 0
wait_ready 0
for i in $(seq 1 $((N - 1))); do start_node "$i"; done
for i in $(seq 1 $((N - 1))); do wait_ready "$i"; done
T_READY=$(since "$T0")
PP=()
for i in $ALL; do
    put_from "$i" "base-n$i-1" &
    PP+=($!)
done
wait "${PP[@]}"
BASE=$(for i in $ALL; do echo "base-n$i-1"; done)
# shellcheck disable=SC2086
S=$(get_from_nodes join 40 "" "$ALL" $BASE)
if [ "$(jf "$S" incomplete)" = "{}" ]; then
    record join PASS "$N nodes ready in ${T_READY}s; $(jf "$S" found)/$(jf "$S" asked) GETs found ($N values x $N nodes), $(jf "$S" first_rate_pct)% at the first attempt, GET p50 $(jf "$S" lat_p50_ms_median) ms, all found within $(jt "$S" all_found_after_s)s"
else
    record join FAIL "found $(jf "$S" found)/$(jf "$S" asked); missing: $(jf "$S" incomplete)"
fi
alive_check

# ================================================================ partition
PHASE=partition
# Versions across the split: "upd-*" are written (v1) before the split and updated (v2) on
# side A during it; "cfl-*" are written on both sides during the split, side B last. After
# healing, every node must return v2 and B's value (the newest version wins; stale copies
# are repaired).
NAMES_UPD="upd-1 upd-2 upd-3"
NAMES_CFL="cfl-1 cfl-2 cfl-3"
# shellcheck disable=SC2086
put_tagged 1 v1 $NAMES_UPD
# shellcheck disable=SC2086
SV1=$(get_from_nodes updv1 30 "--tag v1" "$ALL" $NAMES_UPD)
log "partition: nodes $SIDE_A | nodes $SIDE_B"
for i in $SIDE_B; do move_port "$i" br1; done
T_PART=$(now)
# shellcheck disable=SC2086
NAMES_A=$(names_of a $SIDE_A)
# shellcheck disable=SC2086
NAMES_B=$(names_of a $SIDE_B)
# shellcheck disable=SC2086
put_all a $ALL
# shellcheck disable=SC2086
put_tagged 3 v2 $NAMES_UPD
# shellcheck disable=SC2086
put_tagged 0 fromA $NAMES_CFL
sleep 0.3 # B's versions (wall-clock ms) are later
# shellcheck disable=SC2086
put_tagged "$HALF" fromB $NAMES_CFL
# Each side finds its own values; neither finds the other side's (the split is real).
# shellcheck disable=SC2086
get_from_nodes partA 30 "" "$SIDE_A" $NAMES_A >"$RES/partA.sum" &
PP=($!)
# shellcheck disable=SC2086
get_from_nodes partB 30 "" "$SIDE_B" $NAMES_B >"$RES/partB.sum" &
PP+=($!)
# shellcheck disable=SC2086
get_from_nodes isoA 10 "--once" "0" $NAMES_B >"$RES/isoA.sum" &
PP+=($!)
# shellcheck disable=SC2086
get_from_nodes isoB 10 "--once" "$HALF" $NAMES_A >"$RES/isoB.sum" &
PP+=($!)
wait "${PP[@]}"
SA=$(cat "$RES/partA.sum")
SB=$(cat "$RES/partB.sum")
IA=$(cat "$RES/isoA.sum")
IB=$(cat "$RES/isoB.sum")
CROSS=$(($(jf "$IA" found) + $(jf "$IB" found)))
HELD=$(since "$T_PART")
log "healing after ${HELD}s of partition"
for i in $SIDE_B; do move_port "$i" br0; done
# shellcheck disable=SC2086
get_from_nodes healed 90 "" "$ALL" $NAMES_A $NAMES_B >"$RES/healed.sum" &
PP=($!)
# shellcheck disable=SC2086
get_from_nodes healupd 60 "--tag v2" "$ALL" $NAMES_UPD >"$RES/healupd.sum" &
PP+=($!)
# shellcheck disable=SC2086
get_from_nodes healcfl 60 "--tag fromB" "$ALL" $NAMES_CFL >"$RES/healcfl.sum" &
PP+=($!)
wait "${PP[@]}"
S=$(cat "$RES/healed.sum")
SU=$(cat "$RES/healupd.sum")
SF=$(cat "$RES/healcfl.sum")
HEAL_TIME=$(jf "$S" all_found_after_s)
# Once every node has read the newest versions, no read may return an older one.
# shellcheck disable=SC2086
SU2=$(get_from_nodes updagain 10 "--once --tag v2" "$ALL" $NAMES_UPD)
# shellcheck disable=SC2086
SF2=$(get_from_nodes cflagain 10 "--once --tag fromB" "$ALL" $NAMES_CFL)
# shellcheck disable=SC2086
SBASE=$(get_from_nodes healbase 30 "" "$ALL" $BASE)
STALE=$(($(jf "$SU" wrong) + $(jf "$SF" wrong)))
STALE2=$(($(jf "$SU2" wrong) + $(jf "$SF2" wrong)))
DETAIL="split ${HELD}s; during split: side A found $(jf "$SA" found)/$(jf "$SA" asked), side B $(jf "$SB" found)/$(jf "$SB" asked) of own values, cross-side found $CROSS/$(($(jf "$IA" asked) + $(jf "$IB" asked))) (must be 0); after heal: $(jf "$S" found)/$(jf "$S" asked) GETs found ($(($(echo $NAMES_A $NAMES_B | wc -w))) values x $N nodes), converged in ${HEAL_TIME:-never (90 s deadline)}s, first-attempt $(jf "$S" first_rate_pct)%; older values $(jf "$SBASE" found)/$(jf "$SBASE" asked); versions (3 updated on one side, 3 written on both): newest seen by all nodes after $(jt "$SU" all_found_after_s)s / $(jt "$SF" all_found_after_s)s, $STALE stale reads before, $STALE2 after ($(($(jf "$SU2" found) + $(jf "$SF2" found)))/$(($(jf "$SU2" asked) + $(jf "$SF2" asked))) newest)"
if [ "$(jf "$SA" incomplete)" = "{}" ] && [ "$(jf "$SB" incomplete)" = "{}" ] && [ "$CROSS" = 0 ] \
    && [ "$(jf "$S" incomplete)" = "{}" ] && [ "$(jf "$SBASE" incomplete)" = "{}" ] \
    && [ "$(jf "$SV1" incomplete)" = "{}" ] && [ "$(jf "$SU" incomplete)" = "{}" ] \
    && [ "$(jf "$SF" incomplete)" = "{}" ] && [ "$(jf "$SU2" incomplete)" = "{}" ] \
    && [ "$(jf "$SF2" incomplete)" = "{}" ]; then
    record partition PASS "$DETAIL"
else
    record partition FAIL "$DETAIL; v1 before split $(jf "$SV1" found)/$(jf "$SV1" asked); missing after heal: $(jf "$S" incomplete) $(jf "$SBASE" incomplete) upd $(jf "$SU" incomplete) $(jf "$SU2" incomplete) cfl $(jf "$SF" incomplete) $(jf "$SF2" incomplete); during split: $(jf "$SA" incomplete) $(jf "$SB" incomplete)"
fi
alive_check

# ================================================================ netem
PHASE=netem
impair_on() {
    local i
    if ip netns exec "$(ns 0)" tc qdisc add dev eth0 root netem delay 50ms loss 5% 2>/dev/null; then
        IMPAIR_MODE="tc netem delay 50ms loss 5% on every node's eth0 (egress)"
        for i in $(seq 1 $((N - 1))); do
            ip netns exec "$(ns "$i")" tc qdisc add dev eth0 root netem delay 50ms loss 5% || return 1
        done
        return 0
    fi
    command -v iptables >/dev/null 2>&1 || {
        IMPAIR_MODE="none: kernel has no sch_netem and iptables is missing"
        return 1
    }
    IMPAIR_MODE="NFQUEUE emulator (kernel has no sch_netem): delay 50ms loss 5% on every node's eth0 egress"
    for i in $ALL; do
        ip netns exec "$(ns "$i")" "$PY" "$IMPAIR" --queue 0 --delay-ms 50 --loss 0.05 --seed "$i" \
            >"$RES/impair.n$i.log" 2>&1 &
        IMPAIR_PIDS[$i]=$!
    done
    for i in $ALL; do
        local t=0
        until grep -q '^bound' "$RES/impair.n$i.log" 2>/dev/null; do
            t=$((t + 1))
            [ "$t" -gt 100 ] && { echo "impair in n$i did not start: $(cat "$RES/impair.n$i.log")" >&2; return 1; }
            sleep 0.1
        done
        ip netns exec "$(ns "$i")" iptables -w -A OUTPUT -o eth0 -j NFQUEUE --queue-num 0 || return 1
    done
}

impair_off() {
    local i
    if [ "${IMPAIR_MODE#tc netem}" != "$IMPAIR_MODE" ]; then
        IMPAIR_STATS=$(for i in $ALL; do ip netns exec "$(ns "$i")" tc -s qdisc show dev eth0; done |
            awk '/Sent/ { for (f = 1; f <= NF; f++) { if ($f == "pkt") sent += $(f - 1); if ($f == "(dropped") dropped += $(f + 1) } }
                END { total = sent + dropped; printf "netem: %d packets, %d dropped (%.1f%%)", total, dropped, total ? 100 * dropped / total : 0 }')
        for i in $ALL; do ip netns exec "$(ns "$i")" tc qdisc del dev eth0 root 2>/dev/null; done
        return
    fi
    for i in $ALL; do
        ip netns exec "$(ns "$i")" iptables -w -F OUTPUT 2>/dev/null
        [ -n "${IMPAIR_PIDS[$i]:-}" ] && kill -TERM "${IMPAIR_PIDS[$i]}" 2>/dev/null
    done
    for i in $ALL; do [ -n "${IMPAIR_PIDS[$i]:-}" ] && wait "${IMPAIR_PIDS[$i]}" 2>/dev/null; done
    IMPAIR_PIDS=()
    IMPAIR_STATS=$(cat "$RES"/impair.n*.log | awk '/^impair/ {
        for (f = 2; f <= NF; f++) { split($f, kv, "="); v[kv[1]] += kv[2] }
    } END { printf "%d packets impaired, %d dropped (%.1f%%)", v["queued"], v["dropped"], v["queued"] ? 100 * v["dropped"] / v["queued"] : 0 }')
}

log "netem: delay 50ms + loss 5% on every node"
IMPAIR_STATS=""
if impair_on; then
    log "impairment: $IMPAIR_MODE"
    NAMES_N=$(names_of b $ALL)
    T_N=$(now)
    # shellcheck disable=SC2086
    put_all b $ALL
    # shellcheck disable=SC2086
    SN=$(get_from_nodes netem 60 "" "$ALL" $NAMES_N)
    CONV=$(jf "$SN" all_found_after_s)
    # Steady state: one attempt per GET, all values stored so far, from every node.
    # shellcheck disable=SC2086
    SS=$(get_from_nodes netem1 20 "--once" "$ALL" $NAMES_N $NAMES_A $NAMES_B)
    impair_off
    RATE=$(jf "$SS" found_rate_pct)
    DETAIL="PUT then GET with retries: $(jf "$SN" found)/$(jf "$SN" asked) found, all found ${CONV:-never (60 s deadline)}s after the PUTs, GET attempts succeeding $(jf "$SN" attempt_rate_pct)%; single-attempt GETs: $(jf "$SS" found)/$(jf "$SS" asked) = ${RATE}%, p50 $(jf "$SS" lat_p50_ms_median) ms, max $(jf "$SS" lat_max_ms) ms, wrong values $(jf "$SS" wrong); $IMPAIR_STATS"
    if [ "$(jf "$SN" incomplete)" = "{}" ] && awk -v r="$RATE" 'BEGIN { exit !(r >= 90) }'; then
        record netem PASS "$DETAIL"
    else
        record netem FAIL "$DETAIL (needs all found and >= 90 % single-attempt); missing: $(jf "$SN" incomplete) / $(jf "$SS" incomplete)"
    fi
else
    impair_off
    record netem FAIL "could not impair the links: $IMPAIR_MODE"
fi
alive_check

# ================================================================ restart
PHASE=restart
VICTIMS="2 $((N - 2))"
ALL_NAMES="$BASE $NAMES_A $NAMES_B ${NAMES_N:-}"
NALL=$(echo $ALL_NAMES | wc -w)
SURVIVORS=$(for i in $ALL; do case " $VICTIMS " in *" $i "*) ;; *) echo "$i" ;; esac; done | tr '\n' ' ')
log "restart: SIGKILL nodes $VICTIMS"
for v in $VICTIMS; do kill_node "$v"; done
# shellcheck disable=SC2086
SD=$(get_from_nodes down 30 "" "$SURVIVORS" $ALL_NAMES)
# Restart them cut off from everyone, each alone on a bridge of its own (br1, br2): a node
# serves what it held only if it kept its records on disk.
b=1
for v in $VICTIMS; do
    move_port "$v" "br$b"
    b=$((b + 1))
done
IDS_OK=1
for v in $VICTIMS; do start_node "$v"; done
for v in $VICTIMS; do wait_ready "$v" || IDS_OK=0; done
# shellcheck disable=SC2086
SL=$(get_from_nodes local 15 "--once" "$VICTIMS" $ALL_NAMES)
LOCAL_FOUND=$(jf "$SL" found)
for v in $VICTIMS; do move_port "$v" br0; done
T_RJ=$(now)
# shellcheck disable=SC2086
SR=$(get_from_nodes rejoin 60 "" "$ALL" $ALL_NAMES)
RJ_TIME=$(jf "$SR" all_found_after_s)
NAMES_C=$(names_of c $VICTIMS)
# shellcheck disable=SC2086
put_all c $VICTIMS
# shellcheck disable=SC2086
SC=$(get_from_nodes newputs 30 "" "$ALL" $NAMES_C)
DETAIL="killed n${VICTIMS// /, n}; while down: $(jf "$SD" found)/$(jf "$SD" asked) GETs found from $(echo $SURVIVORS | wc -w) survivors; same node ids after restart: $([ $IDS_OK = 1 ] && echo yes || echo NO); restarted alone (no network) served $LOCAL_FOUND/$(jf "$SL" asked) from their own store; after rejoining: $(jf "$SR" found)/$(jf "$SR" asked) GETs found ($NALL values x $N nodes) in ${RJ_TIME:-never (60 s deadline)}s; new PUTs by restarted nodes: $(jf "$SC" found)/$(jf "$SC" asked)"
OK=1
[ "$(jf "$SD" incomplete)" = "{}" ] || OK=0
[ "$IDS_OK" = 1 ] || OK=0
[ "$(jf "$SR" incomplete)" = "{}" ] || OK=0
[ "$(jf "$SC" incomplete)" = "{}" ] || OK=0
# PERSISTENCE ASSERTION (issue 5 item 6): a restarted node serves the records it held.
# Enforced unless NETNS_EXPECT_PERSISTENCE=0.
if [ "$PERSISTENCE" = 1 ] && [ "${LOCAL_FOUND:-0}" -eq 0 ]; then
    OK=0
    DETAIL="$DETAIL; PERSISTENCE: restarted nodes served none of their old records"
fi
if [ "$OK" = 1 ]; then
    record restart PASS "$DETAIL"
else
    record restart FAIL "$DETAIL; missing: down $(jf "$SD" incomplete) rejoin $(jf "$SR" incomplete) new $(jf "$SC" incomplete)"
fi
alive_check

# ================================================================ crash-all
PHASE=crash-all
log "crash-all: SIGKILL every node, restart all but the bootstrapper (node 0)"
for i in $ALL; do kill_node "$i"; done
REST=$(seq 1 $((N - 1)) | tr '\n' ' ')
IDS_OK=1
for i in $REST; do start_node "$i"; done
for i in $REST; do wait_ready "$i" || IDS_OK=0; done
T_CA=$(now)
ALL_NAMES="$ALL_NAMES $NAMES_C"
NALL=$(echo $ALL_NAMES | wc -w)
DL=45
[ "$PERSISTENCE" = 1 ] || DL=10 # without persistence nothing can be found: do not wait long
# shellcheck disable=SC2086
SX=$(get_from_nodes crash "$DL" "" "$REST" $ALL_NAMES)
# shellcheck disable=SC2086
SXU=$(get_from_nodes crashupd "$DL" "--tag v2" "$REST" $NAMES_UPD)
# shellcheck disable=SC2086
SXF=$(get_from_nodes crashcfl "$DL" "--tag fromB" "$REST" $NAMES_CFL)
start_node 0
wait_ready 0 || IDS_OK=0
# shellcheck disable=SC2086
S0=$(get_from_nodes crash0 "$DL" "" "0" $ALL_NAMES)
DETAIL="all $N killed; $((N - 1)) restarted without their bootstrapper: $(jf "$SX" found)/$(jf "$SX" asked) GETs found ($NALL values x $((N - 1)) nodes), all found in $(jt "$SX" all_found_after_s)s; newest versions $(($(jf "$SXU" found) + $(jf "$SXF" found)))/$(($(jf "$SXU" asked) + $(jf "$SXF" asked))) ($(($(jf "$SXU" wrong) + $(jf "$SXF" wrong))) stale reads); then node 0 restarted: $(jf "$S0" found)/$(jf "$S0" asked) found from it; same node ids: $([ $IDS_OK = 1 ] && echo yes || echo NO)"
if [ "$(jf "$SX" incomplete)" = "{}" ] && [ "$(jf "$S0" incomplete)" = "{}" ] && [ "$IDS_OK" = 1 ] \
    && [ "$(jf "$SXU" incomplete)" = "{}" ] && [ "$(jf "$SXF" incomplete)" = "{}" ]; then
    record crash-all PASS "$DETAIL"
elif [ "$PERSISTENCE" = 1 ] || [ "$IDS_OK" != 1 ]; then
    record crash-all FAIL "$DETAIL"
else
    record crash-all INFO "$DETAIL (not enforced: NETNS_EXPECT_PERSISTENCE=0)"
fi
alive_check

# ---------------------------------------------------------------- product health
PHASE=health
PANICS=$(grep -l 'panicked' "$WORK"/n*/node.log 2>/dev/null | tr '\n' ' ')
if [ -n "$PANICS" ]; then
    record health FAIL "panic in node logs: $PANICS"
else
    record health PASS "no panic in $N node logs; $(sed 's/\x1b\[[0-9;]*m//g' "$WORK"/n*/node.log | grep -c ' WARN ') WARN lines, $(sed 's/\x1b\[[0-9;]*m//g' "$WORK"/n*/node.log | grep -c ' ERROR ') ERROR lines"
fi
exit 0
