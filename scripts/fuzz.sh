#!/usr/bin/env bash
# Property-based fuzzing of every operation in openapi/openapi.json with Schemathesis, against
# a running local API (the document it fetches is the one the API serves at /openapi.json).
# Authenticated as the demo customer, as the OAuth client (HTTP Basic) on /oauth/*, and with the
# institution tokens Leafy Bank holds on the emulated banks (scripts/fuzz_hooks.py). Checks
# that no answer is a 5xx and that every status, content type and body is one the document
# describes. Fixed seed and a bounded number of examples per operation, so a run is repeatable
# and takes a few minutes; the one health check that depends on machine speed (too_slow) is off.
# Usage: scripts/fuzz.sh BASE_URL CLIENT_ENV_FILE [extra schemathesis run options]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
API="$1"; CLIENT_ENV="$2"; shift 2
ensure_fuzz_venv
set -a; source "$CLIENT_ENV"; set +a # CLIENT_ID, CLIENT_SECRET
cargo build --quiet -p devtools

export FUZZ_API="$API" FUZZ_CUSTOMER="${FUZZ_CUSTOMER:-fridaklo}"
export FUZZ_ADMIN="$CARGO_TARGET_DIR/debug/leafy-admin"
demo_token() {
  curl -sf "$API/api/v1/openfinance/public/get-authorization?user_identifier=$1" \
    | sed -E 's/.*"BearerToken":"([^"]+)".*/\1/' || die "fuzz: the demo login of $1 failed"
}

# The bank calls present the tokens of an authorised consent with every permission at each
# bank. Those consents belong to another customer than the fuzzed one: the fuzzer learns ids
# from answers and revokes what it can reach, and it cannot reach another customer's consents.
BANK_CUSTOMER_TOKEN="$(demo_token "${FUZZ_BANK_CUSTOMER:-gracehop}")"
authorised_consent() {
  local body id
  body="$(curl -sf -X POST -H "Authorization: Bearer $BANK_CUSTOMER_TOKEN" -H 'Content-Type: application/json' \
    -d "{\"institution\":\"$1\",\"permissions\":[\"ReadAccountsDetail\",\"ReadBalances\",\"ReadProducts\",\"ReadTransactionsDetail\",\"ReadTransactionsCredits\",\"ReadTransactionsDebits\"],\"expiresInDays\":1}" \
    "$API/consents")" || die "fuzz: creating a consent at $1 failed"
  id="$(sed -E 's/.*"consentId":"([^"]+)".*/\1/' <<<"$body")"
  curl -sf -o /dev/null -X POST -H "Authorization: Bearer $BANK_CUSTOMER_TOKEN" "$API/consents/$id/authorise" \
    || die "fuzz: authorising the consent at $1 failed"
  echo "$id"
}
FUZZ_GREEN_BANK_CONSENT="$(authorised_consent green-bank)"
FUZZ_MONGODB_BANK_CONSENT="$(authorised_consent mongodb-bank)"
export FUZZ_GREEN_BANK_CONSENT FUZZ_MONGODB_BANK_CONSENT

REPORT="$(mktemp -d "$LOCAL/fuzz.XXXXXX")"
log "schemathesis: every operation of $API/openapi.json (report in ${REPORT#"$ROOT/"})"
started=$SECONDS
status=0
# From the report directory: Schemathesis keeps its crash cache in the working directory.
(cd "$REPORT" && SCHEMATHESIS_HOOKS=fuzz_hooks PYTHONPATH="$ROOT/scripts" "$FUZZ_VENV/bin/schemathesis" run \
  "$API/openapi.json" --url "$API" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --seed "${FUZZ_SEED:-20261203}" --max-examples "${FUZZ_MAX_EXAMPLES:-25}" --workers 1 \
  --generation-database none --suppress-health-check too_slow --request-timeout 30 --no-color \
  --report junit,ndjson --report-dir "$REPORT" "$@") || status=$?
log "schemathesis finished in $((SECONDS - started)) s with status $status"
exit "$status"
