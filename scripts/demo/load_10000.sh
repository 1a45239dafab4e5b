#!/usr/bin/env bash
# Send 10,000 events.
# Env: TARGET_EVENTS, BATCH_SIZE, LOG_LEVEL (and every pipedemo setting, see README).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
pipedemo load --events 10000 --batch-size "${BATCH_SIZE:-100}" "$@"
