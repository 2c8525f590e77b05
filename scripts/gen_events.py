#!/usr/bin/env python3
"""Writes events/*.json: API Gateway HTTP API (payload format 2.0) events for every function's
main routes, as `sam local invoke -e` and `cargo lambda invoke --data-file` take them, and
events/expected.tsv: which function each goes to and the status it must produce against the
seeded sample data. The scheduled event (events/sync-scheduled.json) comes from
`sam local generate-event cloudwatch scheduled-event`; with the sync queue configured its
answer is the dispatcher's. The sync worker's SQS batch (events/sync-worker-batch.json) is
written here. Deterministic: rerunning rewrites the
same files; `--check` verifies them against this script and template.yaml."""
import json
import pathlib
import re
import sys
import urllib.parse

EVENTS = pathlib.Path(__file__).resolve().parent.parent / "events"
FRIDA_TOKEN = "f4f4184e9669f8a4008243ee00a04482349d462c69ad1d2b4ac0814923eddab0"
FRIDA_ID = "65a546ae4a8f64e8f88fb89e"
SECURE = "/api/v1/openfinance/secure"

# name, function, method, route path (as in template.yaml), actual path, query, body, auth, status.
# The legacy paths that end in "/" reach their function through the "/x/{proxy+}" route: an HTTP
# API route cannot end in "/".
ROUTES = [
    ("token-jwks", "token", "GET", "/.well-known/jwks.json", None, "", None, False, 200),
    ("token-openapi", "token", "GET", "/openapi.json", None, "", None, False, 200),
    ("token-client-credentials-no-client", "token", "POST", "/oauth/token", None, "", "grant_type=client_credentials", False, 401),
    ("token-demo-login", "token", "GET", "/api/v1/openfinance/public/get-authorization", None, "user_identifier=fridaklo", None, False, 200),
    ("token-validate-legacy-token", "token", "POST", f"{SECURE}/validate-token", None, "", None, True, 200),
    ("connect-create-consent", "connect-accounts", "POST", "/consents", None, "",
     {"institution": "green-bank", "permissions": ["ReadAccountsDetail", "ReadBalances"], "expiresInDays": 90}, True, 201),
    ("connect-list-consents", "connect-accounts", "GET", "/consents", None, "", None, True, 200),
    ("connect-get-consent-bad-id", "connect-accounts", "GET", "/consents/{id}", "/consents/not-an-id", "", None, True, 400),
    ("connect-list-accounts", "connect-accounts", "GET", "/accounts", None, "institution=green-bank", None, True, 200),
    ("connect-legacy-fetch-accounts", "connect-accounts", "GET", f"{SECURE}/fetch-external-accounts-for-user/{{proxy+}}", f"{SECURE}/fetch-external-accounts-for-user/",
     "user_identifier=fridaklo", None, True, 200),
    ("connect-no-token", "connect-accounts", "GET", "/consents", None, "", None, False, 401),
    ("banks-green-accounts-no-token", "external-banks", "GET", "/banks/green-bank/{proxy+}",
     "/banks/green-bank/open-banking/v3.1/aisp/accounts", "", None, False, 401),
    ("banks-mongodb-accounts-no-token", "external-banks", "GET", "/banks/mongodb-bank/{proxy+}",
     "/banks/mongodb-bank/v1/accounts", "withBalance=true", None, False, 401),
    ("sync-products-sync-now", "sync-products", "POST", "/products/sync", None, "", None, True, 200),
    ("sync-products-list", "sync-products", "GET", "/products", None, "type=Mortgage", None, True, 200),
    ("sync-products-bad-type", "sync-products", "GET", "/products", None, "type=Car", None, True, 400),
    ("sync-products-transactions", "sync-products", "GET", "/transactions", None, "category=groceries&limit=20", None, True, 200),
    ("sync-products-transactions-bad-limit", "sync-products", "GET", "/transactions", None, "limit=501", None, True, 400),
    ("sync-products-legacy-fetch", "sync-products", "GET", f"{SECURE}/fetch-external-products-for-user/{{proxy+}}", f"{SECURE}/fetch-external-products-for-user/",
     "user_identifier=fridaklo", None, True, 200),
    ("insights-summary", "insights", "GET", "/insights/summary", None, "", None, True, 200),
    ("insights-recommendations", "insights", "GET", "/insights/recommendations", None, "", None, True, 200),
    ("insights-recurring", "insights", "GET", "/insights/recurring", None, "", None, True, 200),
    ("insights-cashflow", "insights", "GET", "/insights/cashflow", None, "months=3", None, True, 200),
    ("insights-cashflow-bad-months", "insights", "GET", "/insights/cashflow", None, "months=25", None, True, 400),
    ("insights-legacy-total-balance", "insights", "POST", f"{SECURE}/calculate-total-balance-for-user/{{proxy+}}", f"{SECURE}/calculate-total-balance-for-user/", "",
     {"user_id": FRIDA_ID, "connected_external_accounts": ["678a48b4a9711d00a3aa06dc"]}, True, 200),
    ("insights-legacy-total-debt", "insights", "POST", f"{SECURE}/calculate-total-debt-for-user/{{proxy+}}", f"{SECURE}/calculate-total-debt-for-user/", "",
     {"user_id": FRIDA_ID, "connected_external_products": ["678a5899fd053f026e6b97c2"]}, True, 200),
]


