#!/usr/bin/env python3
"""A small VoidPhone DHT API client for the fault tests (Python standard library only).

Framing (spec/voidphone-api.md): every message is `size u16 | type u16 | body`, big-endian,
size counting the whole message. PUT 650 = ttl u16 | replication u8 | reserved u8 | key 32
| value; GET 651 = key 32; SUCCESS 652 = key 32 | value; FAILURE 653 = key 32. PUT gets no
reply.

Test values are named: the key of NAME is SHA-256("voidmesh-netns:" NAME) and its value is
"value of NAME" (or "value of NAME TAG" with --tag, to tell versions of a key apart), so any
process can check what any other stored.

    dhtclient.py put API_ADDR [--ttl S] [--replication R] [--tag T] NAME...
    dhtclient.py get API_ADDR [--deadline S] [--once] [--window W] [--tag T] [--label L] NAME...
    dhtclient.py summary FILE...

`get` pipelines up to W GETs on one connection and retries what was not found (FAILURE, a
wrong value, a lost connection) in rounds until every name is found or the deadline passes
(`--once`: a single attempt per name). It prints one JSON line: names asked, found, found
at the first attempt, wrong values seen (another TAG: a stale version), attempts, seconds until all were found, latency
percentiles of the successful GETs, and the names still missing. `summary` adds up such
lines (one file per node) and prints one line of totals as JSON; it exits 1 when a name
is missing anywhere.
"""

import argparse
import hashlib
import json
import socket
import struct
import sys
import time

PUT, GET, SUCCESS, FAILURE = 650, 651, 652, 653


def key_of(name):
    return hashlib.sha256(b"voidmesh-netns:" + name.encode()).digest()


def value_of(name, tag=""):
    value = b"value of " + name.encode()
    return value + b" " + tag.encode() if tag else value


