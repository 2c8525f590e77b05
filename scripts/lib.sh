# Helpers shared by the local-stack scripts. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"
VENV="$ROOT/.venv"
RUN="$LOCAL/run"
FERRETDB_BIN="$LOCAL/bin/ferretdb"
FERRETDB_VERSION="v1.24.2"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export SAM_CLI_TELEMETRY=0
mkdir -p "$LOCAL" "$RUN"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The Python tools (moto, cfn-lint, SAM CLI) in a project-local virtualenv; reinstalled only
# when scripts/requirements.txt changes.
ensure_venv() {
  local want have
  want="$(sha256sum "$ROOT/scripts/requirements.txt" | cut -d' ' -f1)"
  have="$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)"
  if [ "$want" != "$have" ] || [ ! -x "$VENV/bin/moto_server" ]; then
    log "installing Python tools into .venv (moto, cfn-lint, aws-sam-cli)"
    command -v python3 >/dev/null || die "python3 is required"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/scripts/requirements.txt"
    echo "$want" > "$VENV/.requirements.sha256"
  fi
}

# FerretDB built from the Go module proxy. It is a tool dependency of tools/ferretdb; the
# build goes through a vendored copy (generated here, never committed) so that the version
# file FerretDB embeds can be written in: without it the binary panics at start-up.
ensure_ferretdb() {
  local want have build
  want="$FERRETDB_VERSION $(sha256sum "$ROOT/tools/ferretdb/go.sum" | cut -d' ' -f1)"
  have="$(cat "$LOCAL/bin/ferretdb.stamp" 2>/dev/null || true)"
  if [ -x "$FERRETDB_BIN" ] && [ "$want" = "$have" ]; then return; fi
  command -v go >/dev/null || die "Go is required to build FerretDB"
  log "building FerretDB $FERRETDB_VERSION (once; about 2 minutes)"
  build="$LOCAL/ferretdb-build"
  rm -rf "$build" && mkdir -p "$build" "$LOCAL/bin"
  cp "$ROOT/tools/ferretdb/go.mod" "$ROOT/tools/ferretdb/go.sum" "$build/"
  (
    cd "$build"
    export GOTOOLCHAIN=local GOFLAGS=-mod=mod
    go mod vendor
    echo "$FERRETDB_VERSION" > vendor/github.com/FerretDB/FerretDB/build/version/version.txt
    GOFLAGS=-mod=vendor go build -trimpath -o "$FERRETDB_BIN" github.com/FerretDB/FerretDB/cmd/ferretdb
  )
  rm -rf "$build"
  echo "$want" > "$LOCAL/bin/ferretdb.stamp"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT SECONDS: until something accepts connections on 127.0.0.1:PORT.
wait_port() {
  local port="$1" deadline=$((SECONDS + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# is_running PIDFILE
is_running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# The local database: FerretDB on PostgreSQL (the default: FerretDB pushes top-level filters
# down into SQL) or on SQLite (LOCAL_DB_BACKEND=sqlite: every filter but `_id` is a scan).
DB_BACKEND="${LOCAL_DB_BACKEND:-postgresql}"
case "$DB_BACKEND" in
  postgresql | sqlite) ;;
  *) die "LOCAL_DB_BACKEND must be postgresql or sqlite, not '$DB_BACKEND'" ;;
esac

pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# PostgreSQL from Debian's packages, installed when missing.
ensure_postgres() {
  [ "$DB_BACKEND" = postgresql ] || return 0
  [ -n "$(pg_bindir)" ] && return 0
  [ "$(id -u)" = 0 ] || die "PostgreSQL is missing: install Debian's postgresql package (as root)"
  log "installing PostgreSQL (Debian's postgresql package)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  [ -n "$(pg_bindir)" ] || die "the postgresql package installed no server binaries"
}

# as_db_user CMD...: PostgreSQL refuses to run as root, so as root it runs as `postgres` (the
# user Debian's package creates); otherwise as the caller.
as_db_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# postgres_data_dir WANTED: WANTED when the database user can write there, else a fresh
# directory under /tmp (a checkout inside a private directory is not reachable by `postgres`).
postgres_data_dir() {
  mkdir -p "$1"
  [ "$(id -u)" = 0 ] && chown postgres: "$1"
  if as_db_user test -w "$1" -a -x "$1"; then echo "$1"; return; fi
  local fallback
  fallback="$(mktemp -d /tmp/leafy-bank-postgres.XXXXXX)"
  [ "$(id -u)" = 0 ] && chown postgres: "$fallback"
  log "the database user cannot reach $1; PostgreSQL data in $fallback"
  echo "$fallback"
}

# start_postgres DATA_DIR PORT [SETTING...]: a cluster in DATA_DIR (created on first use) on
# 127.0.0.1:PORT, TCP only (a socket path under a deep checkout can exceed the 107-byte limit).
start_postgres() {
  local data="$1" port="$2" bin options
  shift 2
  bin="$(pg_bindir)"
  if [ ! -f "$data/PG_VERSION" ]; then
    as_db_user "$bin/initdb" -D "$data" -A trust -U postgres -E UTF8 --locale=C --no-sync >/dev/null \
      || die "initdb failed in $data"
  fi
  options="-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories="
  for setting in "$@"; do options="$options -c $setting"; done
  as_db_user "$bin/pg_ctl" -D "$data" -l "$data/server.log" -o "$options" -w -t 60 start >/dev/null \
    || die "PostgreSQL did not start on port $port (see $data/server.log)"
  # The owner indexes FerretDB's own do not give PostgreSQL (see the SQL file).
  # (Read from standard input: the database user may not reach the checkout.)
  as_db_user "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -q -v ON_ERROR_STOP=1 \
    < "$ROOT/scripts/postgres_owner_index.sql" >"$data/owner-index.log" 2>&1 \
    || die "could not install the owner index trigger in PostgreSQL (see $data/owner-index.log)"
}

# stop_postgres DATA_DIR: a fast shutdown, waited for (its files may be removed next).
stop_postgres() {
  [ -f "$1/postmaster.pid" ] || return 0
  as_db_user "$(pg_bindir)/pg_ctl" -D "$1" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

# start_ferretdb DATA_DIR PORT LOGFILE PIDFILE [PG_PORT]: on PostgreSQL at PG_PORT, or on
# SQLite files in DATA_DIR when no PG_PORT is given.
start_ferretdb() {
  local backend
  if [ -n "${5:-}" ]; then
    backend=(--handler=postgresql "--postgresql-url=postgres://postgres@127.0.0.1:$5/postgres")
  else
    mkdir -p "$1"
    backend=(--handler=sqlite "--sqlite-url=file:$1/")
  fi
  "$FERRETDB_BIN" "${backend[@]}" --listen-addr="127.0.0.1:$2" \
    --state-dir=- --telemetry=disable --debug-addr=- --log-level=warn >"$3" 2>&1 &
  echo $! > "$4"
  wait_port "$2" 30 || die "FerretDB did not start on port $2 (see $3)"
}

# start_throwaway_database DIR: a database for one run of the tests or benchmarks, in DIR
# (FerretDB on the configured backend, or $MONGODB_URI when set); exports TEST_MONGODB_URI.
# stop_throwaway_database DIR stops it.
start_throwaway_database() {
  if [ -n "${MONGODB_URI:-}" ]; then
    export TEST_MONGODB_URI="$MONGODB_URI"
    return
  fi
  local pg_port="" port
  if [ "$DB_BACKEND" = postgresql ]; then
    pg_port="$(free_port)"
    postgres_data_dir "$1/postgres" > "$1/postgres.dir"
    # Throw-away data: durability is not wanted, speed is.
    start_postgres "$(cat "$1/postgres.dir")" "$pg_port" fsync=off synchronous_commit=off full_page_writes=off
  fi
  port="$(free_port)"
  start_ferretdb "$1/ferretdb" "$port" "$1/ferretdb.log" "$1/ferretdb.pid" "$pg_port"
  export TEST_MONGODB_URI="mongodb://127.0.0.1:$port/"
  log "database: FerretDB on $DB_BACKEND at $TEST_MONGODB_URI"
}

stop_throwaway_database() {
  stop_pidfile "$1/ferretdb.pid"
  if [ -f "$1/postgres.dir" ]; then
    local data
    data="$(cat "$1/postgres.dir")"
    stop_postgres "$data"
    case "$data" in /tmp/leafy-bank-postgres.*) rm -rf "$data" ;; esac
  fi
}

# start_moto PORT LOGFILE PIDFILE
start_moto() {
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$1" >"$2" 2>&1 &
  echo $! > "$3"
  wait_port "$1" 30 || die "the Secrets Manager emulator did not start on port $1 (see $2)"
}

# The standard AWS SDK environment, pointed at the local Secrets Manager emulator.
use_local_secrets_manager() {
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_ENDPOINT_URL_SECRETS_MANAGER="http://127.0.0.1:$1"
}

stop_pidfile() {
  if is_running "$1"; then kill "$(cat "$1")" 2>/dev/null || true; fi
  rm -f "$1"
}
