"""A cosign-format signer and verifier outside Cloister, written from cosign's
SIGNATURE_SPEC with Python's `cryptography` and the OCI distribution API (`requests`).

  cosign_format.py keygen ec|rsa PRIVATE.pem PUBLIC.pem   -> prints the key id
  cosign_format.py sign ENDPOINT TOKEN NAME DIGEST PRIVATE.pem ALG
  cosign_format.py verify ENDPOINT TOKEN NAME DIGEST       -> one "ALG:KEY_ID" per valid one

NAME is the repository path (PROJECT/REPOSITORY/IMAGE); the signature is the manifest
tagged sha256-<hex>.sig there, one layer per signature, the payload its blob and the
base64 signature its dev.cosignproject.cosign/signature annotation.
"""

import base64
import hashlib
import json
import sys

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def key_id(public_key):
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def keygen(kind, private_path, public_path):
    if kind == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(private_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with open(public_path, "wb") as f:
        f.write(
            key.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )
    print(key_id(key.public_key()))


def sign_bytes(key, alg, data):
    if alg == "ECDSA_P256_SHA256":
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if alg == "RSASSA_PSS_SHA256":
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return key.sign(data, pss, hashes.SHA256())
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def verify_bytes(public_key, alg, sig, data):
    if alg == "ECDSA_P256_SHA256":
        public_key.verify(sig, data, ec.ECDSA(hashes.SHA256()))
    elif alg == "RSASSA_PSS_SHA256":
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
        public_key.verify(sig, data, pss, hashes.SHA256())
    else:
        public_key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())


class Registry:
    def __init__(self, endpoint, token, name):
        self.base = f"{endpoint}/v2/{name}"
        self.auth = {"Authorization": f"Bearer {token}"}

    def manifest(self, tag):
        r = requests.get(
            f"{self.base}/manifests/{tag}", headers={**self.auth, "Accept": OCI_MANIFEST}
        )
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def blob(self, digest):
        r = requests.get(f"{self.base}/blobs/{digest}", headers=self.auth)
        r.raise_for_status()
        return r.content

    def push_blob(self, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = requests.post(f"{self.base}/blobs/uploads/", headers=self.auth)
        r.raise_for_status()
        location = r.headers["Location"]
        if location.startswith("/"):
            location = self.base.split("/v2/")[0] + location
        r = requests.put(
            location,
            params={"digest": digest},
            data=data,
            headers={**self.auth, "Content-Type": "application/octet-stream"},
        )
        r.raise_for_status()
        return digest

    def push_manifest(self, tag, manifest):
        r = requests.put(
            f"{self.base}/manifests/{tag}",
            data=json.dumps(manifest).encode(),
            headers={**self.auth, "Content-Type": OCI_MANIFEST},
        )
        r.raise_for_status()


def sig_tag(digest):
    return digest.replace(":", "-", 1) + ".sig"


def sign(endpoint, token, name, digest, private_path, alg):
    with open(private_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    payload = json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": name},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": {
                "dev.cosignproject.cosign/pub": base64.b64encode(pem).decode(),
                "dev.cosignproject.cosign/sigalg": alg,
            },
        }
    ).encode()
    sig = sign_bytes(key, alg, payload)
    reg = Registry(endpoint, token, name)
    existing = reg.manifest(sig_tag(digest))
    layers = existing["layers"] if existing else []
    layers.append(
        {
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "size": len(payload),
            "digest": reg.push_blob(payload),
            "annotations": {ANNOTATION: base64.b64encode(sig).decode()},
        }
    )
    config = json.dumps(
        {"rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": len(config),
            "digest": reg.push_blob(config),
        },
        "layers": layers,
    }
    reg.push_manifest(sig_tag(digest), manifest)


def verify(endpoint, token, name, digest):
    reg = Registry(endpoint, token, name)
    manifest = reg.manifest(sig_tag(digest)) or {"layers": []}
    for layer in manifest["layers"]:
        payload = reg.blob(layer["digest"])
        assert "sha256:" + hashlib.sha256(payload).hexdigest() == layer["digest"]
        body = json.loads(payload)
        if body["critical"]["type"] != "cosign container image signature":
            continue
        if body["critical"]["image"]["docker-manifest-digest"] != digest:
            continue
        optional = body["optional"]
        public_key = serialization.load_pem_public_key(
            base64.b64decode(optional["dev.cosignproject.cosign/pub"])
        )
        alg = optional["dev.cosignproject.cosign/sigalg"]
        sig = base64.b64decode(layer["annotations"][ANNOTATION])
        try:
            verify_bytes(public_key, alg, sig, payload)
        except InvalidSignature:
            continue
        print(f"{alg}:{key_id(public_key)}")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"keygen": keygen, "sign": sign, "verify": verify}[command](*args)
