#!/usr/bin/env bash
# check-systemd.sh: static checks of the systemd unit, usable without systemd as PID 1 (CI,
# containers): `systemd-analyze verify` (syntax, unknown keys, executable ExecStart) and
# `systemd-analyze security --offline=yes` (hardening exposure must stay <= 2.5, "OK"), plus the
# directives the daemon relies on (Type=notify, watchdog, restart policy, bounded stop, a
# dedicated user, the key through LoadCredential=).
#
#   scripts/check-systemd.sh [UNIT]      (default: systemd/appcataloga.service)
#
# The unit's ExecStart names /usr/local/bin/appcataloga, which may not exist here, so a
# temporary copy points at an existing binary ($ACAT_BINARY, else target/{debug,release}, else
# /bin/true); nothing else is changed. Installs the Debian package `systemd` if systemd-analyze
# is missing (root only). Exit status: 0 pass, 1 fail, 77 skipped (no systemd-analyze).
set -euo pipefail
cd "$(dirname "$0")/.."

UNIT=${1:-systemd/appcataloga.service}
MAX_EXPOSURE=2.5
[ -f "$UNIT" ] || {
  echo "check-systemd: $UNIT: no such file" >&2
  exit 1
}

if ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "check-systemd: installing systemd (for systemd-analyze)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || true
    apt-get install -y -qq --no-install-recommends systemd >/dev/null || true
  fi
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "SKIP: systemd-analyze is not available and could not be installed" >&2
  exit 77
fi

fail=0
bad() {
  echo "FAIL: $*" >&2
  fail=1
}

# The directives the daemon's reliability depends on.
directive() { grep -Eq "^[[:space:]]*$1" "$UNIT" || bad "$UNIT lacks $1"; }
directive 'Type=notify$'
directive 'WatchdogSec=[0-9]'
directive 'Restart=on-failure$'
directive 'TimeoutStopSec=[0-9]'
directive 'User=[a-z]'
directive 'LoadCredential=station-key:'
if grep -Eq '^[[:space:]]*User=root$' "$UNIT"; then bad "$UNIT runs as root"; fi

binary=${ACAT_BINARY:-}
for candidate in target/debug/appcataloga target/release/appcataloga /bin/true; do
  if [ -z "$binary" ] && [ -x "$candidate" ]; then binary=$(readlink -f "$candidate"); fi
done

tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT
name=$(basename "$UNIT")
sed "s|^ExecStart=/usr/local/bin/appcataloga|ExecStart=$binary|" "$UNIT" >"$tmp/$name"

echo "== systemd-analyze verify $UNIT (ExecStart -> $binary)"
if out=$(systemd-analyze verify --man=no "$tmp/$name" 2>&1); then rc=0; else rc=$?; fi
if [ -n "$out" ]; then echo "$out"; fi
# Warnings (an unknown key, a bad value) are failures too: they mean a directive is ignored.
if [ "$rc" != 0 ] || grep -q "$name" <<<"$out"; then bad "systemd-analyze verify reported problems"; fi

echo "== systemd-analyze security --offline=yes $UNIT"
# --threshold takes an integer: the exposure times 10 (2.5 -> 25).
threshold=$(awk -v m="$MAX_EXPOSURE" 'BEGIN { printf "%d", m * 10 }')
if out=$(systemd-analyze security --offline=yes --threshold="$threshold" "$tmp/$name" 2>&1); then rc=0; else rc=$?; fi
grep -v '^✓' <<<"$out" || true
exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out" | tail -n 1)
if [ -z "$exposure" ]; then
  bad "no exposure level in the systemd-analyze security output"
else
  echo "exposure: $exposure (maximum $MAX_EXPOSURE)"
  if awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e > m) }'; then
    bad "exposure $exposure is above $MAX_EXPOSURE"
  fi
fi
[ "$rc" = 0 ] || bad "systemd-analyze security exited with $rc (threshold $threshold)"

if [ "$fail" = 0 ]; then echo "check-systemd: OK"; fi
exit "$fail"
