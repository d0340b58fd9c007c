#!/usr/bin/env bash
# deploy.sh: installs, updates and removes appcataloga on a Debian-like server.
#
# Why: the successor of the original install/appCataloga/deploy.sh (same options -h -i -u -r
# -du), but idempotent (a second run changes nothing and says "unchanged"), never overwriting an
# operator's configuration, with least-privilege database users, and testable: --prefix (or
# DESTDIR) installs into a sandbox, --binary uses a prebuilt binary, --no-db skips the database,
# so CI runs install -> update -> remove in a temporary directory (tests/it/deploy.rs).
#
# Every step prints one line, "changed   <what>" or "unchanged <what>", then a summary.
set -euo pipefail

deploy_version=1.0.0

PROG=$(basename "$0")
SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  cat <<EOF
$PROG $deploy_version: install, update or remove appcataloga.

usage: $PROG -i|-u|-r|-du SOURCE|-h [options]

actions:
  -h               this help
  -i               install: system user, folders, binaries, configuration (never overwritten:
                   a different shipped one is written beside it as .new), systemd unit,
                   station-password key, databases, database users, migrations
  -u               update: binaries, unit, configuration (.new), migrations; restart if running
  -r               remove: binaries and unit; keeps configuration, key, state and databases
                   (add --purge to remove configuration, key and state too). The repository
                   data and the databases are never removed.
  -du SOURCE       update this script from SOURCE (a path or an http(s) URL) when its
                   deploy_version differs; the file is replaced atomically

options:
  --prefix DIR     install under DIR instead of / (a sandbox; also taken from DESTDIR):
                   no system user, no chown, no systemctl
  --binary PATH    use this prebuilt appcataloga binary instead of 'cargo build --release'
  --query-binary PATH
                   prebuilt appcataloga-query (default: beside --binary)
  --no-db          skip every database step
  --db-url URL     administrative connection for the database steps,
                   mysql://USER[:PASSWORD]@HOST[:PORT]/ (default: the local socket as root).
                   A password here is visible in the process list: prefer --db-socket, or
                   leave it out and let the client read it from ~/.my.cnf
  --db-socket PATH administrative connection through this unix socket, as root
  --db-user NAME   runtime database user (default appcataloga; the migration user is
                   NAME_migrate)
  --db-user-host H host part of the database accounts, repeatable (default: localhost,
                   127.0.0.1 and ::1 for a local server, % otherwise)
  --refdata DIR    load the reference data (IBGE CSV files) from DIR after migrating
  --zabbix-dir DIR Zabbix ExternalScripts folder (default /usr/lib/zabbix/externalscripts)
  --no-zabbix      do not install appcataloga-query
  --no-user        do not create the system user appcataloga
  --purge          with -r: also remove /etc/appcataloga (configuration, key, credentials)
                   and /var/lib/appcataloga

environment:
  DESTDIR          same as --prefix
  APPCATALOGA_DATABASE__BPDATA_SCHEMA, APPCATALOGA_DATABASE__RFDATA_SCHEMA
                   schema names (default: those of the configuration, BPDATA and RFDATA);
                   when set they are also written to appcataloga.env for the daemon
EOF
}

die() {
  echo "$PROG: error: $*" >&2
  exit 1
}
note() { echo "$PROG: $*"; }

CHANGED=0
UNCHANGED=0
changed() {
  CHANGED=$((CHANGED + 1))
  printf 'changed   %s\n' "$*"
}
unchanged() {
  UNCHANGED=$((UNCHANGED + 1))
  printf 'unchanged %s\n' "$*"
}

# ------------------------------------------------------------------------------------------
# Arguments.

ACTION=""
DU_SOURCE=""
PREFIX="${DESTDIR:-}"
BINARY=""
QUERY_BINARY=""
NO_DB=0
DB_URL=""
DB_SOCKET=""
DB_USER=appcataloga
DB_USER_HOSTS=()
REFDATA=""
ZABBIX_DIR=/usr/lib/zabbix/externalscripts
NO_ZABBIX=0
NO_USER=0
PURGE=0

