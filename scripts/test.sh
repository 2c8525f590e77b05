#!/usr/bin/env bash
# Runs every test from nothing: installs the tools the tests need (Python venv, FerretDB),
# starts a throw-away database (FerretDB on PostgreSQL; LOCAL_DB_BACKEND=sqlite for SQLite;
# $MONGODB_URI instead when set) and Secrets Manager emulator on free ports, then runs formatting
# and lint checks, the Rust tests, the template and OpenAPI checks and `sam build`, the README
# walkthrough and the Schemathesis fuzzing (scripts/fuzz.sh) against the local API server, every events/ file through
# cargo lambda's runtime emulator, and the built functions under `sam local` (start-api with the
# walkthrough, invoke with every events/ file; scripts/sam_local.sh installs and starts Docker).
# Everything started here is stopped on exit.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
started=$SECONDS

ensure_venv
[ -n "${MONGODB_URI:-}" ] || { ensure_postgres; ensure_ferretdb; }

TEST_DIR="$(mktemp -d "$LOCAL/test.XXXXXX")"
chmod 711 "$TEST_DIR" # PostgreSQL's own user keeps its data in here
cleanup() {
  stop_throwaway_database "$TEST_DIR"
  for pidfile in "$TEST_DIR"/*.pid; do [ -e "$pidfile" ] && stop_pidfile "$pidfile"; done
  rm -rf "$TEST_DIR"
}
trap cleanup EXIT

MOTO_PORT="$(free_port)"
start_moto "$MOTO_PORT" "$TEST_DIR/moto.log" "$TEST_DIR/moto.pid"
use_local_secrets_manager "$MOTO_PORT"
start_throwaway_database "$TEST_DIR"

cd "$ROOT"
log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --quiet --workspace --all-targets -- -D warnings
log "cargo test"
cargo test --workspace

log "template checks"
"$VENV/bin/cfn-lint" template.yaml
"$VENV/bin/sam" validate --lint --template template.yaml --region us-east-1
python3 scripts/gen_events.py --check
ensure_fuzz_venv
"$FUZZ_VENV/bin/python" scripts/check_openapi.py
log "sam build: every function cross-built for arm64, each bootstrap checked and measured"
"$ROOT/scripts/sam_build.sh"

log "README walkthrough against the local API server"
export SECRET_ID="leafy-bank/smoke"
load_walkthrough_data smoke "$TEST_DIR/client.env"
API_PORT="$(free_port)"
PORT="$API_PORT" DEMO_LOGIN_ENABLED=true "$CARGO_TARGET_DIR/debug/local-api" >"$TEST_DIR/api.log" 2>&1 &
echo $! > "$TEST_DIR/api.pid"
wait_port "$API_PORT" 30 || { cat "$TEST_DIR/api.log"; die "the local API did not start"; }
"$ROOT/scripts/smoke.sh" "http://127.0.0.1:$API_PORT" "$TEST_DIR/client.env"

log "the Lambda path: every events/ file through cargo lambda watch and invoke"
export TOKEN_ENDPOINT_URL="http://127.0.0.1:$API_PORT/oauth/token"
export GREEN_BANK_BASE_URL="http://127.0.0.1:$API_PORT/banks/green-bank"
export MONGODB_BANK_BASE_URL="http://127.0.0.1:$API_PORT/banks/mongodb-bank"
# The scheduled event dispatches to a sync queue on the emulator; the local poller then feeds
# the dispatched messages to the worker, as Lambda's event source mapping would.
export SYNC_QUEUE_URL="$("$CARGO_TARGET_DIR/debug/leafy-admin" create-sync-queue --name leafy-bank-sync-test)"
"$ROOT/scripts/lambda_path.sh"
log "the fan-out: the dispatched sync messages through the local poller to the worker"
poller="$(RUST_LOG=warn "$CARGO_TARGET_DIR/debug/sync-poller" --workers 2 --until-empty | tail -n 1)"
echo "$poller"
[[ "$poller" =~ ^sync-poller:\ [1-9][0-9]*\ messages\ \(0\ failed\) ]] \
  || die "the worker did not sync every message the dispatcher sent"

# After the events (which expect the walkthrough's data as it was): the fuzzer creates and
# revokes the demo customer's consents.
log "schemathesis: every operation of the OpenAPI description, fuzzed against the local API server"
"$ROOT/scripts/fuzz.sh" "http://127.0.0.1:$API_PORT" "$TEST_DIR/client.env"

log "sam local: start-api with the walkthrough, and every events/ file through sam local invoke"
"$ROOT/scripts/sam_local.sh"

log "all tests passed in $((SECONDS - started)) s"
