#!/usr/bin/env bash
# Delete the demo data (asks first; pass --yes to skip).
# Env: TARGET_EVENTS, BATCH_SIZE, LOG_LEVEL (and every pipedemo setting, see README).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
pipedemo cleanup "$@"
