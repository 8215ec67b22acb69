#!/usr/bin/env bash
# Cloister as two stateless replicas on this machine, laid out as docs/deployment.md describes
# for many machines: PostgreSQL holds the metadata, Garage (S3) the blobs, nginx balances
# requests over two `cloister server` processes that share one external key-encryption key.
#
#   scripts/replicas.sh          start everything, print the endpoint, run until Ctrl-C
#   scripts/replicas.sh --demo   run the codelab demo through the load balancer, then stop
#
# Ports (override with the environment): LB_PORT=8080, REPLICA_PORTS="8081 8082",
# PG_PORT=15432, S3_PORT=13900 (all below the ephemeral port range, where client sockets could
# hold them). Everything lives in a temp dir, removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=false
[ "${1:-}" = "--demo" ] && demo=true
LB_PORT=${LB_PORT:-8080} REPLICA_PORTS=${REPLICA_PORTS:-"8081 8082"}
PG_PORT=${PG_PORT:-15432} S3_PORT=${S3_PORT:-13900}

bash scripts/install-deps.sh --test-servers
cargo build --locked --quiet --bin cloister --bin ml-inference
cloister="${CARGO_TARGET_DIR:-target}/debug/cloister"

work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '==> %s\n' "$*"; }
wait_for() {
  for _ in $(seq 400); do eval "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "timed out: $1; the logs so far:" >&2
  tail -n 20 "$work"/*.log >&2 || true
  exit 1
}

step "PostgreSQL on 127.0.0.1:$PG_PORT (a new cluster in $work/pg)"
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_postgres=()
if [ "$(id -u)" = 0 ]; then chown postgres: "$work"; as_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups --); fi
"${as_postgres[@]}" "$pgbin/initdb" -D "$work/pg" -U cloister -A trust -E UTF8 >/dev/null
"${as_postgres[@]}" "$pgbin/postgres" -D "$work/pg" -p "$PG_PORT" -k "$work" -c listen_addresses=127.0.0.1 >"$work/pg.log" 2>&1 &
pids+=($!)
wait_for "'$pgbin/pg_isready' -h 127.0.0.1 -p $PG_PORT -U cloister"
"$pgbin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U cloister cloister
database="postgres://cloister@127.0.0.1:$PG_PORT/cloister"

step "Garage (S3) on 127.0.0.1:$S3_PORT, bucket cloister-blobs"
cat >"$work/garage.toml" <<EOF
metadata_dir = "$work/garage/meta"
data_dir = "$work/garage/data"
db_engine = "sqlite"
replication_factor = 1
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$((S3_PORT + 1))"
rpc_public_addr = "127.0.0.1:$((S3_PORT + 1))"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.garage.localhost"
EOF
garage -c "$work/garage.toml" server >"$work/garage.log" 2>&1 &
pids+=($!)
garage() { command garage -c "$work/garage.toml" "$@"; }
wait_for "garage status"
node=$(garage status | awk 'length($1) == 16 && $1 ~ /^[0-9a-f]+$/ { print $1; exit }')
garage layout assign -z dc1 -c 1G "$node" >/dev/null
garage layout apply --version 1 >/dev/null
key=$(garage key create cloister)
garage bucket create cloister-blobs >/dev/null
garage bucket allow --read --write --owner cloister-blobs --key cloister >/dev/null
export AWS_ENDPOINT="http://127.0.0.1:$S3_PORT" AWS_REGION=garage AWS_ALLOW_HTTP=true
AWS_ACCESS_KEY_ID=$(echo "$key" | sed -n 's/^Key ID: *//p')
AWS_SECRET_ACCESS_KEY=$(echo "$key" | sed -n 's/^Secret key: *//p')
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY

step "the key-encryption key, outside every data directory ($work/kek)"
head -c 32 /dev/urandom >"$work/kek"
chmod 600 "$work/kek"

endpoint="http://127.0.0.1:$LB_PORT"
upstreams=""
for port in $REPLICA_PORTS; do
  step "replica on 127.0.0.1:$port (its own data directory $work/replica-$port)"
  "$cloister" server --listen "127.0.0.1:$port" --data-dir "$work/replica-$port" \
    --public-url "$endpoint" --database-url "$database" --blob-url s3://cloister-blobs/blobs \
    --kek-file "$work/kek" --log-format json 2>"$work/replica-$port.log" &
  pids+=($!)
  wait_for "grep -q 'cloister server listening' '$work/replica-$port.log'"
  upstreams+="    server 127.0.0.1:$port max_fails=1 fail_timeout=5s;"$'\n'
done

step "nginx on $endpoint, round robin over the replicas"
cat >"$work/nginx.conf" <<EOF
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events {}
http {
  access_log off;
  client_body_temp_path $work/nginx-body;
  proxy_temp_path $work/nginx-proxy;
  upstream cloister {
$upstreams  }
  server {
    listen 127.0.0.1:$LB_PORT;
    client_max_body_size 0;
    location / {
      proxy_pass http://cloister;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      # Stream uploads and downloads (models, layers) instead of spooling them to disk.
      proxy_request_buffering off;
      proxy_buffering off;
      # A request a replica failed to answer goes to the other, unless it may have changed
      # something (nginx never retries a POST on its own).
      proxy_next_upstream error timeout http_502 http_503;
    }
  }
}
EOF
nginx -c "$work/nginx.conf" &
pids+=($!)
wait_for "python3 -c 'import urllib.request; urllib.request.urlopen(\"$endpoint/healthz\")'"
credential=$(ls "$work"/replica-*/bootstrap-admin-credential.json | head -1)

if $demo; then
  step "the codelab demo through the load balancer"
  CLOISTER_ENDPOINT="$endpoint" CLOISTER_ADMIN_CREDENTIAL="$credential" "$cloister" demo
  exit
fi
step "ready: $endpoint (admin credential: $credential); Ctrl-C stops everything"
wait
