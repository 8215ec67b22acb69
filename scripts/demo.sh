#!/usr/bin/env bash
# The main job: Google's codelab "Securing ML models and Intellectual Property using
# Confidential Space", end to end on a fresh embedded Cloister in a temp dir (see
# examples/ml-model-protection/). Exits 0 only when the authorized workload classified the
# images and the unauthorized one was refused by the attribute condition.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --locked --quiet --bin cloister --bin ml-inference
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
CLOISTER="$target/debug/cloister" ML_INFERENCE="$target/debug/ml-inference" ORT_LIBRARY=$(bash scripts/ort-library.sh) \
  bash examples/ml-model-protection/demo.sh
