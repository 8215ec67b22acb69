#!/usr/bin/env bash
# The main job: `cloister demo`, Google's codelab "Securing ML models and Intellectual Property
# using Confidential Space" end to end on a fresh embedded Cloister in a temp dir (the steps
# are examples/ml-model-protection/). Exits 0 only when the authorized workload classified the
# images and the unauthorized one was refused by the attribute condition.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --locked --quiet --bin cloister --bin ml-inference
target="${CARGO_TARGET_DIR:-target}"
"$target/debug/cloister" demo
