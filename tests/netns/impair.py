#!/usr/bin/env python3
"""Delay and loss for the packets a namespace sends, when the kernel has no `tc netem`.

Some kernels are built without sch_netem (CONFIG_NET_SCH_NETEM is not set), so
`tc qdisc add ... netem delay 50ms loss 5%` fails. This program does the same job in user
space through NFQUEUE: run it inside a network namespace, then send that namespace's
outgoing packets to the queue, e.g.

    ip netns exec NS python3 impair.py --queue 0 --delay-ms 50 --loss 0.05 &
    ip netns exec NS iptables -w -A OUTPUT -o eth0 -j NFQUEUE --queue-num 0

Each queued packet is dropped with probability `--loss`; every other packet is accepted
`--delay-ms` after it was queued (verdicts may be given out of order, so packets are not
serialised behind each other, like netem's delay without rate). Python standard library
only: the nfnetlink_queue protocol is spoken with a raw netlink socket.

Prints `bound queue=N` once it is ready, and on SIGTERM/SIGINT accepts whatever is still
held, then prints one line of figures: `impair queued=.. dropped=.. loss=..% delay_ms=..`.
"""

import argparse
import heapq
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_DROP = 0
NF_ACCEPT = 1


def attr(kind, payload):
    length = 4 + len(payload)
    pad = (4 - length % 4) % 4
    return struct.pack("=HH", length, kind) + payload + b"\0" * pad


def message(msg_type, flags, seq, queue, family, attrs):
    body = struct.pack("!BBH", family, 0, queue) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type,
                       NLM_F_REQUEST | flags, seq, 0) + body


def parse_attrs(data):
    out = {}
    i = 0
    while i + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, i)
        if length < 4:
            break
        out[kind & 0x7FFF] = data[i + 4:i + length]
        i += (length + 3) & ~3
    return out


class Queue:
    def __init__(self, number):
        self.number = number
        self.seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:  # room for bursts; SO_RCVBUFFORCE needs CAP_NET_ADMIN, which we have as root
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((0, 0))

    def request(self, msg_type, family, attrs):
        self.seq += 1
        self.sock.send(message(msg_type, NLM_F_ACK, self.seq, self.number, family, attrs))
        # Wait for the ACK (an NLMSG_ERROR with error 0) of this request.
        while True:
            data = self.sock.recv(65536)
            i = 0
            while i + 16 <= len(data):
                length, mtype, _flags, seq, _pid = struct.unpack_from("=IHHII", data, i)
                if mtype == NLMSG_ERROR and seq == self.seq:
                    (err,) = struct.unpack_from("=i", data, i + 16)
                    if err != 0:
                        raise OSError(-err, os.strerror(-err))
                    return
                i += (length + 3) & ~3

    def bind(self, maxlen):
        self.request(NFQNL_MSG_CONFIG, socket.AF_UNSPEC,
                     [attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, socket.AF_INET))])
        self.request(NFQNL_MSG_CONFIG, socket.AF_UNSPEC,
                     [attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)),
                      attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen))])

    def verdict(self, packet_id, verdict):
        self.seq += 1
        self.sock.send(message(NFQNL_MSG_VERDICT, 0, self.seq, self.number, socket.AF_UNSPEC,
                               [attr(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))]))

    def packets(self, data):
        """Packet ids in one datagram from the kernel."""
        i = 0
        while i + 16 <= len(data):
            length, mtype, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, i)
            if length < 16:
                break
            if mtype == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                attrs = parse_attrs(data[i + 20:i + length])
                hdr = attrs.get(NFQA_PACKET_HDR)
                if hdr is not None and len(hdr) >= 4:
                    yield struct.unpack_from("!I", hdr)[0]
            i += (length + 3) & ~3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queue", type=int, default=0)
    ap.add_argument("--delay-ms", type=float, default=50.0)
    ap.add_argument("--loss", type=float, default=0.05, help="drop probability, 0..1")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--maxlen", type=int, default=8192)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    q = Queue(args.queue)
    q.bind(args.maxlen)
    delay = args.delay_ms / 1000.0
    held = []  # heap of (due, packet id)
    queued = dropped = overruns = 0
    stop = False

    def on_signal(_sig, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"bound queue={args.queue}", flush=True)

    while not stop:
        now = time.monotonic()
        while held and held[0][0] <= now:
            q.verdict(heapq.heappop(held)[1], NF_ACCEPT)
        timeout = max(0.0, held[0][0] - now) if held else 0.5
        try:
            ready, _, _ = select.select([q.sock], [], [], timeout)
        except InterruptedError:
            continue
        if not ready:
            continue
        try:
            data = q.sock.recv(1 << 16)
        except InterruptedError:
            continue
        except OSError:  # ENOBUFS: the kernel dropped messages; those packets are lost
            overruns += 1
            continue
        arrived = time.monotonic()
        for packet_id in q.packets(data):
            queued += 1
            if rng.random() < args.loss:
                dropped += 1
                q.verdict(packet_id, NF_DROP)
            else:
                heapq.heappush(held, (arrived + delay, packet_id))

    for _, packet_id in held:
        q.verdict(packet_id, NF_ACCEPT)
    loss = 100.0 * dropped / queued if queued else 0.0
    print(f"impair queued={queued} dropped={dropped} loss={loss:.1f}% "
          f"delay_ms={args.delay_ms:g} overruns={overruns}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
