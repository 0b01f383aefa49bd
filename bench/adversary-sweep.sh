#!/usr/bin/env bash
# Lookups under attack in the simulator, d = 1 against the default d = 3 (issue 5, item 2).
#
#   bench/adversary-sweep.sh [OUT_DIR]        # default OUT_DIR: sim-adversary-sweep
#
# Runs `voidmesh sim` (through the simulator's example binary, so the chat and the rest of
# the workspace need not build) once per point: adversary behaviours fake-near-contacts,
# far-contacts and wrong-values, 0/10/20/30 % adversarial nodes, d = 1 and 3, 2000 nodes,
# 1000 GETs and 1000 FIND_NODE lookups per point, seed 1. Deterministic: the same CSV and
# chart every time. Writes OUT_DIR/sweep.csv and OUT_DIR/sweep.svg and copies the chart to
# docs/img/adversary-d1-vs-d3.svg. About 5 minutes of CPU on the machine of
# docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-sim-adversary-sweep}"
cargo run --release --locked -p voidmesh-sim --example sim -- \
    --nodes 2000 --seed 1 --records 1000 --lookups 1000 \
    --sweep-adversaries fake-near-contacts,far-contacts,wrong-values \
    --sweep-fractions 0,0.1,0.2,0.3 --sweep-disjoint-paths 1,3 \
    --out "$out"
mkdir -p docs/img
cp "$out/sweep.svg" docs/img/adversary-d1-vs-d3.svg
echo "chart: docs/img/adversary-d1-vs-d3.svg, figures: $out/sweep.csv"