def event(method, route, path, query, body, auth):
    headers = {"host": "api-id.execute-api.us-east-1.amazonaws.com", "user-agent": "curl/8.5.0", "accept": "*/*"}
    if auth:
        headers["authorization"] = f"Bearer {FRIDA_TOKEN}"
    text = None
    if isinstance(body, dict):
        text = json.dumps(body)
        headers["content-type"] = "application/json"
    elif body is not None:
        text = body
        headers["content-type"] = "application/x-www-form-urlencoded"
    if text is not None:
        headers["content-length"] = str(len(text))
    e = {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api-id",
            "domainName": "api-id.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "api-id",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "curl/8.5.0"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": f"{method} {route}",
            "stage": "$default",
            "time": "25/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1795600800000,
        },
        "isBase64Encoded": False,
    }
    if query:
        e["queryStringParameters"] = {k: ",".join(v) for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}
    if "{" in route:
        # API Gateway names a greedy variable without its "+".
        name = route[route.index("{") + 1:route.index("}")].rstrip("+")
        prefix = route[:route.index("{")]
        e["pathParameters"] = {name: path[len(prefix):]}
    if text is not None:
        e["body"] = text
    return e


# The sync worker's SQS event (as Lambda's event source mapping delivers it): a message for a
# consent that does not exist (a final outcome: acknowledged) and a poison message (reported as a
# batch item failure, so SQS redelivers it and then dead-letters it).
SQS_QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:leafy-bank-sync"


def sqs_record(message_id, body, receive_count):
    return {
        "messageId": message_id,
        "receiptHandle": f"{message_id}-receipt",
        "body": body,
        "attributes": {"ApproximateReceiveCount": str(receive_count), "SentTimestamp": "1795600800000",
                       "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1795600800001"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": SQS_QUEUE_ARN,
        "awsRegion": "us-east-1",
    }


def sqs_event():
    gone = json.dumps({"runId": "6b1165a4a3bd6d18a346fa00", "consentId": "6b1165a4a3bd6d18a346fa01"})
    return {"Records": [sqs_record("consent-gone", gone, 1), sqs_record("poison-message", "not a sync message", 1)]}


def files():
    """Every generated file's name and text."""
    out = {}
    lines = ["# event\tfunction\tstatus"]
    for name, function, method, route, path, query, body, auth, status in ROUTES:
        path = path or route
        out[f"{name}.json"] = json.dumps(event(method, route, path, query, body, auth), indent=2) + "\n"
        lines.append(f"{name}.json\t{function}\t{status}")
    lines.append('sync-scheduled.json\tsync-scheduled\t"mode":"FanOut"')
    out["sync-worker-batch.json"] = json.dumps(sqs_event(), indent=2) + "\n"
    lines.append('sync-worker-batch.json\tsync-worker\t"itemIdentifier":"poison-message"')
    out["expected.tsv"] = "\n".join(lines) + "\n"
    return out


def template_routes():
    """Every (method, path) template.yaml gives API Gateway (its HttpApi events)."""
    template = (EVENTS.parent / "template.yaml").read_text()
    return {(m, q or p) for m, q, p in re.findall(r'Method: (\w+), Path: (?:"([^"]+)"|(\S+))', template)}


def check():
    """The files are up to date and every event's route is a route of template.yaml."""
    routes = {f"{m} {p}" for m, p in template_routes()}
    problems = [f"{n}: not generated from scripts/gen_events.py" for n, text in files().items()
                if not (EVENTS / n).is_file() or (EVENTS / n).read_text() != text]
    problems += [f"{r[0]}: route {r[2]} {r[3]} is not in template.yaml" for r in ROUTES
                 if f"{r[2]} {r[3]}" not in routes]
    for p in problems:
        print(f"events: {p}", file=sys.stderr)
    print(f"events: {len(ROUTES) - len(problems)} passed, {len(problems)} failed")
    return not problems


def main():
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if check() else 1)
    EVENTS.mkdir(exist_ok=True)
    for name, text in files().items():
        (EVENTS / name).write_text(text)


if __name__ == "__main__":
    main()
