#!/usr/bin/env python3
"""Drives two `voidmesh chat --plain` processes in two network namespaces the way the
README tells two people to start and use the chat, and checks every answer with a
deadline. Run by chat.sh, which creates and removes the namespaces."""
import argparse
import queue
import subprocess
import sys
import threading
import time

WAIT = 60.0


class Chat:
    """One `voidmesh chat --plain` inside a namespace; stdout lines go to a queue."""

    def __init__(self, label, ns, args, work):
        self.label = label
        self.log = open(f"{work}/{label}.log", "ab")
        cmd = ["ip", "netns", "exec", ns] + args
        print(f"[{label}] $ {' '.join(args)}", flush=True)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def say(self, line):
        print(f"[{self.label}] > {line}", flush=True)
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, prefix, within=WAIT):
        deadline = time.monotonic() + within
        seen = []
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = None
                if left > 0:
                    continue
            if line is None:
                raise AssertionError(f"[{self.label}] no line starting {prefix!r}; saw {seen}")
            print(f"[{self.label}] < {line}", flush=True)
            if line.startswith(prefix):
                return line
            seen.append(line)

    def finish(self):
        self.proc.stdin.close()
        return self.proc.wait(timeout=WAIT)

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--ns-a", required=True)
    p.add_argument("--ns-b", required=True)
    p.add_argument("--work", required=True)
    a = p.parse_args()
    start = time.monotonic()

    def chat(label, ns, extra):
        return Chat(label, ns, [a.bin, "chat", "--plain", "--listen", "0.0.0.0:7000",
                                "--data-dir", f"{a.work}/{label}"] + extra, a.work)

    # README: Alice starts first on a known port; Bob joins through her.
    alice = chat("alice", a.ns_a, ["--name", "alice"])
    me = alice.expect("listening ").split()[1]
    alice.expect("ready ")
    bob = chat("bob", a.ns_b, ["--name", "bob", "--bootstrap", "10.78.0.1:7000"])
    bob_me = bob.expect("listening ").split()[1]
    bob.expect("ready ")

    bob.say(f"/find {me}")
    found = bob.expect(f"found {me} at ")
    assert found.endswith("10.78.0.1:7002"), found
    bob.say(f"/chat {me}")
    bob.expect(f"session-opened {me} by=me")
    alice.expect(f"session-opened {bob_me} by=peer")
    bob.say("hello from the other host")
    bob.expect(f"delivered {me} #1")
    assert alice.expect(f"msg {bob_me} ").endswith(": hello from the other host")
    alice.say("hello back")
    assert bob.expect(f"msg {me} ").endswith(": hello back")
    bob.say("/end")
    alice.expect(f"session-ended {bob_me} by=peer")

    # Alice leaves: her presence is withdrawn, the next lookup says so.
    alice.say("/quit")
    alice.expect("stopped")
    assert alice.finish() == 0, "alice exits cleanly"
    bob.say(f"/find {me}")
    assert "gone" in bob.expect(f"not-found {me}")

    # Alice comes back (same data_dir: same user), then dies mid-session: a line to her
    # fails visibly instead of hanging.
    alice = chat("alice", a.ns_a, ["--name", "alice", "--bootstrap", "10.78.0.2:7000"])
    assert alice.expect("listening ").split()[1] == me, "same user after a restart"
    alice.expect("ready ")
    bob.say(f"/chat {me}")
    bob.expect(f"session-opened {me} by=me")
    alice.expect(f"session-opened {bob_me} by=peer")
    alice.say("/history " + bob_me)
    assert " 2 messages" in alice.expect(f"history {bob_me}")
    alice.kill()
    bob.say("are you there?")
    failed = bob.expect(f"failed {me} #1", within=30)
    print(f"dead peer reported: {failed}", flush=True)
    bob.say("/quit")
    bob.expect("stopped")
    assert bob.finish() == 0, "bob exits cleanly"
    print(f"chat across namespaces: all checks passed in {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
