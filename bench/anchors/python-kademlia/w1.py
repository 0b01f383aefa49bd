"""W1 anchor: Python's `kademlia` package (asyncio, UDP + msgpack RPC), N nodes in one
process on 127.0.0.1. Progress goes to stderr; the last stdout line is the W1 JSON object.

Mapping of W1 (see README.md): kademlia hashes every key with SHA-1 before use, so the
W1 32-byte random key is stored under SHA-1(key), a 160-bit id; the value is the 128
random bytes (bytes are a valid value type). `Server.set` returns True when at least
one of the k closest nodes acknowledged the STORE (the putter may also keep a copy);
`Server.get` answers from the local store first, then by a value lookup.
"""

import argparse
import asyncio
import json
import logging
import random
import sys
import time

from kademlia.network import Server

VERSION = "2.2.3"


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def quantile_ms(latencies, q):
    """Nearest-rank quantile of latencies in seconds, in ms."""
    if not latencies:
        return 0.0
    ordered = sorted(latencies)
    rank = max(1, -(-len(ordered) * q // 1))  # ceil(n * q), at least 1
    return ordered[int(rank) - 1] * 1000.0


async def bounded(items, in_flight, op):
    """Runs op(item) with at most in_flight at once; returns [(ok, seconds)] in order."""
    results = [(False, 0.0)] * len(items)
    queue = iter(enumerate(items))

    async def worker():
        for i, item in queue:
            t = time.perf_counter()
            try:
                ok = bool(await op(item))
            except Exception as e:  # an exception counts as a failed operation
                print(f"op failed: {e!r}", file=sys.stderr)
                ok = False
            results[i] = (ok, time.perf_counter() - t)

    await asyncio.gather(*(worker() for _ in range(max(1, in_flight))))
    return results


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--puts", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--join-concurrency", type=int, default=16,
                        help="joins in flight while bootstrapping (voidmesh's bench w1 uses 16)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-level", default="ERROR", help="logging level of the kademlia package")
    args = parser.parse_args()
    if args.nodes < 2:
        sys.exit("W1 needs at least 2 nodes")
    logging.basicConfig(level=getattr(logging, args.log_level.upper()))
    rng = random.Random(args.seed)

    # Start every node on loopback (port 0: the OS picks), node 0 first.
    started = time.perf_counter()
    nodes = []
    for _ in range(args.nodes):
        server = Server(ksize=20, alpha=3)
        await server.listen(0, interface="127.0.0.1")
        nodes.append(server)
    seed_addr = nodes[0].transport.get_extra_info("sockname")[:2]

    # Every other node joins through node 0, join_concurrency at a time.
    failed_joins = 0
    joiners = nodes[1:]
    for at in range(0, len(joiners), max(1, args.join_concurrency)):
        chunk = joiners[at:at + max(1, args.join_concurrency)]
        found = await asyncio.gather(*(n.bootstrap([seed_addr]) for n in chunk))
        failed_joins += sum(1 for f in found if not f)
    bootstrap_s = time.perf_counter() - started
    print(f"bootstrap: {bootstrap_s:.2f} s for {args.nodes} nodes ({failed_joins} joins found nobody)",
          file=sys.stderr)

    # PUT phase.
    ops = []
    for _ in range(args.puts):
        node = rng.randrange(args.nodes)
        value = rng.randbytes(128)
        key = rng.randbytes(32)
        ops.append((node, key, value))

    async def put(op):
        node, key, value = op
        return await nodes[node].set(key, value)

    put_results = await bounded(ops, args.in_flight, put)
    stored = [op for (ok, _), op in zip(put_results, ops) if ok]
    print(f"put phase: {len(stored)}/{args.puts} ok", file=sys.stderr)

    # GET phase: each stored key from a random node other than its putter.
    gets = []
    for putter, key, value in stored:
        node = rng.randrange(args.nodes - 1)
        if node >= putter:
            node += 1
        gets.append((node, key, value))

    async def get(op):
        node, key, value = op
        got = await nodes[node].get(key)
        return isinstance(got, bytes) and got == value

    get_started = time.perf_counter()
    get_results = await bounded(gets, args.in_flight, get)
    get_wall = time.perf_counter() - get_started
    get_ok = sum(1 for ok, _ in get_results if ok)
    print(f"get phase: {get_ok}/{len(gets)} ok in {get_wall:.2f} s", file=sys.stderr)

    put_lat = [t for _, t in put_results]
    get_lat = [t for _, t in get_results]
    line = {
        "system": f"python kademlia {VERSION}",
        "nodes": args.nodes,
        "bootstrap_s": round(bootstrap_s, 3),
        "put_ok": round(len(stored) / max(1, args.puts), 4),
        "put_p50_ms": round(quantile_ms(put_lat, 0.5), 3),
        "put_p99_ms": round(quantile_ms(put_lat, 0.99), 3),
        "get_ok": round(get_ok / max(1, len(gets)), 4),
        "get_p50_ms": round(quantile_ms(get_lat, 0.5), 3),
        "get_p99_ms": round(quantile_ms(get_lat, 0.99), 3),
        "get_ops_per_s": round(get_ok / max(get_wall, 1e-9), 1),
        "rss_mb": round(peak_rss_mb(), 1),
        "notes": (
            f"CPython {sys.version.split()[0]}, one asyncio loop, UDP + msgpack RPC (rpcudp), no crypto; "
            f"ksize=20 alpha=3; keys are SHA-1(W1 32-byte key), 160-bit ids; set() = lookup then STORE "
            f"to the k closest, success if any acknowledged; get() answers from a local copy first; "
            f"joins through node 0 {args.join_concurrency} at a time; {args.in_flight} in flight; "
            f"{failed_joins} failed joins"
        ),
    }
    for n in nodes:
        n.stop()
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
