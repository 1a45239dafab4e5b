#!/usr/bin/env bash
# Shared by the demo wrappers: run pipedemo from the repo (release build), passing arguments on.
set -euo pipefail
# Run from anywhere; the binary is built on first use.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export LOG_LEVEL="${LOG_LEVEL:-info}"
pipedemo() {
  cargo run --quiet --release --manifest-path "$REPO/Cargo.toml" -- "$@"
}
