#!/usr/bin/env bash
# The live dashboard, consuming what arrives (q to quit).
# Env: TARGET_EVENTS, BATCH_SIZE, LOG_LEVEL (and every pipedemo setting, see README).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
pipedemo monitor "$@"
