#!/bin/sh
# One command for the Python kademlia W1 anchor: makes the venv on first use, installs the
# pinned requirements, runs w1.py with the given arguments (e.g. --nodes 100).
set -e
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -x "$here/.venv/bin/python" ]; then
    python3 -m venv "$here/.venv"
    "$here/.venv/bin/pip" install -q -r "$here/requirements.txt"
fi
exec "$here/.venv/bin/python" "$here/w1.py" "$@"
