"""An independent relying party for every token type (PyJWT and cryptography only).

Asks Cloister for an OIDC, a PKI and an AWS_PRINCIPALTAGS token over INSECURE evidence, then
verifies each the way a party outside Cloister would:
- OIDC: discovery, the JWKS it names, RS256.
- PKI: the root certificate downloaded from `root_ca_uri` (found at
  /.well-known/attestation-pki-root, as Google publishes its root), the x5c chain
  leaf -> intermediate -> root checked link by link (issuer names, signatures, CA flags,
  validity periods), then the token's RS256 signature by the leaf's key. Two forged chains
  (a rogue root; a rogue intermediate under the genuine root's certificate) are refused.
- AWS_PRINCIPALTAGS: through the JWKS, and the tags claim in Google's shape.
Prints one JSON line: the claims of each token and the forgeries' refusals.
"""
import base64
import datetime
import json
import sys

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

endpoint, sa_token, sa_id_token, event_log, project = sys.argv[1:6]
AUDIENCE = "https://relying-party.example"
auth = {"Authorization": f"Bearer {sa_token}"}


def token(token_options):
    challenge = requests.post(
        f"{endpoint}/v1/projects/{project}/locations/us-west1/challenges", json={}, headers=auth, timeout=30
    )
    challenge.raise_for_status()
    verified = requests.post(
        f"{endpoint}/v1/{challenge.json()['name']}:verifyAttestation",
        json={
            "gcpCredentials": {"serviceAccountIdTokens": [sa_id_token]},
            "insecureAttestation": {"canonicalEventLog": event_log},
            "tokenOptions": token_options,
        },
        headers=auth,
        timeout=30,
    )
    verified.raise_for_status()
    return verified.json()["oidcClaimsToken"]


discovery = requests.get(f"{endpoint}/.well-known/openid-configuration", timeout=30).json()


def via_jwks(tok):
    key = jwt.PyJWKClient(discovery["jwks_uri"]).get_signing_key_from_jwt(tok)
    return jwt.decode(tok, key.key, algorithms=["RS256"], audience=AUDIENCE, issuer=discovery["issuer"])


class Refused(Exception):
    pass


def via_chain(tok, root):
    """Verifies a PKI token against the trusted `root` certificate; raises Refused."""
    header = jwt.get_unverified_header(tok)
    if header.get("alg") != "RS256" or len(header.get("x5c", [])) != 3:
        raise Refused("the header must say RS256 and carry x5c [leaf, intermediate, root]")
    leaf, intermediate, presented_root = (
        x509.load_der_x509_certificate(base64.b64decode(c)) for c in header["x5c"]
    )
    if presented_root.public_bytes(serialization.Encoding.DER) != root.public_bytes(serialization.Encoding.DER):
        raise Refused("the chain does not end at the downloaded root")
    now = datetime.datetime.now(datetime.timezone.utc)
    for cert, issuer, must_be_ca in ((leaf, intermediate, False), (intermediate, root, True), (root, root, True)):
        try:
            cert.verify_directly_issued_by(issuer)
        except Exception as e:  # InvalidSignature, ValueError (names), TypeError (key types)
            raise Refused(f"{cert.subject.rfc4514_string()} is not issued by {issuer.subject.rfc4514_string()}: {e!r}")
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise Refused(f"{cert.subject.rfc4514_string()} is not valid now")
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca != must_be_ca:
            raise Refused(f"{cert.subject.rfc4514_string()} has the wrong CA flag")
    try:
        return jwt.decode(tok, leaf.public_key(), algorithms=["RS256"], audience=AUDIENCE, issuer=discovery["issuer"])
    except jwt.InvalidTokenError as e:
        raise Refused(f"the signature or claims do not verify: {e!r}")


def certificate(subject, issuer, public_key, signing_key, ca):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signing_key, hashes.SHA256())
    )


def forged(claims, root_cert=None):
    """A token signed by a key of the forger's, its chain under a rogue root, or under the
    genuine root's certificate when `root_cert` is given (whose key the forger lacks)."""
    rogue_root_key = ec.generate_private_key(ec.SECP256R1())
    inter_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if root_cert is None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Cloister attestation root CA")])
        root_cert = certificate(name, name, rogue_root_key.public_key(), rogue_root_key, True)
    inter_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Cloister attestation intermediate CA")])
    # Signed with the rogue key but naming the genuine root as issuer.
    inter = certificate(inter_name, root_cert.subject, inter_key.public_key(), rogue_root_key, True)
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged signer")])
    leaf = certificate(leaf_name, inter_name, leaf_key.public_key(), inter_key, False)
    x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in (leaf, inter, root_cert)]
    return jwt.encode(claims, leaf_key, algorithm="RS256", headers={"x5c": x5c})


out = {}
out["oidc"] = via_jwks(token({"audience": AUDIENCE, "nonce": ["0123456789abcdef"], "tokenType": "TOKEN_TYPE_OIDC"}))

pki_token = token({"audience": AUDIENCE, "tokenType": "TOKEN_TYPE_PKI"})
root_ca_uri = requests.get(f"{endpoint}/.well-known/attestation-pki-root", timeout=30).json()["root_ca_uri"]
root = x509.load_pem_x509_certificate(requests.get(root_ca_uri, timeout=30).content)
out["pki"] = via_chain(pki_token, root)
out["pki_header"] = jwt.get_unverified_header(pki_token)
out["refused"] = {}
for name, tok in (
    ("rogue_root", forged(out["pki"])),
    ("rogue_intermediate", forged(out["pki"], root_cert=root)),
):
    try:
        via_chain(tok, root)
        out["refused"][name] = None
    except Refused as e:
        out["refused"][name] = str(e)
# The genuine chain with a payload the leaf's key never signed.
head, _, sig = pki_token.split(".")
altered = base64.urlsafe_b64encode(json.dumps({**out["pki"], "hwmodel": "GCP_INTEL_TDX"}).encode()).rstrip(b"=").decode()
try:
    via_chain(f"{head}.{altered}.{sig}", root)
    out["refused"]["altered_payload"] = None
except Refused as e:
    out["refused"]["altered_payload"] = str(e)

out["aws"] = via_jwks(
    token({
        "audience": AUDIENCE,
        "tokenType": "TOKEN_TYPE_AWS_PRINCIPALTAGS",
        "awsPrincipalTagsOptions": {"allowedPrincipalTags": {"containerImageSignatures": {"keyIds": ["no-such-key"]}}},
    })
)
print(json.dumps(out))
