"""Wire compatibility with Google's Cloud KMS client library (google-cloud-kms) over its
default transport, gRPC, pointed at Cloister by configuration alone: `api_endpoint` in
client_options, a Cloister access token as the credentials, and the environment variable
GRPC_DEFAULT_SSL_ROOTS_FILE_PATH naming the CA that signed Cloister's TLS certificate (gRPC
channels from Google's clients are always TLS). Prints one JSON line."""
import json
import sys

import google_crc32c
from google.api_core import exceptions
from google.cloud import kms
from google.oauth2.credentials import Credentials

endpoint, token, location = sys.argv[1:4]
client = kms.KeyManagementServiceClient(
    credentials=Credentials(token), client_options={"api_endpoint": endpoint}
)
transport = type(client.transport).__name__

# The codelab's steps: a key ring and a key, then encrypt and decrypt (with Google's
# recommended CRC32C integrity checks on both ways).
ring = client.create_key_ring(request={"parent": location, "key_ring_id": "primus-ring"})
key = client.create_crypto_key(
    request={
        "parent": ring.name,
        "crypto_key_id": "model-key",
        "crypto_key": {"purpose": kms.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT},
    }
)
plaintext = b"the model's data encryption key"
aad = b"model.onnx"
encrypted = client.encrypt(
    request={
        "name": key.name,
        "plaintext": plaintext,
        "plaintext_crc32c": google_crc32c.value(plaintext),
        "additional_authenticated_data": aad,
        "additional_authenticated_data_crc32c": google_crc32c.value(aad),
    }
)
decrypted = client.decrypt(
    request={
        "name": key.name,
        "ciphertext": encrypted.ciphertext,
        "ciphertext_crc32c": google_crc32c.value(encrypted.ciphertext),
        "additional_authenticated_data": aad,
    }
)

# What the client raises for Cloister's refusals: Google's exception classes.
refusals = {}
try:
    client.encrypt(request={"name": key.name + "-missing", "plaintext": b"x"})
except exceptions.NotFound as e:
    refusals["missing_key"] = e.message
try:
    client.encrypt(request={"name": key.name, "plaintext": b"x", "plaintext_crc32c": 1})
except exceptions.InvalidArgument as e:
    refusals["crc32c_mismatch"] = e.message

keys = [k.name for k in client.list_crypto_keys(request={"parent": ring.name})]
versions = list(client.list_crypto_key_versions(request={"parent": key.name}))
# The codelab's cleanup: destroy the key version; then nothing it encrypted decrypts.
destroyed = client.destroy_crypto_key_version(request={"name": versions[0].name})
try:
    client.decrypt(request={"name": key.name, "ciphertext": encrypted.ciphertext, "additional_authenticated_data": aad})
except exceptions.FailedPrecondition as e:
    refusals["destroyed"] = e.message

print(json.dumps({
    "transport": transport,
    "encrypted_with": encrypted.name,
    "verified_plaintext_crc32c": encrypted.verified_plaintext_crc32c,
    "verified_aad_crc32c": encrypted.verified_additional_authenticated_data_crc32c,
    "ciphertext_crc32c_ok": encrypted.ciphertext_crc32c == google_crc32c.value(encrypted.ciphertext),
    "round_trip": decrypted.plaintext == plaintext,
    "plaintext_crc32c_ok": decrypted.plaintext_crc32c == google_crc32c.value(decrypted.plaintext),
    "keys": keys,
    "versions": [v.name for v in versions],
    "destroyed_state": kms.CryptoKeyVersion.CryptoKeyVersionState(destroyed.state).name,
    "refusals": refusals,
}))
