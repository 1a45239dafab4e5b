#!/usr/bin/env bash
# Send 10 events.
# Env: TARGET_EVENTS, BATCH_SIZE, LOG_LEVEL (and every pipedemo setting, see README).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
pipedemo load --events 10 --batch-size "${BATCH_SIZE:-100}" "$@"
