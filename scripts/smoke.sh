#!/usr/bin/env bash
# Runs the README's curl walkthrough against a running local API and checks each answer.
# Usage: scripts/smoke.sh [BASE_URL] [CLIENT_ENV_FILE]
set -euo pipefail
API="${1:-http://127.0.0.1:3000}"
source "${2:-$(dirname "${BASH_SOURCE[0]}")/../.local/client.env}"
fail() { echo "smoke: FAILED: $*" >&2; exit 1; }
passed=0

# expect STATUS BODY_PATTERN -- curl args…
expect() {
  local want="$1" pattern="$2"; shift 3
  local out status body
  out="$(curl -s -w '\n%{http_code}' "$@")"
  status="${out##*$'\n'}"; body="${out%$'\n'*}"
  [ "$status" = "$want" ] || fail "$* -> $status (wanted $want): $body"
  [[ "$body" =~ $pattern ]] || fail "$* -> body does not match /$pattern/: $body"
  passed=$((passed + 1))
  LAST_BODY="$body"
}

# 1. A client token (client_credentials, HTTP Basic).
expect 200 '"token_type":"Bearer"' -- -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials "$API/oauth/token"
# 2. The public keys that verify it.
expect 200 '"kty":"EC"' -- "$API/.well-known/jwks.json"
# 3. The demo login for fridaklo, then the legacy token check with that JWT.
expect 200 '"UserName":"fridaklo"' -- "$API/api/v1/openfinance/public/get-authorization?user_identifier=fridaklo"
TOKEN="$(sed -E 's/.*"BearerToken":"([^"]+)".*/\1/' <<<"$LAST_BODY")"
expect 200 'valid for user: fridaklo' -- -X POST -H "Authorization: Bearer $TOKEN" "$API/api/v1/openfinance/secure/validate-token"
# 4. A legacy opaque token from the sample data still works.
expect 200 'valid for user: fridaklo' -- -X POST \
  -H "Authorization: Bearer f4f4184e9669f8a4008243ee00a04482349d462c69ad1d2b4ac0814923eddab0" \
  "$API/api/v1/openfinance/secure/validate-token"
# 5. Refusals: an unknown user is 404, an unknown token 403.
expect 404 '"detail"' -- "$API/api/v1/openfinance/public/get-authorization?user_identifier=nobody"
expect 403 '"detail"' -- -X POST -H "Authorization: Bearer not-a-token" "$API/api/v1/openfinance/secure/validate-token"
# 6. Open finance: consent, the customer's approval, connect Green Bank's accounts, list them.
expect 201 '"status":"AwaitingAuthorisation"' -- -X POST -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' \
  -d '{"institution":"green-bank","permissions":["ReadAccountsDetail","ReadBalances"],"expiresInDays":90}' \
  "$API/consents"
CONSENT="$(sed -E 's/.*"consentId":"([^"]+)".*/\1/' <<<"$LAST_BODY")"
expect 200 '"status":"Authorised"' -- -X POST -H "Authorization: Bearer $TOKEN" "$API/consents/$CONSENT/authorise"
expect 200 '"AccountBank":"Green Bank"' -- -X POST -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d "{\"consentId\":\"$CONSENT\"}" "$API/accounts/connect"
expect 200 '"AccountBalance":-312.45' -- -H "Authorization: Bearer $TOKEN" "$API/accounts?institution=green-bank"
# 7. Products: a consent covering them at MongoDB Bank, synced on demand, then listed.
expect 201 '"status":"AwaitingAuthorisation"' -- -X POST -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' \
  -d '{"institution":"mongodb-bank","permissions":["ReadAccountsDetail","ReadBalances","ReadProducts"],"expiresInDays":30}' \
  "$API/consents"
MDB_CONSENT="$(sed -E 's/.*"consentId":"([^"]+)".*/\1/' <<<"$LAST_BODY")"
expect 200 '"status":"Authorised"' -- -X POST -H "Authorization: Bearer $TOKEN" "$API/consents/$MDB_CONSENT/authorise"
expect 200 '"status":"Succeeded"' -- -X POST -H "Authorization: Bearer $TOKEN" "$API/products/sync"
expect 200 '"ProductType":"Mortgage"' -- -H "Authorization: Bearer $TOKEN" "$API/products?institution=mongodb-bank&type=Mortgage"
# 8. Insights: one view across Leafy Bank and the connected banks, and the legacy totals.
expect 200 '"institution":"Green Bank"' -- -H "Authorization: Bearer $TOKEN" "$API/insights/summary"
expect 200 '"id":"overdrawn-account:' -- -H "Authorization: Bearer $TOKEN" "$API/insights/recommendations"
expect 200 '^\{"total_balance":4625\}$' -- -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"user_id":"65a546ae4a8f64e8f88fb89e","connected_external_accounts":[]}' \
  "$API/api/v1/openfinance/secure/calculate-total-balance-for-user/"
# 9. Mixed currencies: fridaklo's MongoDB Bank savings are in EUR; the legacy total is still one
#    number (USD, EUR converted at the reference rates), and the summary shows the conversion.
expect 200 '"AccountCurrency":"EUR"' -- -H "Authorization: Bearer $TOKEN" \
  "$API/api/v1/openfinance/secure/fetch-external-accounts-for-user/?user_identifier=fridaklo"
IDS="$(python3 -c 'import json,sys; print(json.dumps([a["_id"] for a in json.load(sys.stdin)["accounts"]]))' <<<"$LAST_BODY")"
expect 200 '^\{"total_balance":[0-9]+(\.[0-9]+)?\}$' -- -X POST -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' \
  -d "{\"user_id\":\"65a546ae4a8f64e8f88fb89e\",\"connected_external_accounts\":$IDS}" \
  "$API/api/v1/openfinance/secure/calculate-total-balance-for-user/"
expect 200 '"converted":\{"currency":"USD".*"rates":\{"EUR":1.05\}' -- -H "Authorization: Bearer $TOKEN" "$API/insights/summary"
expect 200 '"status":"Revoked"' -- -X DELETE -H "Authorization: Bearer $TOKEN" "$API/consents/$CONSENT"
# 10. Transactions at both banks: a consent with transaction permissions at each, connected
#     (its 12 months of history imported), listed a page at a time; then the cash flow per
#     month and category, the recurring payments, and the summary's last month.
for BANK in green-bank mongodb-bank; do
  expect 201 '"status":"AwaitingAuthorisation"' -- -X POST -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' \
    -d "{\"institution\":\"$BANK\",\"permissions\":[\"ReadAccountsDetail\",\"ReadBalances\",\"ReadTransactionsDetail\",\"ReadTransactionsCredits\",\"ReadTransactionsDebits\"],\"expiresInDays\":90}" \
    "$API/consents"
  TX_CONSENT="$(sed -E 's/.*"consentId":"([^"]+)".*/\1/' <<<"$LAST_BODY")"
  expect 200 '"status":"Authorised"' -- -X POST -H "Authorization: Bearer $TOKEN" "$API/consents/$TX_CONSENT/authorise"
  expect 200 '"transactions":\{"added":[1-9][0-9]+' -- -X POST -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d "{\"consentId\":\"$TX_CONSENT\"}" "$API/accounts/connect"
  expect 200 "\"institution\":\"$BANK\".*\"next\":\"" -- -H "Authorization: Bearer $TOKEN" \
    "$API/transactions?institution=$BANK&limit=5"
done
expect 200 '"category":"groceries"' -- -H "Authorization: Bearer $TOKEN" "$API/transactions?category=groceries&from=2026-01-01&limit=3"
expect 200 '"months":\["[0-9]{4}-[0-9]{2}","[0-9]{4}-[0-9]{2}","[0-9]{4}-[0-9]{2}"\].*"spendingByCategory":\{"' -- \
  -H "Authorization: Bearer $TOKEN" "$API/insights/cashflow?months=3"
expect 400 '"detail"' -- -H "Authorization: Bearer $TOKEN" "$API/insights/cashflow?months=25"
expect 200 '"counterparty":"Landlord Properties Ltd"' -- -H "Authorization: Bearer $TOKEN" "$API/insights/recurring"
expect 200 '"lastMonth":\{"month":"[0-9]{4}-[0-9]{2}"' -- -H "Authorization: Bearer $TOKEN" "$API/insights/summary"
expect 200 '"rulesEvaluated":\[[^]]*"balance-forecast-negative"' -- -H "Authorization: Bearer $TOKEN" "$API/insights/recommendations"
echo "smoke: $passed passed, 0 failed"
