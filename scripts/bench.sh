#!/usr/bin/env bash
# Runs the benchmarks against a throw-away local stack (FerretDB on PostgreSQL, on SQLite with
# LOCAL_DB_BACKEND=sqlite, or $MONGODB_URI; and the
# Secrets Manager emulator), release build. Prints figures; asserts no timings.
# Usage: scripts/bench.sh [sync|insights|transactions|fanout|all]   (BENCH_CUSTOMERS sets the customer count)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
which="${1:-all}"

ensure_venv
[ -n "${MONGODB_URI:-}" ] || { ensure_postgres; ensure_ferretdb; }
BENCH_DIR="$(mktemp -d "$LOCAL/bench.XXXXXX")"
chmod 711 "$BENCH_DIR" # PostgreSQL's own user keeps its data in here
cleanup() {
  stop_throwaway_database "$BENCH_DIR"
  for pidfile in "$BENCH_DIR"/*.pid; do [ -e "$pidfile" ] && stop_pidfile "$pidfile"; done
  rm -rf "$BENCH_DIR"
}
trap cleanup EXIT
MOTO_PORT="$(free_port)"
start_moto "$MOTO_PORT" "$BENCH_DIR/moto.log" "$BENCH_DIR/moto.pid"
use_local_secrets_manager "$MOTO_PORT"
start_throwaway_database "$BENCH_DIR"
cd "$ROOT"
export RUST_LOG="${RUST_LOG:-warn}"
if [ "$which" = sync ] || [ "$which" = all ]; then
  log "sync benchmark"
  cargo run --quiet --release -p sync-products --example bench_sync
fi
if [ "$which" = transactions ] || [ "$which" = all ]; then
  log "transactions benchmark"
  cargo run --quiet --release -p sync-products --example bench_transactions
fi
if [ "$which" = fanout ] || [ "$which" = all ]; then
  log "fan-out benchmark (dispatcher, SQS on the emulator, local workers)"
  cargo run --quiet --release -p sync-products --example bench_fanout
fi
if [ "$which" = insights ] || [ "$which" = all ]; then
  if [ -f functions/insights/examples/bench_insights.rs ]; then
    log "insights benchmark"
    cargo run --quiet --release -p insights --example bench_insights
  fi
fi
