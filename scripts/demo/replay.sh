#!/usr/bin/env bash
# Replay the whole topic and show the read models did not change (checksum before and after).
# Env: LOG_LEVEL (and every pipedemo setting, see README).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
before="$( (pipedemo verify --checksum --json || true) | sed -n 's/.*"checksum": "\([0-9a-f]*\)".*/\1/p')"
pipedemo replay "$@"
after="$( (pipedemo verify --checksum --json || true) | sed -n 's/.*"checksum": "\([0-9a-f]*\)".*/\1/p')"
echo "read-model checksum before: ${before:-none}"
echo "read-model checksum after:  ${after:-none}"
[[ -n "$before" && "$before" == "$after" ]] || { echo "the read models changed" >&2; exit 1; }
