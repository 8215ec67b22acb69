"""Wire compatibility check with Google's own client library.

Given an external_account credential file whose token_url and service_account_impersonation_url
point at Cloister, google-auth exchanges a file-sourced subject token at STS, impersonates the
service account, and the resulting token is used on a Cloister API. Prints one JSON line.
"""
import json
import sys

import requests
from google.auth import identity_pool
from google.auth.transport.requests import Request

config_path, endpoint, project = sys.argv[1], sys.argv[2], sys.argv[3]
with open(config_path) as f:
    info = json.load(f)
credentials = identity_pool.Credentials.from_info(
    info, scopes=["https://www.googleapis.com/auth/cloud-platform"]
)
credentials.refresh(Request())
response = requests.get(
    f"{endpoint}/v1/projects/{project}",
    headers={"Authorization": f"Bearer {credentials.token}"},
    timeout=30,
)
print(json.dumps({
    "service_account_email": credentials.service_account_email,
    "expiry": credentials.expiry.isoformat(),
    "status": response.status_code,
    "project": response.json(),
}))
