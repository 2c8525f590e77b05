#!/usr/bin/env bash
# Runs the benchmarks against a throw-away local stack (FerretDB, or $MONGODB_URI, and the
# Secrets Manager emulator), release build. Prints figures; asserts no timings.
# Usage: scripts/bench.sh [sync|insights|all]   (BENCH_CUSTOMERS sets the sync's customer count)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
which="${1:-all}"

ensure_venv
[ -n "${MONGODB_URI:-}" ] || ensure_ferretdb
BENCH_DIR="$(mktemp -d "$LOCAL/bench.XXXXXX")"
cleanup() {
  for pidfile in "$BENCH_DIR"/*.pid; do [ -e "$pidfile" ] && stop_pidfile "$pidfile"; done
  rm -rf "$BENCH_DIR"
}
trap cleanup EXIT
MOTO_PORT="$(free_port)"
start_moto "$MOTO_PORT" "$BENCH_DIR/moto.log" "$BENCH_DIR/moto.pid"
use_local_secrets_manager "$MOTO_PORT"
if [ -n "${MONGODB_URI:-}" ]; then
  export TEST_MONGODB_URI="$MONGODB_URI"
else
  FERRETDB_PORT="$(free_port)"
  start_ferretdb "$BENCH_DIR/ferretdb" "$FERRETDB_PORT" "$BENCH_DIR/ferretdb.log" "$BENCH_DIR/ferretdb.pid"
  export TEST_MONGODB_URI="mongodb://127.0.0.1:$FERRETDB_PORT/"
fi
cd "$ROOT"
export RUST_LOG="${RUST_LOG:-warn}"
if [ "$which" = sync ] || [ "$which" = all ]; then
  log "sync benchmark"
  cargo run --quiet --release -p sync-products --example bench_sync
fi
if [ "$which" = insights ] || [ "$which" = all ]; then
  if [ -f functions/insights/examples/bench_insights.rs ]; then
    log "insights benchmark"
    cargo run --quiet --release -p insights --example bench_insights
  fi
fi
