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

# start_ferretdb DATA_DIR PORT LOGFILE PIDFILE
start_ferretdb() {
  mkdir -p "$1"
  "$FERRETDB_BIN" --handler=sqlite --sqlite-url="file:$1/" --listen-addr="127.0.0.1:$2" \
    --state-dir=- --telemetry=disable --debug-addr=- --log-level=warn >"$3" 2>&1 &
  echo $! > "$4"
  wait_port "$2" 30 || die "FerretDB did not start on port $2 (see $3)"
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
