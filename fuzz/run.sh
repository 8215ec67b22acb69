#!/usr/bin/env bash
# Fuzzes the parsers of untrusted evidence for a bounded time each:
#   fuzz/run.sh [SECONDS_PER_TARGET]   (default 120)
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Corpora are seeded
# from the recorded evidence in testdata/tee; crashes land in
# fuzz/artifacts/TARGET/ and make this script fail.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-120}"
fixtures="$(cd .. && pwd)/testdata/tee"

seed() { # seed TARGET FILE...
  local target="$1"; shift
  mkdir -p "corpus/$target"
  for f in "$@"; do if [ -f "$f" ]; then cp "$f" "corpus/$target/"; fi; done
}
if [ -d "$fixtures" ]; then
  seed snp_report "$fixtures"/snp/*.bin "$fixtures"/snp/*.der
  seed tdx_quote "$fixtures"/tdx/dcap-qvl-*_quote* "$fixtures"/tdx/*.dat
fi
seed event_log seeds/event_log/*

for target in snp_report tdx_quote event_log; do
  echo "== $target: ${seconds}s"
  cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=16384 -print_final_stats=1 2>&1 |
    grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::average_exec_per_sec|==[0-9]+==|SUMMARY|Done)" || true
  if ls "artifacts/$target"/crash-* >/dev/null 2>&1; then
    echo "$target: crash found: $(ls artifacts/$target/crash-*)" >&2
    exit 1
  fi
done
