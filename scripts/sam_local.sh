#!/usr/bin/env bash
# `sam local`, for real: the arm64 bootstraps of `sam build` (.aws-sam/build, made by
# scripts/sam_build.sh) run in containers under SAM CLI's own Lambda runtime interface emulator.
#   1. `sam local start-api` serves the template's route table, and the README walkthrough
#      (scripts/smoke.sh) runs against it;
#   2. every file in events/ goes through `sam local invoke <Function> -e events/<file>`, its
#      status checked against events/expected.tsv (for the scheduled sync: a text in its answer).
# What it needs and starts:
#   - the Docker engine (Debian's docker.io; started when not running);
#   - on a machine that is not arm64, qemu's arm64 emulation (Debian's qemu-user-static);
#   - a local stand-in for AWS's provided.al2023 base image (lib.sh: ensure_lambda_base_image);
#     with registry access, drop --invoke-image and SAM pulls AWS's own;
#   - a Docker network of the project's own; its gateway is this machine, and the Secrets Manager
#     emulator, FerretDB and start-api listen there so that the containers reach them (SAM CLI's
#     --docker-network host does not put containers on the host's network);
#   - a fresh secret, databases sam_open_finance / sam_leafy_bank and the sample data.
# Everything it starts is stopped on exit (the Docker engine too, if this run started it).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
[ -f .aws-sam/build/template.yaml ] || die "no .aws-sam/build: run scripts/sam_build.sh first"
ensure_venv
ensure_docker
ensure_arm64_emulation
ensure_lambda_base_image
# SAM CLI lets the caller's environment override any variable the template declares
# (TOKEN_ENDPOINT_URL, RUST_LOG, ...): it runs with a clean one, so the functions get what the
# template and its parameters give them, as when deployed. The one exception is the emulator's
# endpoint: SAM CLI resolves the template's !If/AWS::NoValue for it to an empty value (which the
# AWS SDK refuses), so it comes from this environment (the template declares the variable).
# The same goes for the SQS endpoint, and for the sync queue's URL: the template's `!Ref
# SyncQueue` names a queue SAM CLI does not create, so the queue made on the emulator is given.
sam_cli_env() {
  SAM_CLI=(env -i PATH="$PATH" HOME="$HOME" TMPDIR="${TMPDIR:-/tmp}" SAM_CLI_TELEMETRY=0
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
    AWS_ENDPOINT_URL_SECRETS_MANAGER="$AWS_ENDPOINT_URL_SECRETS_MANAGER"
    AWS_ENDPOINT_URL_SQS="$AWS_ENDPOINT_URL_SQS" SYNC_QUEUE_URL="$SYNC_QUEUE_URL" "$VENV/bin/sam")
}
NETWORK=leafy-bank-local
docker network inspect "$NETWORK" >/dev/null 2>&1 || docker network create "$NETWORK" >/dev/null
GATEWAY="$(docker network inspect -f '{{(index .IPAM.Config 0).Gateway}}' "$NETWORK")"
[ -n "$GATEWAY" ] || die "the Docker network $NETWORK has no gateway address"

