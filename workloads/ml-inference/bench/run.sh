#!/usr/bin/env bash
# The workload benchmark (release build). TensorFlow for the codelab-loop comparison lives in
# its own venv (TF_VENV, default /tmp/cloister-tf-venv), created here when missing.
set -euo pipefail
cd "$(dirname "$0")/../../.."
bash scripts/install-deps.sh
cargo build --release --locked --quiet -p ml-inference
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
venv=${TF_VENV:-/tmp/cloister-tf-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check 'tensorflow-cpu==2.20.0' pillow
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
TF_PYTHON="$venv/bin/python" python3 workloads/ml-inference/bench/bench.py \
  "$target/release/ml-inference" "$(bash scripts/ort-library.sh)" "$work" "${BENCH_IMAGES:-256}"
