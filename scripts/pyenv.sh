#!/usr/bin/env bash
# Creates (or reuses) the Python virtual environment that holds the real Parquet consumers the
# publisher is tested against: pyarrow and DuckDB (and pytz, which pyarrow needs to convert
# zoned timestamps). Idempotent and safe to run concurrently (flock): when the venv already
# imports both, nothing is installed. Prints the venv's python interpreter as the last line of
# stdout; everything else goes to stderr.
#
# Location: $APPCATALOGA_PYENV, else target/pyenv in the repository.
# Exit status: 0 ready; 2 python3 (with venv) missing; 3 pip install failed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${APPCATALOGA_PYENV:-$PWD/target/pyenv}"
py="$venv/bin/python"
check='import pyarrow, pyarrow.parquet, duckdb, pytz'

if [ -x "$py" ] && "$py" -c "$check" 2>/dev/null; then
  echo "$py"
  exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
  echo "pyenv: python3 is not installed; install it (Debian: apt-get install python3 python3-venv) and re-run" >&2
  exit 2
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "pyenv: python3 has no venv/ensurepip module; install it (Debian: apt-get install python3-venv) and re-run" >&2
  exit 2
fi

mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
# Another process may have finished the job while we waited for the lock.
if [ -x "$py" ] && "$py" -c "$check" 2>/dev/null; then
  echo "$py"
  exit 0
fi
if [ ! -x "$py" ]; then
  echo "pyenv: creating $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
fi
echo "pyenv: installing pyarrow, duckdb, pytz into $venv" >&2
if ! "$py" -m pip install --quiet --disable-pip-version-check pyarrow duckdb pytz >&2; then
  echo "pyenv: pip install pyarrow duckdb pytz failed (is PyPI reachable?); see the messages above" >&2
  exit 3
fi
if ! "$py" -c "$check" >&2; then
  echo "pyenv: pyarrow/duckdb installed but cannot be imported; delete $venv and re-run" >&2
  exit 3
fi
echo "$py"
