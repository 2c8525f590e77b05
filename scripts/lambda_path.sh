#!/usr/bin/env bash
# The Lambda path: `cargo lambda watch` runs the function binaries under the Lambda runtime
# emulator, and every file in events/ is invoked with `cargo lambda invoke`; each API event's
# statusCode must be the one events/expected.tsv names; for the scheduled event, its answer must
# contain the text named there.
# Expects the environment of a running local stack: SECRET_ID, the AWS SDK variables pointing at
# the Secrets Manager emulator, and TOKEN_ENDPOINT_URL / *_BANK_BASE_URL of a running local API.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
PORT="$(free_port)"
LOG="$(mktemp "$LOCAL/lambda-watch.XXXXXX.log")"
# In a session of its own: when stopped, cargo lambda watch signals its whole process group,
# which would otherwise be this script and the test command that called it.
DEMO_LOGIN_ENABLED=true RUST_LOG=warn setsid "$VENV/bin/cargo-lambda" lambda watch --invoke-address 127.0.0.1 --invoke-port "$PORT" --timeout 120 >"$LOG" 2>&1 &
WATCH_PID=$!
trap 'kill -- -"$WATCH_PID" 2>/dev/null; true' EXIT
wait_port "$PORT" 120 || { cat "$LOG"; die "cargo lambda watch did not start"; }

passed=0 failed=0
while IFS=$'\t' read -r file function want; do
  case "$file" in ''|'#'*) continue ;; esac
  out="$("$VENV/bin/cargo-lambda" lambda invoke --invoke-address 127.0.0.1 --invoke-port "$PORT" "$function" --data-file "events/$file" 2>&1)" || true
  got="$(event_outcome "$want" "$out")"
  if [ "$got" = "$want" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    printf 'lambda path: %s -> %s: got %s, wanted %s\n%s\n' "$file" "$function" "${got:-nothing}" "$want" "$out" >&2
  fi
done < events/expected.tsv
echo "lambda path: $passed passed, $failed failed"
[ "$failed" -eq 0 ] || { tail -n 50 "$LOG" >&2; exit 1; }
rm -f "$LOG"