set_action() {
  [ -z "$ACTION" ] || die "only one of -i, -u, -r, -du, -h"
  ACTION=$1
}
need_value() {
  if [ "$#" -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value"; fi
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    -h | --help) set_action help ;;
    -i) set_action install ;;
    -u) set_action update ;;
    -r) set_action remove ;;
    -du)
      need_value "$@"
      set_action self-update
      DU_SOURCE=$2
      shift
      ;;
    --prefix)
      need_value "$@"
      PREFIX=$2
      shift
      ;;
    --binary)
      need_value "$@"
      BINARY=$2
      shift
      ;;
    --query-binary)
      need_value "$@"
      QUERY_BINARY=$2
      shift
      ;;
    --no-db) NO_DB=1 ;;
    --db-url)
      need_value "$@"
      DB_URL=$2
      shift
      ;;
    --db-socket)
      need_value "$@"
      DB_SOCKET=$2
      shift
      ;;
    --db-user)
      need_value "$@"
      DB_USER=$2
      shift
      ;;
    --db-user-host)
      need_value "$@"
      DB_USER_HOSTS+=("$2")
      shift
      ;;
    --refdata)
      need_value "$@"
      REFDATA=$2
      shift
      ;;
    --zabbix-dir)
      need_value "$@"
      ZABBIX_DIR=$2
      shift
      ;;
    --no-zabbix) NO_ZABBIX=1 ;;
    --no-user) NO_USER=1 ;;
    --purge) PURGE=1 ;;
    *) die "unknown argument '$1' (see $PROG -h)" ;;
  esac
  shift
done

[ -n "$ACTION" ] || {
  usage >&2
  exit 2
}
if [ "$ACTION" = help ]; then
  usage
  exit 0
fi

# ------------------------------------------------------------------------------------------
# -du: self-update. Independent of everything else.

version_of() { sed -n 's/^deploy_version=\([A-Za-z0-9._-]*\).*$/\1/p' "$1" | head -n 1; }

DU_TMP=""
self_update() {
  local self new tmp current
  self=$(readlink -f "${BASH_SOURCE[0]}")
  # The new file is written beside the script, so the final rename is atomic.
  tmp=$(mktemp "$(dirname "$self")/.deploy.sh.XXXXXX")
  DU_TMP=$tmp
  trap 'rm -f -- "$DU_TMP"' EXIT
  case "$DU_SOURCE" in
    http://* | https://*)
      if command -v curl >/dev/null 2>&1; then
        curl -fsSL --max-time 60 -o "$tmp" "$DU_SOURCE" || die "cannot download $DU_SOURCE"
      elif command -v wget >/dev/null 2>&1; then
        wget -q -T 60 -O "$tmp" "$DU_SOURCE" || die "cannot download $DU_SOURCE"
      else
        die "neither curl nor wget is installed"
      fi
      ;;
    *)
      [ -f "$DU_SOURCE" ] || die "$DU_SOURCE: no such file"
      cat -- "$DU_SOURCE" >"$tmp"
      ;;
  esac
  # Windows line endings would break the script (the original ran dos2unix).
  sed -i 's/\r$//' "$tmp"
  head -n 1 "$tmp" | grep -q '^#!.*bash' || die "$DU_SOURCE is not a bash script"
  bash -n "$tmp" || die "$DU_SOURCE has syntax errors"
  new=$(version_of "$tmp")
  [ -n "$new" ] || die "$DU_SOURCE has no deploy_version= line"
  current=$(version_of "$self")
  if [ "$new" = "$current" ]; then
    unchanged "$self (deploy_version $current)"
    return
  fi
  chmod 0755 "$tmp"
  mv -f -- "$tmp" "$self"
  trap - EXIT
  changed "$self: deploy_version $current -> $new"
}

if [ "$ACTION" = self-update ]; then
  self_update
  exit 0
fi

# ------------------------------------------------------------------------------------------
# Paths.

