#!/usr/bin/env bash
# The main job. Until `cloister demo` (the whole codelab) lands, it shows the foundation: start a server on a fresh data directory, log in as
# the bootstrap admin, create a user, let that user create a project, grant a second user
# viewer on it, and show the project's IAM policy and the audit log. Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --locked --quiet --bin cloister
bin="${CARGO_TARGET_DIR:-target}/debug/cloister"

work=$(mktemp -d)
export CLOISTER_CONFIG_DIR="$work/config"
log="$work/server.log"
"$bin" server --listen 127.0.0.1:0 --data-dir "$work/data" --log-format json 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT

for _ in $(seq 100); do
  grep -q '"cloister server listening"' "$log" 2>/dev/null && break
  sleep 0.1
done
address=$(grep -o '"address":"[^"]*"' "$log" | head -1 | cut -d'"' -f4)
[ -n "$address" ] || { cat "$log" >&2; exit 1; }
endpoint="http://$address"
step() { printf '\n==> %s\n' "$*"; }

step "server listening at $endpoint (data dir $work/data)"
"$bin" config profiles create admin --endpoint "$endpoint" --format 'value(name)' >/dev/null
"$bin" auth login --credential-file "$work/data/bootstrap-admin-credential.json" --format 'value(account)'

step "platform admin creates users primus@example.com and secundus@example.com"
"$bin" iam users create primus@example.com --credential-file "$work/primus.json" --format 'value(email)'
"$bin" iam users create secundus@example.com --credential-file "$work/secundus.json" --format 'value(email)'
for who in primus secundus; do
  "$bin" config profiles create "$who" --endpoint "$endpoint" >/dev/null
  "$bin" --profile "$who" auth login --credential-file "$work/$who.json" >/dev/null
done

step "primus creates project primus-bank"
"$bin" --profile primus projects create primus-bank

step "secundus is refused on primus-bank"
if "$bin" --profile secundus projects describe primus-bank; then
  echo "unexpected: secundus could read primus-bank" >&2; exit 1
fi

step "primus grants secundus roles/viewer; secundus can now describe it"
"$bin" --profile primus projects add-iam-policy-binding primus-bank \
  --member user:secundus@example.com --role roles/viewer >/dev/null
"$bin" --profile secundus projects describe primus-bank

step "IAM policy of primus-bank"
"$bin" --profile primus projects get-iam-policy primus-bank

step "audit log of primus-bank"
"$bin" --profile primus audit list --project primus-bank

step "done"