WORK="$(mktemp -d "$LOCAL/sam-local.XXXXXX")"
chmod 711 "$WORK" # PostgreSQL's own user keeps its data in here
cleanup() {
  if is_running "$WORK/start-api.pid"; then
    # SIGINT is start-api's Ctrl+C: it stops and removes its warm containers.
    kill -INT "$(cat "$WORK/start-api.pid")" 2>/dev/null || true
    for _ in $(seq 60); do is_running "$WORK/start-api.pid" || break; sleep 0.5; done
    stop_pidfile "$WORK/start-api.pid"
  fi
  # Whatever SAM did not get to remove (a warm container, an invoke cut short).
  mapfile -t containers < <(docker ps -aq --filter label=sam.cli.container.type=lambda \
    --filter "ancestor=$LAMBDA_BASE_REPO:rapid-arm64" 2>/dev/null)
  [ "${#containers[@]}" -eq 0 ] || docker rm -f "${containers[@]}" >/dev/null 2>&1 || true
  stop_throwaway_database "$WORK"
  for pidfile in "$WORK"/*.pid; do [ -e "$pidfile" ] && stop_pidfile "$pidfile"; done
  rm -rf "$WORK"
  stop_docker_if_started
}
trap cleanup EXIT

export LISTEN_HOST="$GATEWAY"
MOTO_PORT="$(free_port)"
start_moto "$MOTO_PORT" "$WORK/moto.log" "$WORK/moto.pid"
use_local_secrets_manager "$MOTO_PORT"
if [ -z "${MONGODB_URI:-}" ]; then ensure_postgres; ensure_ferretdb; fi
start_throwaway_database "$WORK"
export SECRET_ID="leafy-bank/sam-local"
load_walkthrough_data sam "$WORK/client.env"
SYNC_QUEUE_URL="$("$CARGO_TARGET_DIR/debug/leafy-admin" create-sync-queue --name leafy-bank-sync-sam)"

sam_cli_env
API_PORT="$(free_port)"
API="http://$GATEWAY:$API_PORT"
# The template's parameters as a deployment would set them, pointed at this machine.
PARAMETERS=(--parameter-overrides "ExistingSecretArn=$SECRET_ID"
  "SecretsManagerEndpoint=$AWS_ENDPOINT_URL_SECRETS_MANAGER" "SqsEndpoint=$AWS_ENDPOINT_URL_SQS"
  "ApiBaseUrl=$API" "DemoLoginEnabled=true")
CONTAINERS=(--template .aws-sam/build/template.yaml --docker-network "$NETWORK"
  --invoke-image "$LAMBDA_BASE_IMAGE" --skip-pull-image --region "$AWS_REGION")

log "sam local start-api on $API, then the README walkthrough against it"
started=$SECONDS
# Warm containers: each function's container is started once and reused, as Lambda reuses a
# warm execution environment.
setsid "${SAM_CLI[@]}" local start-api "${CONTAINERS[@]}" "${PARAMETERS[@]}" --host "$GATEWAY" --port "$API_PORT" \
  --warm-containers EAGER >"$WORK/start-api.log" 2>&1 < /dev/null &
echo $! > "$WORK/start-api.pid"
wait_port "$API_PORT" 300 "$GATEWAY" || { tail -n 40 "$WORK/start-api.log" >&2; die "sam local start-api did not start"; }
echo "sam local start-api: listening after $((SECONDS - started)) s"
started=$SECONDS
"$ROOT/scripts/smoke.sh" "$API" "$WORK/client.env" || { tail -n 60 "$WORK/start-api.log" >&2; exit 1; }
echo "sam local start-api: walkthrough in $((SECONDS - started)) s"

log "sam local invoke: every events/ file"
started=$SECONDS
passed=0 failed=0
while IFS=$'\t' read -r file function want; do
  case "$file" in ''|'#'*) continue ;; esac
  # events/expected.tsv names the binary (connect-accounts); the template, ConnectAccountsFunction.
  resource="$(sed -E 's/(^|-)([a-z])/\U\2/g' <<<"$function")Function"
  out="$("${SAM_CLI[@]}" local invoke "$resource" "${CONTAINERS[@]}" "${PARAMETERS[@]}" \
    --event "events/$file" 2>"$WORK/invoke.log" < /dev/null)" || true
  got="$(event_outcome "$want" "$out")"
  if [ "$got" = "$want" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    printf 'sam local invoke: %s -> %s: got %s, wanted %s\n%s\n' "$file" "$resource" "${got:-nothing}" "$want" "$out" >&2
    tail -n 30 "$WORK/invoke.log" >&2
  fi
done < events/expected.tsv
echo "sam local invoke: $passed passed, $failed failed in $((SECONDS - started)) s"
[ "$failed" -eq 0 ]
