"""An independent relying party: PyJWT's PyJWKClient verifies a Cloister attestation token.

Asks Cloister for a challenge, sends INSECURE evidence to verifyAttestation as the instance's
service account, then verifies the token the way a relying party outside Cloister would:
OIDC discovery at the issuer, the JWKS it names, RS256. Writes the token to a file and
prints the verified claims as one JSON line.
"""
import json
import sys

import jwt
import requests

endpoint, sa_token, sa_id_token, event_log, project, token_file = sys.argv[1:7]
auth = {"Authorization": f"Bearer {sa_token}"}
challenge = requests.post(
    f"{endpoint}/v1/projects/{project}/locations/us-west1/challenges", json={}, headers=auth, timeout=30
)
challenge.raise_for_status()
verified = requests.post(
    f"{endpoint}/v1/{challenge.json()['name']}:verifyAttestation",
    json={
        "gcpCredentials": {"serviceAccountIdTokens": [sa_id_token]},
        "insecureAttestation": {"canonicalEventLog": event_log},
        "tokenOptions": {"audience": "https://sts.googleapis.com", "nonce": ["0123456789abcdef"]},
    },
    headers=auth,
    timeout=30,
)
verified.raise_for_status()
token = verified.json()["oidcClaimsToken"]
with open(token_file, "w") as f:
    f.write(token)

discovery = requests.get(f"{endpoint}/.well-known/openid-configuration", timeout=30).json()
signing_key = jwt.PyJWKClient(discovery["jwks_uri"]).get_signing_key_from_jwt(token)
claims = jwt.decode(
    token,
    signing_key.key,
    algorithms=["RS256"],
    audience="https://sts.googleapis.com",
    issuer=discovery["issuer"],
)
print(json.dumps(claims))
