#!/usr/bin/env bash
# Runs the benchmarks (release build) and prints their figures. Not a test.
#   scripts/bench.sh [crfs|pipeline|publish|gateway|sftp|all]   (default: all)
# crfs:     metadata extraction MB/s on a generated 100 MB v5 file and the real fixtures
#           (and rfpye's, when RFPYE_PYTHON points at a python with rfpye 0.3.7).
# pipeline: 8 simulated stations x 250 files x 1 MiB through backup then processing; then
#           4 x 50 files x 2 MB; files/s, MB/s, peak RSS (needs root for station users).
# publish:  1,000,000 catalogue rows from MariaDB to Parquet: seconds, peak RSS.
# gateway:  scripts/bench-gateway.sh.
# sftp:     1 GiB download, ours vs OpenSSH sftp/scp, on loopback and through a 50 ms proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
scripts/install-deps.sh
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked --quiet
  BIN="${CARGO_TARGET_DIR:-target}/release/appcataloga"
fi
export BIN
shared=${APPCATALOGA_SHARED_DIR:-../shared}
work=$(mktemp -d /tmp/acat-bench.XXXXXX)
port=$((20000 + RANDOM % 20000))
cleanup() { scripts/mariadb-private.sh stop "$work/db" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
need_db() { [ -n "${url:-}" ] || url=$(scripts/mariadb-private.sh start "$work/db" "$port"); }
run() { [ "$what" = all ] || [ "$what" = "$1" ]; }

if run crfs; then
  echo "## CRFS metadata extraction"
  fixtures=()
  [ -d "$shared/fixtures/crfs" ] && fixtures=("$shared"/fixtures/crfs/*.bin)
  "$BIN" bench crfs --generate-mb 100 --iterations 10 ${RFPYE_PYTHON:+--rfpye-python "$RFPYE_PYTHON"} "${fixtures[@]}"
fi
if run pipeline; then
  need_db
  echo "## Backup + processing pipeline"
  "$BIN" bench pipeline --db-url "$url" --stations 8 --files 250 --file-size 1048576
  "$BIN" bench pipeline --db-url "$url" --stations 4 --files 50 --file-size 2000000
fi
if run publish; then
  need_db
  echo "## Parquet publication"
  "$BIN" bench publish --url "$url" --bpdata-schema bench_pub_BPDATA --rfdata-schema bench_pub_RFDATA --rows 1000000 --root "$work/pub"
fi
if run gateway; then
  echo "## Gateway"
  scripts/bench-gateway.sh
fi
if run sftp; then
  echo "## SFTP download vs OpenSSH"
  "$BIN" bench sftp
fi
