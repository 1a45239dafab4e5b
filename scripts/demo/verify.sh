#!/usr/bin/env bash
# Verify every event and report latency.
# Env: TARGET_EVENTS, BATCH_SIZE, LOG_LEVEL (and every pipedemo setting, see README).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
pipedemo verify --report "${REPORT:-verify_report.json}" "$@"
