#!/usr/bin/env bash
# Check the services and prepare everything (pipedemo setup).
# Env: TARGET_EVENTS, BATCH_SIZE, LOG_LEVEL (and every pipedemo setting, see README).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
pipedemo setup "$@"
