"""Schemathesis hooks for scripts/fuzz.sh: who each request authenticates as.

- /oauth/*: the OAuth client, with HTTP Basic (RFC 6749 §2.3.1).
- /banks/<institution>/*: the access token Leafy Bank holds for the walkthrough customer's
  consent at that institution (`leafy-admin consent-access-token`, refreshed as a sync would),
  and at MongoDB Bank that consent's Consent-ID header.
- everything else: the demo customer's JWT from the demo login.
Tokens are fetched again every two minutes, well inside their lifetimes (five minutes for
institution tokens), so a long run never presents an expired one."""
import base64
import json
import os
import subprocess
import urllib.parse
import urllib.request

import schemathesis

API = os.environ["FUZZ_API"]
REFRESH = 120


def _bearer(case, token):
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}


def institution_token(consent):
    out = subprocess.run(
        [os.environ["FUZZ_ADMIN"], "consent-access-token", "--consent", consent, "--local-api", API],
        check=True, capture_output=True, text=True)
    return out.stdout.strip()


@schemathesis.auth(refresh_interval=REFRESH).apply_to(path_regex="^/oauth/")
class OAuthClient:
    def get(self, case, context):
        pair = f"{os.environ['CLIENT_ID']}:{os.environ['CLIENT_SECRET']}"
        return base64.b64encode(pair.encode()).decode()

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Basic {data}"}


@schemathesis.auth(refresh_interval=REFRESH).apply_to(path_regex="^/banks/green-bank/")
class GreenBankInstitutionToken:
    def get(self, case, context):
        return institution_token(os.environ["FUZZ_GREEN_BANK_CONSENT"])

    def set(self, case, data, context):
        _bearer(case, data)


@schemathesis.auth(refresh_interval=REFRESH).apply_to(path_regex="^/banks/mongodb-bank/")
class MongoDbBankInstitutionToken:
    def get(self, case, context):
        return institution_token(os.environ["FUZZ_MONGODB_BANK_CONSENT"])

    def set(self, case, data, context):
        _bearer(case, data)
        # Berlin Group: the consent the token was issued under, named in every request.
        case.headers["Consent-ID"] = os.environ["FUZZ_MONGODB_BANK_CONSENT"]


@schemathesis.auth(refresh_interval=REFRESH).skip_for(path_regex="^/(oauth|banks)/")
class DemoCustomer:
    def get(self, case, context):
        query = urllib.parse.urlencode({"user_identifier": os.environ["FUZZ_CUSTOMER"]})
        url = f"{API}/api/v1/openfinance/public/get-authorization?{query}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)["BearerToken"]

    def set(self, case, data, context):
        _bearer(case, data)
