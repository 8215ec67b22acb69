"""The codelab's workload code path (codelabs/ml_model_protection's inference server in
GoogleCloudPlatform/confidential-space), written afresh with the same library calls made the
same way, run in a Cloister instance's network namespace with the workload's environment:

1. Primus's model: `identity_pool.Credentials.from_info` on the external_account
   configuration (here the file `cloister iam workload-identity-pools create-cred-config`
   wrote), `.with_scopes([cloud-platform])`, `storage.Client(credentials=…)` with no project,
   `bucket.blob("model.tar.gz").download_to_filename(…)`, then the tarball extracted. (Loading
   it into TensorFlow is skipped: TensorFlow is not installed here.)
2. Secundus's images and result: `storage.Client()` with no arguments, so google-auth's
   default credentials come from the instance's metadata server, `list_blobs()` on the input
   bucket, and the result written through `blob.open("w")`.

Beside them, what `storage.Client()` relies on is checked outright: `google.auth.default()`
finds Compute Engine credentials and the project, and an ID token comes from the metadata
server. Usage: codelab_workload.py CONFIG PRIMUS_BUCKET IMAGES_BUCKET RESULT_BUCKET.
Prints one JSON line.
"""
import json
import os
import sys
import tarfile
import tempfile

import google.auth
import google.auth.compute_engine
import google.oauth2.id_token
from google.auth import identity_pool
from google.auth.transport.requests import Request
from google.cloud import storage

config_path, primus_bucket, images_bucket_name, result_bucket_name = sys.argv[1:5]
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")

# Default credentials: the instance's service account, through the metadata server.
default_credentials, default_project = google.auth.default()
default_credentials.refresh(Request())
id_token = google.oauth2.id_token.fetch_id_token(Request(), "https://secundus.example/")

# 1. Primus's model, through workload identity federation with the attestation token.
with open(config_path) as f:
    credentials_config = json.load(f)
credentials = identity_pool.Credentials.from_info(credentials_config).with_scopes(SCOPES)
storage_client = storage.Client(credentials=credentials)
model_blob = storage_client.bucket(primus_bucket).blob("model.tar.gz")
workdir = tempfile.mkdtemp()
local_tarfile = os.path.join(workdir, "model.tar.gz")
model_blob.download_to_filename(local_tarfile)
with tarfile.open(local_tarfile, "r") as tar:
    # The codelab extracts with no filter; "data" refuses links and paths out of workdir.
    tar.extractall(path=workdir, filter="data")
model_files = sorted(
    os.path.relpath(os.path.join(root, name), workdir)
    for root, _, names in os.walk(workdir)
    for name in names
    if name != "model.tar.gz"
)

# 2. Secundus's images and result, with default credentials.
result_storage_client = storage.Client()
images_bucket = result_storage_client.bucket(images_bucket_name)
result_bucket = result_storage_client.bucket(result_bucket_name)
results = []
for blb in images_bucket.list_blobs():
    if blb.name.endswith(IMAGE_SUFFIXES):
        results.append(f"Image: {blb.name}, Response: {{'skipped': 'no TensorFlow here'}}")
with result_bucket.blob("result").open("w") as f:
    f.write("\n".join(results))

print(json.dumps({
    "default_credentials": type(default_credentials).__module__ + "." + type(default_credentials).__name__,
    "default_project": default_project,
    "default_account": default_credentials.service_account_email,
    "id_token": id_token,
    "federated_account": credentials.service_account_email,
    "model_files": model_files,
    "results": results,
    "client_project": result_storage_client.project,
}))
