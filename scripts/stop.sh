#!/usr/bin/env bash
# Stops what scripts/start.sh started. The database files in .local/data are kept.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
for name in api moto ferretdb; do
  if is_running "$RUN/$name.pid"; then log "stopping $name"; fi
  stop_pidfile "$RUN/$name.pid"
done
if [ -f "$RUN/postgres.dir" ]; then
  log "stopping PostgreSQL"
  stop_postgres "$(cat "$RUN/postgres.dir")"
fi
