#!/usr/bin/env bash
# Deletes the instances both runs left.
set -euo pipefail
source "$(dirname "$0")/config_env.sh"
for vm in "$@"; do
  secundus compute instances delete "$vm" --project "$SECUNDUS_PROJECT_ID" --zone "$SECUNDUS_PROJECT_ZONE" 2>/dev/null || true
done
