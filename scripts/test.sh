#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every crate's tests (unit and integration).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
