#!/usr/bin/env bash
# Setup, one load of TARGET_EVENTS events (default 1000), then verify.
# Env: TARGET_EVENTS, BATCH_SIZE, LOG_LEVEL (and every pipedemo setting, see README).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
pipedemo setup
pipedemo load --events "${TARGET_EVENTS:-1000}" --batch-size "${BATCH_SIZE:-100}"
pipedemo verify "$@"
