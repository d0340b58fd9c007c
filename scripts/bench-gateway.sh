#!/usr/bin/env bash
# Gateway benchmark: a private MariaDB + the daemon (release build) + the load generator.
# Prints requests/s, p50/p99/p99.9 latency and the daemon's peak RSS for:
#   1. 256 concurrent legacy clients sending `backup` for 1,000 hosts for 15 s;
#   2. 1,000 idle open connections plus 64 active clients (memory under many connections).
# Usage: scripts/bench-gateway.sh [extra args for `appcataloga bench gateway`]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked --quiet
  BIN="${CARGO_TARGET_DIR:-target}/release/appcataloga"
fi
bin=$BIN
work=$(mktemp -d /tmp/acat-bench.XXXXXX)
port=$((20000 + RANDOM % 20000))
gw=$((40000 + RANDOM % 20000))
url=$(scripts/mariadb-private.sh start "$work/db" "$port")
cleanup() { [ -n "${daemon:-}" ] && kill "$daemon" 2>/dev/null; scripts/mariadb-private.sh stop "$work/db"; rm -rf "$work"; }
trap cleanup EXIT
"$bin" keygen "$work/station.key" >/dev/null
ulimit -n 65536 2>/dev/null || true
APPCATALOGA_CONFIG=/dev/null APPCATALOGA_DATABASE__URL="$url" APPCATALOGA_GATEWAY__LISTEN="127.0.0.1:$gw" \
  APPCATALOGA_SECRETS__KEY_FILE="$work/station.key" APPCATALOGA_LOG__LEVEL=warn \
  "$bin" run 2>"$work/daemon.log" &
daemon=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$gw") 2>/dev/null && break; sleep 0.1; done
echo "== warm-up: every host queued once"
"$bin" bench gateway --addr "127.0.0.1:$gw" --clients 64 --duration 3s --hosts 1000 --pid "$daemon" "$@" >/dev/null
echo "== maximum throughput: 256 concurrent legacy clients, back to back, backup, 1000 hosts"
"$bin" bench gateway --addr "127.0.0.1:$gw" --clients 256 --duration 15s --hosts 1000 --pid "$daemon" "$@"
echo "== latency at 1000 req/s sustained with 256 concurrent clients"
"$bin" bench gateway --addr "127.0.0.1:$gw" --clients 256 --rate 1000 --duration 15s --hosts 1000 --pid "$daemon" "$@"
echo "== 1000 idle connections + 64 active clients"
"$bin" bench gateway --addr "127.0.0.1:$gw" --clients 64 --duration 4s --hosts 1000 --idle-connections 1000 --pid "$daemon" "$@"
