#!/usr/bin/env bash
# Runs the whole thing locally: FerretDB on PostgreSQL (LOCAL_DB_BACKEND=sqlite: on SQLite;
# $MONGODB_URI instead when set), the Secrets Manager emulator with the service's secret, the
# sample data, and the local API server on one port. Safe to run again: what is already running is left running. Stop with scripts/stop.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FERRETDB_PORT="${FERRETDB_PORT:-27018}"
POSTGRES_PORT="${POSTGRES_PORT:-54329}"
MOTO_PORT="${MOTO_PORT:-4566}"
API_PORT="${API_PORT:-3000}"
export SECRET_ID="${SECRET_ID:-leafy-bank/local}"

ensure_venv
if [ -z "${MONGODB_URI:-}" ]; then
  ensure_postgres
  ensure_ferretdb
  if ! is_running "$RUN/ferretdb.pid"; then
    pg_port=""
    if [ "$DB_BACKEND" = postgresql ]; then
      [ -f "$RUN/postgres.dir" ] || postgres_data_dir "$LOCAL/data/postgres" > "$RUN/postgres.dir"
      pg_data="$(cat "$RUN/postgres.dir")"
      if ! as_db_user "$(pg_bindir)/pg_ctl" -D "$pg_data" status >/dev/null 2>&1; then
        log "starting PostgreSQL on 127.0.0.1:$POSTGRES_PORT (data in $pg_data)"
        start_postgres "$pg_data" "$POSTGRES_PORT"
      fi
      pg_port="$POSTGRES_PORT"
    fi
    log "starting FerretDB on 127.0.0.1:$FERRETDB_PORT ($DB_BACKEND)"
    start_ferretdb "$LOCAL/data/ferretdb" "$FERRETDB_PORT" "$RUN/ferretdb.log" "$RUN/ferretdb.pid" "$pg_port"
  fi
  MONGODB_URI="mongodb://127.0.0.1:$FERRETDB_PORT/"
fi
if ! is_running "$RUN/moto.pid"; then
  log "starting the Secrets Manager emulator on 127.0.0.1:$MOTO_PORT"
  start_moto "$MOTO_PORT" "$RUN/moto.log" "$RUN/moto.pid"
fi
use_local_secrets_manager "$MOTO_PORT"

log "building"
cargo build --quiet -p devtools
ADMIN="$CARGO_TARGET_DIR/debug/leafy-admin"
"$ADMIN" init-secret --if-missing --mongodb-uri "$MONGODB_URI" --credentials-file "$LOCAL/client.env"
log "loading the sample data"
"$ADMIN" seed --dir "$ROOT/sample_data"

if is_running "$RUN/api.pid"; then
  log "restarting the local API server (picks up a new build)"
  stop_pidfile "$RUN/api.pid"
  sleep 0.5
fi
log "starting the local API server on 127.0.0.1:$API_PORT"
PORT="$API_PORT" DEMO_LOGIN_ENABLED=true RUST_LOG="${RUST_LOG:-info}" \
  nohup "$CARGO_TARGET_DIR/debug/local-api" >"$RUN/api.log" 2>&1 &
echo $! > "$RUN/api.pid"
wait_port "$API_PORT" 30 || die "the local API did not start (see $RUN/api.log)"

cat <<MSG

Leafy Bank Open Finance is running:
  API               http://127.0.0.1:$API_PORT
  database          $MONGODB_URI
  secrets emulator  $AWS_ENDPOINT_URL_SECRETS_MANAGER (secret '$SECRET_ID')
  OAuth client      credentials in .local/client.env
  logs              .local/run/*.log
Stop everything with scripts/stop.sh.
MSG
