#!/usr/bin/env bash
# The chat across two hosts, following the README's instructions: two network namespaces
# joined by one veth pair (10.78.0.1 and 10.78.0.2, no other route), `voidmesh chat
# --plain` in each, driven by chatdriver.py as a user would type.
#
#   sudo tests/netns/chat.sh          # uses target/debug/voidmesh; VOIDMESH_BIN overrides
#
# Exit status 0 when the exchange worked (or SKIPPED without root), 1 otherwise.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${VOIDMESH_BIN:-$ROOT/target/debug/voidmesh}
PY=${PYTHON:-python3}

[ "$(id -u)" = 0 ] || { echo "SKIPPED: needs root for ip netns"; exit 0; }
command -v ip >/dev/null 2>&1 || { echo "SKIPPED: no ip command (iproute2)"; exit 0; }
[ -x "$BIN" ] || { echo "error: no voidmesh binary at $BIN" >&2; exit 1; }

PREFIX="vmch$$"
A="$PREFIX-a"
B="$PREFIX-b"
WORK=$(mktemp -d /tmp/voidmesh-chat-netns.XXXXXX)

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for n in "$A" "$B"; do
        if [ -e "/run/netns/$n" ]; then
            for pid in $(ip netns pids "$n"); do kill -9 "$pid" 2>/dev/null; done
            ip netns del "$n"
        fi
    done
    if [ "$status" = 0 ]; then
        rm -rf "$WORK"
        echo "CHAT RESULT: PASS"
    else
        echo "work directory kept (logs): $WORK"
        echo "CHAT RESULT: FAIL"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$A" || exit 1
ip netns add "$B" || exit 1
ip -n "$A" link add eth0 type veth peer name eth0 netns "$B" || exit 1
for pair in "$A 10.78.0.1" "$B 10.78.0.2"; do
    set -- $pair
    ip netns exec "$1" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 >/dev/null 2>&1
    ip -n "$1" link set lo up || exit 1
    ip -n "$1" addr add "$2/24" dev eth0 || exit 1
    ip -n "$1" link set eth0 up || exit 1
    routes=$(ip -n "$1" route show | grep -v '^10\.78\.0\.0/24 ')
    [ -z "$routes" ] || { echo "unexpected route in $1: $routes" >&2; exit 1; }
done

"$PY" "$HERE/chatdriver.py" --bin "$BIN" --ns-a "$A" --ns-b "$B" --work "$WORK"