def parse_addr(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def frame(kind, body):
    return struct.pack("!HH", 4 + len(body), kind) + body


class Connection:
    def __init__(self, addr, timeout):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def recv_message(self, timeout):
        """One whole message (type, body), or None when `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                size, kind = struct.unpack_from("!HH", self.buf)
                if size < 4:
                    raise ConnectionError(f"bad size {size} from the DHT")
                if len(self.buf) >= size:
                    body = self.buf[4:size]
                    self.buf = self.buf[size:]
                    return kind, body
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                raise ConnectionError("the DHT closed the connection")
            self.buf += chunk

    def close(self):
        self.sock.close()


def cmd_put(args):
    addr = parse_addr(args.api)
    deadline = time.monotonic() + args.deadline
    while True:
        try:
            conn = Connection(addr, 5)
            break
        except OSError as e:
            if time.monotonic() > deadline:
                print(json.dumps({"label": args.label, "error": f"connect: {e}"}))
                return 1
            time.sleep(0.3)
    for name in args.names:
        body = struct.pack("!HBB", args.ttl, args.replication, 0) + key_of(name) + value_of(name, args.tag)
        conn.send(frame(PUT, body))
    # PUT has no reply; wait a moment so the node reads everything before we close.
    time.sleep(0.2)
    conn.close()
    print(json.dumps({"label": args.label, "put": len(args.names)}))
    return 0


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, int(round(p / 100.0 * (len(sorted_values) - 1))))
    return round(sorted_values[i], 1)


def cmd_get(args):
    addr = parse_addr(args.api)
    start = time.monotonic()
    deadline = start + args.deadline
    by_key = {key_of(n): n for n in args.names}
    pending = list(args.names)
    attempts = {n: 0 for n in args.names}
    found, first_ok, latencies = set(), set(), []
    wrong = failures = timeouts = conn_errors = 0
    all_found_after = None
    errors = []
    while pending:
        round_names = list(pending)
        retry = []
        try:
            conn = Connection(addr, 5)
        except OSError as e:
            conn_errors += 1
            errors.append(f"connect: {e}")
            if args.once or time.monotonic() > deadline:
                break
            time.sleep(0.5)
            continue
        try:
            sent = {}  # key -> (name, time sent)
            queue = list(round_names)
            while queue or sent:
                while queue and len(sent) < args.window:
                    name = queue.pop(0)
                    attempts[name] += 1
                    conn.send(frame(GET, key_of(name)))
                    sent[key_of(name)] = (name, time.monotonic())
                msg = conn.recv_message(args.reply_timeout)
                if msg is None:  # the node owes us answers for longer than any GET may take
                    timeouts += len(sent)
                    retry.extend(n for n, _ in sent.values())
                    break
                kind, body = msg
                key = body[:32]
                if key not in sent:
                    continue
                name, t0 = sent.pop(key)
                if kind == SUCCESS and body[32:] == value_of(name, args.tag):
                    found.add(name)
                    latencies.append((time.monotonic() - t0) * 1000.0)
                    if attempts[name] == 1:
                        first_ok.add(name)
                elif kind == SUCCESS:
                    wrong += 1
                    retry.append(name)
                else:
                    failures += 1
                    retry.append(name)
        except (OSError, ConnectionError) as e:
            conn_errors += 1
            errors.append(str(e))
            retry = [n for n in round_names if n not in found]
        finally:
            conn.close()
        pending = [n for n in round_names if n not in found]
        if not pending:
            all_found_after = time.monotonic() - start
            break
        if args.once or time.monotonic() + args.pause > deadline:
            break
        time.sleep(args.pause)
    latencies.sort()
    missing = [n for n in args.names if n not in found]
    out = {
        "label": args.label,
        "asked": len(args.names),
        "found": len(found),
        "first_ok": len(first_ok),
        "wrong": wrong,
        "failures": failures,
        "timeouts": timeouts,
        "conn_errors": conn_errors,
        "attempts": sum(attempts.values()),
        "all_found_after_s": None if all_found_after is None else round(all_found_after, 2),
        "elapsed_s": round(time.monotonic() - start, 2),
        "lat_p50_ms": percentile(latencies, 50),
        "lat_p99_ms": percentile(latencies, 99),
        "lat_max_ms": percentile(latencies, 100),
        "missing": missing,
        "errors": errors[-3:],
    }
    print(json.dumps(out))
    return 0 if not missing else 1


def cmd_summary(args):
    rows = []
    for path in args.files:
        try:
            with open(path) as f:
                lines = [line for line in f if line.strip().startswith("{")]
            rows.append(json.loads(lines[-1]))
        except (OSError, ValueError, IndexError) as e:
            rows.append({"label": path, "asked": 0, "found": 0, "first_ok": 0, "missing": ["?"],
                         "error": f"no result: {e}"})
    total = {k: sum(r.get(k) or 0 for r in rows)
             for k in ("asked", "found", "first_ok", "wrong", "failures", "timeouts", "attempts")}
    p50s = sorted(r["lat_p50_ms"] for r in rows if r.get("lat_p50_ms") is not None)
    maxes = [r["lat_max_ms"] for r in rows if r.get("lat_max_ms") is not None]
    times = [r.get("all_found_after_s") for r in rows]
    total["nodes"] = len(rows)
    total["first_rate_pct"] = round(100.0 * total["first_ok"] / total["asked"], 1) if total["asked"] else 0.0
    total["found_rate_pct"] = round(100.0 * total["found"] / total["asked"], 1) if total["asked"] else 0.0
    total["attempt_rate_pct"] = (round(100.0 * total["found"] / total["attempts"], 1)
                                 if total["attempts"] else 0.0)
    total["all_found_after_s"] = None if None in times or not times else max(times)
    total["lat_p50_ms_median"] = p50s[len(p50s) // 2] if p50s else None
    total["lat_max_ms"] = max(maxes) if maxes else None
    total["incomplete"] = {r.get("label"): (r.get("missing") or [])[:5] + (
        [f"... {len(r['missing'])} in all"] if len(r.get("missing") or []) > 5 else [])
        for r in rows if r.get("missing")}
    print(json.dumps(total))
    return 1 if total["incomplete"] else 0


def main():
    ap = argparse.ArgumentParser(description="VoidPhone DHT API client for the netns fault tests")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("put")
    p.add_argument("api")
    p.add_argument("--ttl", type=int, default=3600)
    p.add_argument("--replication", type=int, default=4)
    p.add_argument("--deadline", type=float, default=15.0, help="seconds to wait for the API port")
    p.add_argument("--label", default="")
    p.add_argument("--tag", default="")
    p.add_argument("names", nargs="+")
    g = sub.add_parser("get")
    g.add_argument("api")
    g.add_argument("--deadline", type=float, default=30.0)
    g.add_argument("--once", action="store_true")
    g.add_argument("--window", type=int, default=16)
    g.add_argument("--pause", type=float, default=0.5, help="seconds between retry rounds")
    g.add_argument("--reply-timeout", type=float, default=20.0)
    g.add_argument("--label", default="")
    g.add_argument("--tag", default="", help="the value expected is the one PUT with this tag")
    g.add_argument("names", nargs="+")
    s = sub.add_parser("summary")
    s.add_argument("files", nargs="+")
    args = ap.parse_args()
    return {"put": cmd_put, "get": cmd_get, "summary": cmd_summary}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
