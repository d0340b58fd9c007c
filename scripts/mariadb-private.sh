#!/usr/bin/env bash
# Starts a private MariaDB server for benchmarks and demos (never a system service):
#   scripts/mariadb-private.sh start DIR PORT   -> prints the URL; server runs in the background
#   scripts/mariadb-private.sh stop DIR
# Test-grade settings (innodb_flush_log_at_trx_commit=2): never use this for production data.
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?DIR}
case "$cmd" in
  start)
    port=${3:?PORT}
    mkdir -p "$dir"
    if [ ! -d "$dir/data/mysql" ]; then
      mariadb-install-db --no-defaults --user=root --auth-root-authentication-method=normal \
        --datadir="$dir/data" >"$dir/install.log" 2>&1
    fi
    /usr/sbin/mariadbd --no-defaults --user=root --datadir="$dir/data" --socket="$dir/sock" \
      --port="$port" --bind-address=127.0.0.1 --skip-log-bin --innodb-buffer-pool-size=256M \
      --innodb-flush-log-at-trx-commit=2 --max-connections=500 --pid-file="$dir/mariadbd.pid" \
      >>"$dir/mariadbd.log" 2>&1 &
    for _ in $(seq 100); do
      mariadb --no-defaults -uroot --socket="$dir/sock" -e "SELECT 1" >/dev/null 2>&1 && break
      sleep 0.1
    done
    mariadb --no-defaults -uroot --socket="$dir/sock" -e \
      "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
    echo "mysql://root@127.0.0.1:$port/"
    ;;
  stop)
    if [ -f "$dir/mariadbd.pid" ]; then
      kill "$(cat "$dir/mariadbd.pid")" 2>/dev/null || true
      for _ in $(seq 100); do [ -f "$dir/mariadbd.pid" ] || break; sleep 0.1; done
    fi
    ;;
esac
