# Helpers shared by the local-stack scripts. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"
VENV="$ROOT/.venv"
FUZZ_VENV="$ROOT/.venv-fuzz"
RUN="$LOCAL/run"
FERRETDB_BIN="$LOCAL/bin/ferretdb"
FERRETDB_VERSION="v1.24.2"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export SAM_CLI_TELEMETRY=0
mkdir -p "$LOCAL" "$RUN"

# Every step's log line says when it started, counted from the first script of this run (the
# scripts call one another), so a slow run shows where its time went.
export LEAFY_RUN_STARTED="${LEAFY_RUN_STARTED:-$(date +%s)}"
log() { printf '==> [%4d s] %s\n' "$(($(date +%s) - LEAFY_RUN_STARTED))" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The Python tools (moto, cfn-lint, SAM CLI) in a project-local virtualenv; reinstalled only
# when scripts/requirements.txt changes.
ensure_venv() {
  install_venv "$VENV" "$ROOT/scripts/requirements.txt" moto_server "moto, cfn-lint, aws-sam-cli"
}

# The API fuzzer and the OpenAPI validator, in a venv of their own: their pins (jsonschema,
# hypothesis, werkzeug) need not agree with SAM CLI's.
ensure_fuzz_venv() {
  install_venv "$FUZZ_VENV" "$ROOT/scripts/requirements-fuzz.txt" schemathesis "schemathesis, openapi-spec-validator"
}

# install_venv DIR REQUIREMENTS PROBE WHAT: (re)creates DIR when REQUIREMENTS changed or its
# bin/PROBE is missing.
install_venv() {
  local want have
  want="$(sha256sum "$2" | cut -d' ' -f1)"
  have="$(cat "$1/.requirements.sha256" 2>/dev/null || true)"
  if [ "$want" != "$have" ] || [ ! -x "$1/bin/$3" ]; then
    log "installing Python tools into ${1#"$ROOT/"} ($4)"
    command -v python3 >/dev/null || die "python3 is required"
    python3 -m venv "$1"
    "$1/bin/pip" install --quiet --disable-pip-version-check -r "$2"
    echo "$want" > "$1/.requirements.sha256"
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

# wait_port PORT SECONDS [HOST]: until something accepts connections on HOST (127.0.0.1):PORT.
wait_port() {
  local port="$1" deadline=$((SECONDS + $2)) host="${3:-127.0.0.1}"
  until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
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

# Where the local services listen: loopback, unless a caller (scripts/sam_local.sh) needs them on
# its Docker network's gateway address so that the Lambda containers reach them.
LISTEN_HOST="${LISTEN_HOST:-127.0.0.1}"

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
  "$FERRETDB_BIN" "${backend[@]}" --listen-addr="$LISTEN_HOST:$2" \
    --state-dir=- --telemetry=disable --debug-addr=- --log-level=warn >"$3" 2>&1 &
  echo $! > "$4"
  wait_port "$2" 30 "$LISTEN_HOST" || die "FerretDB did not start on port $2 (see $3)"
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
  export TEST_MONGODB_URI="mongodb://$LISTEN_HOST:$port/"
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
  "$VENV/bin/moto_server" -H "$LISTEN_HOST" -p "$1" >"$2" 2>&1 &
  echo $! > "$3"
  wait_port "$1" 30 "$LISTEN_HOST" || die "the Secrets Manager emulator did not start on port $1 (see $2)"
}

# The standard AWS SDK environment, pointed at the local Secrets Manager emulator.
use_local_secrets_manager() {
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_ENDPOINT_URL_SECRETS_MANAGER="http://$LISTEN_HOST:$1"
  # The same moto server answers SQS (the sync queue of the fan-out).
  export AWS_ENDPOINT_URL_SQS="http://$LISTEN_HOST:$1"
}

stop_pidfile() {
  if is_running "$1"; then kill "$(cat "$1")" 2>/dev/null || true; fi
  rm -f "$1"
}

# --- `sam local`: a container engine, arm64 emulation and a local Lambda base image ----------

# need_root WHAT: dies unless this script may install or start WHAT (root only).
need_root() { [ "$(id -u)" = 0 ] || die "$1 needs root here (Debian's packages, /proc/sys/fs/binfmt_misc)"; }

apt_install() {
  need_root "installing $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ensure_docker: the Docker engine from Debian's docker.io package, started when it is not
# running. A run that starts it leaves its pid in $RUN/dockerd.pid for stop_docker_if_started.
ensure_docker() {
  command -v dockerd >/dev/null || { log "installing Docker (Debian's docker.io package)"; apt_install docker.io; }
  if docker info >/dev/null 2>&1; then
    # (Why the proxy matters: see where the engine is started below.)
    grep -qs '"userland-proxy": *false' /etc/docker/daemon.json \
      || { tr '\0' ' ' < "/proc/$(pgrep -o -x dockerd || echo 0)/cmdline"; } 2>/dev/null | grep -q 'userland-proxy=false' \
      || log "warning: the running Docker engine may use its userland proxy; sam local needs it started with --userland-proxy=false"
    return 0
  fi
  need_root "starting the Docker engine"
  log "starting the Docker engine (log: .local/dockerd.log)"
  # In a session of its own, so that a signal to the caller's process group does not reach it.
  # Without the userland proxy a published port refuses connections until the container itself
  # listens: SAM CLI waits for its emulator by connecting to that port, and the proxy would
  # accept at once, so SAM would send the invocation before the emulator is up (and lose it).
  setsid dockerd --userland-proxy=false >"$LOCAL/dockerd.log" 2>&1 < /dev/null &
  echo $! > "$RUN/dockerd.pid"
  local deadline=$((SECONDS + 60))
  until docker info >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { tail -n 20 "$LOCAL/dockerd.log" >&2; die "the Docker engine did not start"; }
    sleep 0.5
  done
}

stop_docker_if_started() {
  is_running "$RUN/dockerd.pid" || return 0
  log "stopping the Docker engine this run started"
  kill "$(cat "$RUN/dockerd.pid")" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while is_running "$RUN/dockerd.pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
  rm -f "$RUN/dockerd.pid"
}

# ensure_arm64_emulation: the functions are arm64 (template.yaml); on another architecture the
# kernel runs arm64 executables through qemu's user-mode emulator (Debian's qemu-user-static),
# registered with binfmt_misc's F flag so that it works inside containers too.
ensure_arm64_emulation() {
  [ "$(uname -m)" = aarch64 ] && return 0
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && return 0
  [ -f /usr/lib/binfmt.d/qemu-aarch64.conf ] \
    || { log "installing arm64 emulation (Debian's qemu-user-static)"; apt_install qemu-user-static; }
  need_root "registering arm64 emulation"
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
}

# ensure_lambda_base_image: sets LAMBDA_BASE_IMAGE to a local stand-in for AWS's
# public.ecr.aws/lambda/provided:al2023-arm64, which a machine without registry access cannot pull:
# an arm64 root filesystem with what the bootstraps link against (glibc: `readelf -d` names libc,
# libm, libpthread, libdl and the loader), busybox as the shell SAM's image build runs, and the CA
# bundle. Built from Debian's arm64 packages, tagged by the hash of its contents, so it is built
# once and rebuilt only when they change. SAM adds its runtime interface emulator on top.
LAMBDA_BASE_REPO="leafy-bank/provided-al2023-standin"
ensure_lambda_base_image() {
  local work="$LOCAL/lambda-base" hash
  rm -rf "$work/rootfs" && mkdir -p "$work/debs" "$work/rootfs"
  if ! dpkg --print-foreign-architectures | grep -qx arm64 && [ "$(dpkg --print-architecture)" != arm64 ]; then
    need_root "adding Debian's arm64 packages"
    dpkg --add-architecture arm64
    apt-get update -qq
  fi
  # Downloaded only (into the image's root filesystem, never installed on this machine).
  (cd "$work/debs" && apt-get download -q libc6:arm64 busybox-static:arm64 >/dev/null 2>&1) \
    || { apt-get update -qq && (cd "$work/debs" && apt-get download -q libc6:arm64 busybox-static:arm64 >/dev/null); } \
    || die "could not download Debian's arm64 libc6 and busybox-static"
  for deb in "$work"/debs/libc6_*_arm64.deb "$work"/debs/busybox-static_*_arm64.deb; do
    dpkg-deb -x "$deb" "$work/rootfs"
  done
  (
    cd "$work/rootfs"
    rm -rf usr/share
    mkdir -p tmp var/task var/runtime opt etc/pki/tls/certs
    chmod 1777 tmp
    for applet in sh mv chmod ls cat env; do ln -sf busybox "bin/$applet"; done
    [ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt etc/pki/tls/certs/ca-bundle.crt
  )
  cat > "$work/Dockerfile" <<'DOCKERFILE'
FROM scratch
ADD rootfs.tar /
ENV LANG=en_US.UTF-8 TZ=:/etc/localtime PATH=/usr/local/bin:/usr/bin:/bin:/opt/bin \
    LD_LIBRARY_PATH=/lib/aarch64-linux-gnu:/var/runtime:/var/task:/opt/lib \
    LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime
WORKDIR /var/task
DOCKERFILE
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/rootfs" -cf "$work/rootfs.tar" .
  hash="$(cat "$work/rootfs.tar" "$work/Dockerfile" | sha256sum | cut -c1-16)"
  LAMBDA_BASE_IMAGE="$LAMBDA_BASE_REPO:$hash"
  if ! docker image inspect "$LAMBDA_BASE_IMAGE" >/dev/null 2>&1; then
    log "building the local Lambda base image $LAMBDA_BASE_IMAGE"
    DOCKER_BUILDKIT=0 docker build -q --platform linux/arm64 -t "$LAMBDA_BASE_IMAGE" \
      -f "$work/Dockerfile" "$work" >/dev/null 2>"$work/build.log" \
      || { cat "$work/build.log" >&2; die "could not build $LAMBDA_BASE_IMAGE"; }
    # SAM tags the image it builds on top as <repository>:rapid-arm64 whatever the base's tag,
    # and would keep using one built on an older base.
    docker rmi -f "$LAMBDA_BASE_REPO:rapid-arm64" >/dev/null 2>&1 || true
  fi
  rm -rf "$work/rootfs" "$work/rootfs.tar"
}

# load_walkthrough_data PREFIX CLIENT_ENV: a fresh service secret ($SECRET_ID, databases
# PREFIX_open_finance and PREFIX_leafy_bank on $TEST_MONGODB_URI) with its OAuth client written
# to CLIENT_ENV, the sample data, and the reference rates the README walkthrough expects (EUR at
# 1.05), set the operator's way.
load_walkthrough_data() {
  local admin="$CARGO_TARGET_DIR/debug/leafy-admin" rates
  cargo build --quiet -p devtools
  "$admin" init-secret --mongodb-uri "$TEST_MONGODB_URI" \
    --open-finance-db "$1_open_finance" --leafy-bank-db "$1_leafy_bank" \
    --credentials-file "$2" >/dev/null
  "$admin" seed --dir "$ROOT/sample_data" >/dev/null
  rates="$(mktemp "$LOCAL/rates.XXXXXX.json")"
  printf '{"base": "USD", "asOf": "2026-12-01T16:00:00Z", "source": "scripts/lib.sh", "rates": {"EUR": 1.05, "GBP": 1.27}}' > "$rates"
  "$admin" set-exchange-rates --file "$rates"
  rm -f "$rates"
}

# event_outcome WANT OUT: what an invocation of an events/ file gave, in the terms of
# events/expected.tsv: the statusCode of an API event's answer, or (for a raw event such as the
# scheduled sync) WANT itself when the answer, pretty-printed or not, contains it.
event_outcome() {
  if [[ "$1" =~ ^[0-9]+$ ]]; then
    sed -nE 's/.*"statusCode": ?([0-9]+).*/\1/p' <<<"$2" | head -n1
  elif [[ "${2// /}" == *"$1"* && "$2" != *'"errorType"'* ]]; then
    echo "$1"
  else
    echo "an answer without $1"
  fi
}
