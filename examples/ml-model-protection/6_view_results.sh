#!/usr/bin/env bash
# Secundus reads the result object.
set -euo pipefail
source "$(dirname "$0")/config_env.sh"
secundus storage cat "gs://$SECUNDUS_RESULT_STORAGE_BUCKET/result"
