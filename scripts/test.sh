#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every crate's tests (unit and integration).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test-servers
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p ml-inference --all-targets --features tract --locked -- -D warnings
# The codelab demo test runs the workload binary, which `cargo test` does not build by itself.
cargo build --workspace --bins --locked
cargo test --workspace --locked
# Google's own gcloud against Cloister, where the Google Cloud SDK is installed (it is not a
# Debian package; the test is #[ignore]d otherwise, never silently passed).
if command -v gcloud >/dev/null; then
  cargo test -p cloister --test storage_cli --locked -- --ignored --exact googles_gcloud_copies_lists_syncs_composes_and_removes
fi
# The services' whole suite once more with PostgreSQL as the metadata store (the store-level
# conformance suite already runs on both).
CLOISTER_TEST_DATABASE=postgres cargo test -p cloister-services --tests --locked
# The codelab once more, on a replicated deployment: PostgreSQL, Garage, nginx and two replicas.
# Fixed ports below the kernel's ephemeral range, where no test's client socket can hold them.
LB_PORT=18080 REPLICA_PORTS="18081 18082" PG_PORT=18432 S3_PORT=18900 bash scripts/replicas.sh --demo
# The workload's pure-Rust engine passes the same correctness tests.
cargo test -p ml-inference --features tract --locked
