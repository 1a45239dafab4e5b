#!/usr/bin/env bash
# Benchmarks every stage of the pipeline against a baseline measured in the same run and prints
# the figures with their ratios; writes bench/results.json. Needs the stack: scripts/stack.sh up.
#   scripts/bench.sh [--baseline REV] [--seconds 30] [--rates 100,500,2000] [--only SECTIONS] …
# --baseline REV (default: the last release tag v*, else the commit docs/performance.md names after
# "Release baseline:") builds REV's pipedemo in a worktree under target/bench-baseline and runs
# the regression section for both binaries on the same stack, interleaved: new ÷ baseline.
# --baseline none skips it.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
scripts/stack.sh status >/dev/null || { echo "the stack is not up: run scripts/stack.sh up" >&2; exit 1; }

baseline=""
args=()
while (($#)); do
  case "$1" in
    --baseline) baseline="${2:?--baseline needs a revision}"; shift 2 ;;
    --baseline=*) baseline="${1#--baseline=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
if [[ -z "$baseline" ]]; then
  baseline="$(git describe --tags --abbrev=0 --match 'v*' 2>/dev/null ||
    sed -n 's/^Release baseline: `\([0-9a-f]\{7,40\}\)`.*/\1/p' docs/performance.md | head -n 1)"
fi

# The Python reference consumer's venv (confluent-kafka + pymongo), cached like the stack.
VENV="${STACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pipedemo-stack}/bench-venv"
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import confluent_kafka, pymongo' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'confluent-kafka==2.16.1' 'pymongo==4.20.0'
fi

cargo build --release --quiet --bin pipedemo --example bench

if [[ -n "$baseline" && "$baseline" != none ]]; then
  rev="$(git rev-parse --short "$baseline^{commit}")" || { echo "--baseline $baseline is not a commit here" >&2; exit 2; }
  wt="target/bench-baseline/$rev"
  if [[ ! -x "$wt/target/release/pipedemo" ]]; then
    echo "bench: building the baseline $rev in $wt (the first time about 8 minutes)" >&2
    [[ -d "$wt/.git" || -f "$wt/.git" ]] || git worktree add --detach --force "$wt" "$rev" >/dev/null
    (cd "$wt" && CARGO_TARGET_DIR="$PWD/target" cargo build --release --quiet --bin pipedemo)
  fi
  args+=(--baseline "$wt/target/release/pipedemo" --baseline-label "$rev")
fi
BENCH_PYTHON="$VENV/bin/python" target/release/examples/bench "${args[@]}"