PREFIX=${PREFIX%/}
SANDBOX=0
[ -n "$PREFIX" ] && SANDBOX=1
if [ "$SANDBOX" = 1 ]; then
  mkdir -p -- "$PREFIX"
  PREFIX=$(cd -- "$PREFIX" && pwd)
elif [ "$(id -u)" != 0 ]; then
  die "must run as root (or install into a sandbox with --prefix DIR)"
fi

BIN_DIR=$PREFIX/usr/local/bin
ETC_DIR=$PREFIX/etc/appcataloga
STATE_DIR=$PREFIX/var/lib/appcataloga
UNIT_DIR=$PREFIX/etc/systemd/system
CONFIG=$ETC_DIR/appcataloga.toml
KEY=$ETC_DIR/secret.key
ENV_FILE=$ETC_DIR/appcataloga.env
MIGRATE_ENV=$ETC_DIR/migrate.env
UNIT=$UNIT_DIR/appcataloga.service
QUERY_DEST=$PREFIX$ZABBIX_DIR/appcataloga-query
DOC_DIR=$PREFIX/usr/share/doc/appcataloga
SERVICE_USER=appcataloga

# systemctl only on a real system managed by systemd, never in a sandbox.
use_systemd() { [ "$SANDBOX" = 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }
# chown only as root outside a sandbox, and only once the group exists.
have_group() { [ "$SANDBOX" = 0 ] && [ "$(id -u)" = 0 ] && getent group "$SERVICE_USER" >/dev/null 2>&1; }

# ------------------------------------------------------------------------------------------
# File helpers (each reports changed/unchanged).

# ensure_dir DIR MODE [OWNER:GROUP]: create it if missing; an existing folder is left as it is
# (it may be a mount point with its own ownership).
ensure_dir() {
  local dir=$1 mode=$2 owner=${3:-}
  if [ -d "$dir" ]; then
    unchanged "folder $dir"
    return
  fi
  mkdir -p -- "$dir"
  chmod "$mode" "$dir"
  if [ -n "$owner" ] && have_group; then chown "$owner" "$dir"; fi
  changed "folder $dir (created)"
}

# install_file SRC DEST MODE [OWNER:GROUP]: copy atomically when the content or mode differ.
install_file() {
  local src=$1 dest=$2 mode=$3 owner=${4:-} tmp
  if [ -f "$dest" ] && cmp -s -- "$src" "$dest" && [ "$(stat -c %a "$dest")" = "${mode#0}" ]; then
    unchanged "$dest"
    return 1
  fi
  mkdir -p -- "$(dirname "$dest")"
  tmp=$(mktemp "$(dirname "$dest")/.$(basename "$dest").XXXXXX")
  cp -- "$src" "$tmp"
  chmod "$mode" "$tmp"
  if [ -n "$owner" ] && have_group; then chown "$owner" "$tmp"; fi
  mv -f -- "$tmp" "$dest"
  changed "$dest"
  return 0
}

# write_file DEST MODE [OWNER:GROUP] < content: like install_file, from stdin.
write_file() {
  local dest=$1 mode=$2 owner=${3:-} tmp rc=0
  tmp=$(mktemp)
  cat >"$tmp"
  install_file "$tmp" "$dest" "$mode" "$owner" || rc=$?
  rm -f -- "$tmp"
  return "$rc"
}

# install_config: the shipped configuration, never overwriting the operator's. A different
# installed file is kept and the shipped one written beside it as .new.
install_config() {
  local src=$SRC_DIR/etc/appcataloga.toml
  [ -f "$src" ] || die "$src is missing (run $PROG from an appcataloga source tree)"
  if [ ! -f "$CONFIG" ]; then
    install_file "$src" "$CONFIG" 0640 "root:$SERVICE_USER" || true
  elif cmp -s -- "$src" "$CONFIG"; then
    unchanged "$CONFIG"
  else
    unchanged "$CONFIG (kept: it differs from the shipped one)"
    install_file "$src" "$CONFIG.new" 0640 "root:$SERVICE_USER" || true
  fi
}

remove_path() {
  local path=$1
  if [ -e "$path" ] || [ -L "$path" ]; then
    rm -rf -- "$path"
    changed "$path (removed)"
  else
    unchanged "$path (absent)"
  fi
}

# ------------------------------------------------------------------------------------------
# Binaries.

resolve_binaries() {
  if [ -z "$BINARY" ]; then
    command -v cargo >/dev/null 2>&1 || die "cargo is not installed: build elsewhere and pass --binary PATH"
    note "building: cargo build --release --locked --bins"
    (cd "$SRC_DIR" && cargo build --release --locked --bins >&2)
    BINARY=$SRC_DIR/target/release/appcataloga
    [ -n "$QUERY_BINARY" ] || QUERY_BINARY=$SRC_DIR/target/release/appcataloga-query
  fi
  [ -x "$BINARY" ] || die "$BINARY is not an executable file"
  if [ -z "$QUERY_BINARY" ]; then QUERY_BINARY=$(dirname "$BINARY")/appcataloga-query; fi
  if [ "$NO_ZABBIX" = 0 ] && [ ! -x "$QUERY_BINARY" ]; then
    die "$QUERY_BINARY is missing (build it with cargo build --release --bins, pass --query-binary PATH, or --no-zabbix)"
  fi
}

BINARY_CHANGED=0
install_binaries() {
  if install_file "$BINARY" "$BIN_DIR/appcataloga" 0755; then BINARY_CHANGED=1; fi
  if [ "$NO_ZABBIX" = 0 ]; then
    install_file "$QUERY_BINARY" "$QUERY_DEST" 0755 || true
  fi
}

# The README (the unit's Documentation=) and the Zabbix kit (template to import, its README).
install_docs() {
  local f
  for f in README.md zabbix/README.md zabbix/appcataloga_template.yaml; do
    if [ -f "$SRC_DIR/$f" ]; then install_file "$SRC_DIR/$f" "$DOC_DIR/$f" 0644 || true; fi
  done
}

UNIT_CHANGED=0
install_unit() {
  local src=$SRC_DIR/systemd/appcataloga.service
  [ -f "$src" ] || die "$src is missing"
  if install_file "$src" "$UNIT" 0644; then UNIT_CHANGED=1; fi
}

# The configuration as the daemon sees it (file < environment), for the schema names and the
# repository root. A placeholder URL satisfies the required key; nothing connects.
effective() {
  local key=$1 out
  if ! out=$(APPCATALOGA_DATABASE__URL=${APPCATALOGA_DATABASE__URL:-mysql://placeholder@127.0.0.1/} \
    "$BIN_DIR/appcataloga" --config "$CONFIG" config check 2>&1); then
    die "the configuration is invalid: $out"
  fi
  sed -n "s/^$key = \"\(.*\)\"\$/\1/p" <<<"$out" | head -n 1
}

# ------------------------------------------------------------------------------------------
# System user.

ensure_user() {
  if [ "$SANDBOX" = 1 ] || [ "$NO_USER" = 1 ]; then
    unchanged "system user $SERVICE_USER (skipped: $([ "$SANDBOX" = 1 ] && echo sandbox || echo --no-user))"
    return
  fi
  if getent passwd "$SERVICE_USER" >/dev/null 2>&1; then
    unchanged "system user $SERVICE_USER"
    return
  fi
  useradd --system --user-group --home-dir /var/lib/appcataloga --no-create-home \
    --shell /usr/sbin/nologin --comment "appcataloga daemon" "$SERVICE_USER"
  changed "system user $SERVICE_USER (created)"
}

# ------------------------------------------------------------------------------------------
# Station-password key.

ensure_key() {
  if [ -f "$KEY" ]; then
    if [ "$(stat -c %a "$KEY")" != 600 ]; then
      chmod 0600 "$KEY"
      changed "$KEY (mode set to 0600)"
    else
      unchanged "$KEY"
    fi
    return
  fi
  mkdir -p -- "$ETC_DIR"
  "$BIN_DIR/appcataloga" keygen "$KEY" >/dev/null
  chmod 0600 "$KEY"
  # Read by systemd (LoadCredential=) as root; the service sees its own copy.
  if [ "$SANDBOX" = 0 ] && [ "$(id -u)" = 0 ]; then chown root:root "$KEY"; fi
  changed "$KEY (new key)"
}

# ------------------------------------------------------------------------------------------
# Database.
#
# Two database accounts, on purpose:
# - NAME (appcataloga), used by the daemon: SELECT, INSERT, UPDATE, DELETE on the two schemas
#   and nothing else (no DDL: a compromised daemon cannot drop or alter a table), at most 64
#   connections. The daemon then must not migrate at start: appcataloga.env sets
#   APPCATALOGA_DATABASE__MIGRATE_ON_START=false.
# - NAME_migrate, used only by this script (appcataloga migrate, refdata load): the DML rights
#   plus CREATE, ALTER, INDEX, DROP (CREATE OR REPLACE VIEW needs it), CREATE VIEW, SHOW VIEW and
#   REFERENCES on the two schemas. Its URL lives in migrate.env, mode 0600 root, never read by
#   the service.
# Neither account has any global privilege. Both get random 48-hex-digit passwords (kept in
# their env files; a second run reuses them). With MariaDB on the same host, unix_socket
# authentication would avoid passwords; the daemon connects over TCP, so passwords it is.

MYSQL=()
DB_HOST=127.0.0.1
DB_PORT=3306
DB_ADMIN_PASSWORD=""

url_part() {
  # url_part URL user|password|host|port: parse mysql://user[:password]@host[:port]/...
  local url=$1 what=$2 rest auth hostport
  rest=${url#*://}
  rest=${rest%%/*}
  auth=""
  hostport=$rest
  if [[ "$rest" == *@* ]]; then
    auth=${rest%@*}
    hostport=${rest##*@}
  fi
  case "$what" in
    user) printf '%s' "${auth%%:*}" ;;
    password) [[ "$auth" == *:* ]] && printf '%s' "${auth#*:}" ;;
    host)
      if [[ "$hostport" == \[* ]]; then
        hostport=${hostport#[}
        printf '%s' "${hostport%%]*}"
      else
        printf '%s' "${hostport%%:*}"
      fi
      ;;
    port)
      if [[ "$hostport" == \[* ]]; then hostport=${hostport##*]}; fi
      [[ "$hostport" == *:* ]] && printf '%s' "${hostport##*:}"
      ;;
  esac
  return 0
}

setup_db_client() {
  local client
  client=$(command -v mariadb || command -v mysql || true)
  [ -n "$client" ] || die "the mariadb client is not installed (apt-get install mariadb-client), or use --no-db"
  if [ -n "$DB_URL" ]; then
    [[ "$DB_URL" == mysql://* || "$DB_URL" == mariadb://* ]] || die "--db-url must start with mysql://"
    local user port
    user=$(url_part "$DB_URL" user)
    DB_HOST=$(url_part "$DB_URL" host)
    port=$(url_part "$DB_URL" port)
    DB_PORT=${port:-3306}
    DB_ADMIN_PASSWORD=$(url_part "$DB_URL" password)
    MYSQL=("$client" --protocol=TCP -h "$DB_HOST" -P "$DB_PORT" -u "${user:-root}")
  elif [ -n "$DB_SOCKET" ]; then
    MYSQL=("$client" --protocol=SOCKET --socket="$DB_SOCKET" -u root)
  else
    MYSQL=("$client" -u root)
  fi
  sql 'SELECT 1' >/dev/null || die "cannot connect to the database server as an administrator (see --db-url, --db-socket)"
  if [ -z "$DB_URL" ]; then
    DB_HOST=127.0.0.1
    DB_PORT=$(sql 'SELECT @@port')
  fi
  if [ "${#DB_USER_HOSTS[@]}" = 0 ]; then
    case "$DB_HOST" in
      localhost | 127.0.0.1 | ::1) DB_USER_HOSTS=(localhost 127.0.0.1 ::1) ;;
      *) DB_USER_HOSTS=('%') ;;
    esac
  fi
}

# sql STATEMENTS: run as the administrator; prints tab-separated rows. The password goes through
# the environment, never the command line.
sql() {
  MYSQL_PWD=$DB_ADMIN_PASSWORD "${MYSQL[@]}" -N -B -e "$1"
}

check_name() {
  [[ "$2" =~ ^[A-Za-z0-9_]{1,64}$ ]] || die "$1 '$2' must be 1-64 letters, digits or _"
}

new_password() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# env_url FILE: the APPCATALOGA_DATABASE__URL of an env file (empty if none).
env_url() {
  [ -f "$1" ] || return 0
  sed -n 's/^APPCATALOGA_DATABASE__URL=//p' "$1" | tail -n 1
}

# ensure_account USER PASSWORD GRANTS: create the account on every host pattern, make sure the
# password works, grant exactly GRANTS on both schemas.
ensure_account() {
  local user=$1 password=$2 grants=$3 host before after created=0
  for host in "${DB_USER_HOSTS[@]}"; do
    [[ "$host" =~ ^[A-Za-z0-9_.:%-]+$ ]] || die "bad --db-user-host '$host'"
    if [ "$(sql "SELECT COUNT(*) FROM mysql.user WHERE User='$user' AND Host='$host'")" = 0 ]; then
      sql "CREATE USER '$user'@'$host' IDENTIFIED BY '$password' WITH MAX_USER_CONNECTIONS 64"
      created=1
    fi
  done
  if [ "$created" = 1 ]; then
    changed "database user $user@{${DB_USER_HOSTS[*]}} (created)"
  fi
  if ! MYSQL_PWD=$password "${MYSQL[0]}" --protocol=TCP -h "$DB_HOST" -P "$DB_PORT" -u "$user" \
    -N -B -e 'SELECT 1' >/dev/null 2>&1; then
    for host in "${DB_USER_HOSTS[@]}"; do
      sql "ALTER USER '$user'@'$host' IDENTIFIED BY '$password'"
    done
    changed "database user $user (password set to the one in its env file)"
  elif [ "$created" = 0 ]; then
    unchanged "database user $user"
  fi
  # In GRANT, _ and % in a database name are wildcards: escape them to mean these schemas only.
  local bp=${BPDATA//_/\\_} rf=${RFDATA//_/\\_}
  for host in "${DB_USER_HOSTS[@]}"; do
    before=$(sql "SHOW GRANTS FOR '$user'@'$host'")
    sql "GRANT $grants ON \`$bp\`.* TO '$user'@'$host'; GRANT $grants ON \`$rf\`.* TO '$user'@'$host'"
    after=$(sql "SHOW GRANTS FOR '$user'@'$host'")
    if [ "$before" = "$after" ]; then
      unchanged "grants of $user@$host on $BPDATA, $RFDATA: $grants"
    else
      changed "grants of $user@$host on $BPDATA, $RFDATA: $grants"
    fi
  done
}

RUNTIME_GRANTS="SELECT, INSERT, UPDATE, DELETE"
MIGRATE_GRANTS="SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, DROP, CREATE VIEW, SHOW VIEW, REFERENCES"

# Environment written for the daemon and for the migration step.
write_env_files() {
  local runtime_url=$1 migrate_url=$2
  {
    echo "# appcataloga daemon environment, written by deploy.sh (EnvironmentFile= of the unit)."
    echo "# Mode 0640 root:$SERVICE_USER: it holds the database password."
    echo "APPCATALOGA_DATABASE__URL=$runtime_url"
    echo "# The runtime account has no DDL rights: migrations run from deploy.sh -i/-u."
    echo "APPCATALOGA_DATABASE__MIGRATE_ON_START=false"
    if [ -n "${APPCATALOGA_DATABASE__BPDATA_SCHEMA:-}" ]; then
      echo "APPCATALOGA_DATABASE__BPDATA_SCHEMA=$BPDATA"
    fi
    if [ -n "${APPCATALOGA_DATABASE__RFDATA_SCHEMA:-}" ]; then
      echo "APPCATALOGA_DATABASE__RFDATA_SCHEMA=$RFDATA"
    fi
  } | write_file "$ENV_FILE" 0640 "root:$SERVICE_USER" || true
  {
    echo "# Migration account of appcataloga, used only by deploy.sh. Mode 0600 root."
    echo "APPCATALOGA_DATABASE__URL=$migrate_url"
  } | write_file "$MIGRATE_ENV" 0600 || true
}

# Without a database: an env file to fill in, only if there is none.
write_env_template() {
  if [ -f "$ENV_FILE" ]; then
    unchanged "$ENV_FILE"
    return
  fi
  {
    echo "# appcataloga daemon environment (EnvironmentFile= of the unit). Mode 0640."
    echo "# Set the database URL of the runtime account, for example:"
    echo "# APPCATALOGA_DATABASE__URL=mysql://appcataloga:PASSWORD@127.0.0.1:3306/"
  } | write_file "$ENV_FILE" 0640 "root:$SERVICE_USER" || true
}

# run_app ARGS...: the installed binary with the migration account and the schema names.
run_app() {
  local url
  url=$(env_url "$MIGRATE_ENV")
  [ -n "$url" ] || die "$MIGRATE_ENV has no database URL: run $PROG -i first"
  APPCATALOGA_DATABASE__URL=$url APPCATALOGA_DATABASE__BPDATA_SCHEMA=$BPDATA \
    APPCATALOGA_DATABASE__RFDATA_SCHEMA=$RFDATA \
    "$BIN_DIR/appcataloga" --config "$CONFIG" --log-format text "$@"
}

migrate() {
  local out
  out=$(run_app migrate) || die "appcataloga migrate failed"
  if [[ "$out" == *"migrations: 0 applied"* ]]; then
    unchanged "database migrations (${out#migrations: })"
  else
    changed "database migrations (${out#migrations: })"
  fi
}

load_refdata() {
  [ -n "$REFDATA" ] || return 0
  [ -d "$REFDATA" ] || die "--refdata $REFDATA: no such folder"
  local out
  out=$(run_app refdata load "$REFDATA" 2>/dev/null) || die "appcataloga refdata load failed"
  if [[ "$out" == *" 0 inserted, 0 updated"* ]]; then
    unchanged "reference data ($out)"
  else
    changed "reference data ($out)"
  fi
}

schema_names() {
  BPDATA=$(effective bpdata_schema)
  RFDATA=$(effective rfdata_schema)
  BPDATA=${BPDATA:-BPDATA}
  RFDATA=${RFDATA:-RFDATA}
  check_name "bpdata schema" "$BPDATA"
  check_name "rfdata schema" "$RFDATA"
}

setup_database() {
  local db runtime_url migrate_url runtime_pw migrate_pw migrate_user=${DB_USER}_migrate
  check_name "--db-user" "$DB_USER"
  check_name "migration user" "$migrate_user"
  setup_db_client
  for db in "$BPDATA" "$RFDATA"; do
    if [ "$(sql "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME='$db'")" != 0 ]; then
      unchanged "database $db"
    else
      sql "CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
      changed "database $db (created)"
    fi
  done
  # Reuse the passwords already written (a second run changes nothing).
  runtime_url=$(env_url "$ENV_FILE")
  migrate_url=$(env_url "$MIGRATE_ENV")
  runtime_pw=""
  migrate_pw=""
  if [ "$(url_part "$runtime_url" user)" = "$DB_USER" ]; then runtime_pw=$(url_part "$runtime_url" password); fi
  if [ "$(url_part "$migrate_url" user)" = "$migrate_user" ]; then migrate_pw=$(url_part "$migrate_url" password); fi
  [ -n "$runtime_pw" ] || runtime_pw=$(new_password)
  [ -n "$migrate_pw" ] || migrate_pw=$(new_password)
  [[ "$runtime_pw$migrate_pw" =~ ^[A-Za-z0-9_.~-]+$ ]] || die "the database passwords in $ETC_DIR/*.env must be URL-safe"
  local host_for_url=$DB_HOST
  [[ "$host_for_url" == *:* ]] && host_for_url="[$host_for_url]"
  ensure_account "$DB_USER" "$runtime_pw" "$RUNTIME_GRANTS"
  ensure_account "$migrate_user" "$migrate_pw" "$MIGRATE_GRANTS"
  write_env_files "mysql://$DB_USER:$runtime_pw@$host_for_url:$DB_PORT/" \
    "mysql://$migrate_user:$migrate_pw@$host_for_url:$DB_PORT/"
  migrate
  load_refdata
}

# ------------------------------------------------------------------------------------------
# systemd.

systemd_reload() {
  if [ "$UNIT_CHANGED" = 1 ] && use_systemd; then
    systemctl daemon-reload
    changed "systemd: daemon-reload"
  fi
}

summary() {
  echo "summary: $1: $CHANGED changed, $UNCHANGED unchanged"
  if [ "$CHANGED" = 0 ]; then echo "summary: $1: nothing to do (unchanged)"; fi
}

# ------------------------------------------------------------------------------------------
# Actions.

do_install() {
  resolve_binaries
  ensure_user
  ensure_dir "$ETC_DIR" 0750 "root:$SERVICE_USER"
  ensure_dir "$STATE_DIR" 0750 "$SERVICE_USER:$SERVICE_USER"
  install_binaries
  install_config
  install_unit
  install_docs
  ensure_key
  schema_names
  local repo
  repo=$(effective root)
  ensure_dir "$PREFIX${repo:-/mnt/reposfi}" 0750 "$SERVICE_USER:$SERVICE_USER"
  if [ "$NO_DB" = 1 ]; then
    unchanged "database (skipped: --no-db)"
    write_env_template
  else
    setup_database
  fi
  systemd_reload
  if use_systemd; then
    if systemctl is-enabled --quiet appcataloga.service 2>/dev/null; then
      unchanged "systemd: appcataloga.service enabled"
    else
      systemctl enable appcataloga.service >/dev/null 2>&1
      changed "systemd: appcataloga.service enabled (start it with: systemctl start appcataloga)"
    fi
  fi
  summary install
}

do_update() {
  resolve_binaries
  [ -d "$ETC_DIR" ] || die "$ETC_DIR is missing: install first ($PROG -i)"
  install_binaries
  install_config
  install_unit
  install_docs
  schema_names
  if [ "$NO_DB" = 1 ]; then
    unchanged "database (skipped: --no-db)"
  elif [ -f "$MIGRATE_ENV" ]; then
    migrate
    load_refdata
  else
    unchanged "database migrations (skipped: no $MIGRATE_ENV; run $PROG -i)"
  fi
  systemd_reload
  if use_systemd && { [ "$BINARY_CHANGED" = 1 ] || [ "$UNIT_CHANGED" = 1 ]; } &&
    systemctl is-active --quiet appcataloga.service; then
    systemctl restart appcataloga.service
    changed "systemd: appcataloga.service restarted"
  fi
  summary update
}

do_remove() {
  if use_systemd && systemctl cat appcataloga.service >/dev/null 2>&1; then
    systemctl disable --now appcataloga.service >/dev/null 2>&1 || true
    changed "systemd: appcataloga.service stopped and disabled"
  fi
  remove_path "$BIN_DIR/appcataloga"
  remove_path "$QUERY_DEST"
  remove_path "$DOC_DIR"
  if [ -e "$UNIT" ]; then UNIT_CHANGED=1; fi
  remove_path "$UNIT"
  systemd_reload
  if [ "$PURGE" = 1 ]; then
    remove_path "$ETC_DIR"
    remove_path "$STATE_DIR"
  else
    unchanged "$ETC_DIR (kept: configuration, key and credentials; --purge removes them)"
  fi
  note "kept: the repository data and the databases (drop them by hand if you mean it)"
  summary remove
}

case "$ACTION" in
  install) do_install ;;
  update) do_update ;;
  remove) do_remove ;;
esac
