#!/usr/bin/env bash
# Benchmarks every stage of the pipeline against a baseline measured in the same run and prints
# the figures with their ratios; writes bench/results.json. Needs the stack: scripts/stack.sh up.
#   scripts/bench.sh [--seconds 30] [--rates 100,500,2000] [--consumer-events 50000] …
set -Eeuo pipefail
cd "$(dirname "$0")/.."
scripts/stack.sh status >/dev/null || { echo "the stack is not up: run scripts/stack.sh up" >&2; exit 1; }

# The Python reference consumer's venv (confluent-kafka + pymongo), cached like the stack.
VENV="${STACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pipedemo-stack}/bench-venv"
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import confluent_kafka, pymongo' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'confluent-kafka==2.16.1' 'pymongo==4.20.0'
fi

cargo build --release --quiet --bin pipedemo --example bench
BENCH_PYTHON="$VENV/bin/python" target/release/examples/bench "$@"
