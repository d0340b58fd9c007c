#!/usr/bin/env bash
# The demo, end to end on this machine (the README's first command). Why: one command that shows
# the whole system working for real — Zabbix request, SSH/SFTP backup from OpenSSH stations,
# CRFS processing into the catalogue, Parquet publication — and that CI runs as a smoke test.
#
#   scripts/demo.sh [--debug|--release] [extra options of `appcataloga demo`]
#
# Installs what is missing (Debian packages via scripts/install-deps.sh; a C linker and Rust via
# rustup when absent), builds (release by default; `--debug` or DEMO_PROFILE=debug uses the
# debug build, as CI does), starts a private MariaDB server (loopback, datadir under the work
# folder), runs `appcataloga demo` (stations, daemon, Zabbix polls, summary), then stops
# MariaDB. The exit status is the demo's. Needs root (station users, sshd chroots).
#
# Work folder: $DEMO_WORK, else target/demo (`db/`: MariaDB, removed at the end; `run/`: the
# repository with Metadata/spectrum_catalog.parquet, the daemon's config and log, kept until the
# next run). Every run starts from scratch; processes left by a killed run are stopped first.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/sbin:/sbin:$HOME/.cargo/bin:$PATH"

profile=${DEMO_PROFILE:-release}
args=()
for a in "$@"; do
  case "$a" in
    --debug) profile=debug ;;
    --release) profile=release ;;
    *) args+=("$a") ;;
  esac
done
case "$profile" in
  debug | release) ;;
  *) echo "demo: DEMO_PROFILE must be debug or release, not $profile" >&2; exit 2 ;;
esac

if [ "$(id -u)" != 0 ]; then
  echo "demo: needs root (it installs packages, creates station users and runs sshd chroots);" \
    "run: sudo $0 $*" >&2
  exit 1
fi

# --- what is missing -----------------------------------------------------------------------
scripts/install-deps.sh
if ! command -v cc >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
  echo "demo: installing a C toolchain and curl" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends build-essential curl ca-certificates >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "demo: installing Rust with rustup (https://rustup.rs)" >&2
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >&2
fi

# --- build ---------------------------------------------------------------------------------
target=${CARGO_TARGET_DIR:-$PWD/target}
case "$target" in /*) ;; *) target=$PWD/$target ;; esac
if [ "$profile" = release ]; then
  cargo build --locked --release --bin appcataloga
else
  cargo build --locked --bin appcataloga
fi
bin="$target/$profile/appcataloga"

# sshd refuses a chroot below a folder that is not root-owned or is group/world-writable (a
# checkout in a home folder or under /tmp): then keep the stations elsewhere.
chroot_ok() {
  local d=$1 owner mode
  while [ "$d" != / ]; do
    if [ -e "$d" ]; then
      read -r owner mode < <(stat -L -c '%u %a' "$d")
      [ "$owner" = 0 ] && (((8#$mode & 8#022) == 0)) || return 1
    fi
    d=$(dirname "$d")
  done
}
if [ -z "${APPCATALOGA_STATION_DIR:-}" ] && ! chroot_ok "$target/stations"; then
  export APPCATALOGA_STATION_DIR=/var/lib/appcataloga-demo/stations
  echo "demo: $target is not usable for sshd chroots; stations go to $APPCATALOGA_STATION_DIR" >&2
fi

# --- private MariaDB -----------------------------------------------------------------------
work=${DEMO_WORK:-$PWD/target/demo}
case "$work" in /*) ;; *) work=$PWD/$work ;; esac
mkdir -p "$work"

# Stops a process we started in an earlier run, if its pid file still names it.
stop_stale() { # pidfile needle
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"; then
    echo "demo: stopping pid $pid left by an interrupted run" >&2
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}
stop_stale "$work/run/daemon.pid" "$work/run/appcataloga.toml"
stop_stale "$work/db/mariadbd.pid" "$work/db/data"
rm -rf "$work/db" "$work/run"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 50); do
  port=$((20000 + RANDOM % 20000))
  port_free "$port" && break
done

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
  scripts/mariadb-private.sh stop "$work/db" >/dev/null 2>&1 || true
  rm -rf "$work/db"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "demo: starting a private MariaDB on 127.0.0.1:$port (datadir $work/db)" >&2
if ! url=$(scripts/mariadb-private.sh start "$work/db" "$port"); then
  echo "demo: MariaDB did not start; its log:" >&2
  tail -n 20 "$work/db/mariadbd.log" "$work/db/install.log" >&2 2>/dev/null || true
  exit 1
fi

# --- the demo ------------------------------------------------------------------------------
status=0
"$bin" demo --db-url "$url" --work "$work/run" ${args[@]+"${args[@]}"} || status=$?
exit "$status"
