#!/usr/bin/env bash
# The whole show: setup, 10 -> 100 -> 1,000 -> 10,000 events, verification, reports.
# Env: TARGET_EVENTS, BATCH_SIZE, LOG_LEVEL (and every pipedemo setting, see README).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
pipedemo full "$@"
