#!/usr/bin/env bash
# The one test command: installs what the suite needs if it is missing, then runs every test.
# The tests start their own private MariaDB (and sshd) instances on loopback ports and
# temporary directories; nothing here touches a system service.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="/usr/sbin:/sbin:$PATH"
cargo test --locked --all-targets -- --test-threads "${TEST_THREADS:-4}" "$@"
