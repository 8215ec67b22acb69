"""Google's google-cloud-storage client against Cloister the way docs/storage-clients.md says to
point it there (STORAGE_EMULATOR_HOST and a Cloister access token), through the calls beyond
upload/download: list_blobs(match_glob=...), blob.patch()/update() with metageneration
preconditions, blob.compose, exists(), offsets. Prints one JSON line of what it saw."""
import json
import os
import sys

endpoint, token, project, bucket_name = sys.argv[1:5]

# --- the documented snippet (docs/storage-clients.md), verbatim but for the values ---
os.environ["STORAGE_EMULATOR_HOST"] = endpoint  # Cloister's URL, e.g. https://cloister.example:8443

from google.cloud import storage
from google.oauth2.credentials import Credentials

# With STORAGE_EMULATOR_HOST set the client sends no credentials unless given some; Cloister
# needs them: a Cloister access token (`cloister auth print-access-token`), or any credentials
# google.auth.default() finds (a Cloister credential configuration).
client = storage.Client(project=project, credentials=Credentials(token))
# --- end of the snippet ---

from google.api_core import exceptions

out = {}
bucket = client.create_bucket(bucket_name)
for name in ["a.txt", "b.txt", "a.csv", "dir/a.txt", "dir/sub/a.txt", "dir/sub/b.jpg"]:
    blob = bucket.blob(name)
    blob.metadata = {"origin": "parity"}
    blob.upload_from_string(name.encode(), content_type="text/plain")

glob = lambda pattern, **kw: [b.name for b in client.list_blobs(bucket_name, match_glob=pattern, **kw)]
out["glob_top_txt"] = glob("*.txt")
out["glob_all_txt"] = glob("**/*.txt")
out["glob_alternatives"] = glob("dir/**/*.{jpg,csv}")
out["glob_with_prefix"] = glob("dir/sub/?.*", prefix="dir/")
out["offsets"] = [b.name for b in client.list_blobs(bucket_name, start_offset="b", end_offset="dir/sub")]
# Cloister keeps no noncurrent generations: versions=True lists the live ones, as Google does
# for a bucket without versioning. Soft-deleted objects it does not keep either, and says so.
out["versions"] = [b.name for b in client.list_blobs(bucket_name, versions=True, prefix="dir/")]
try:
    list(client.list_blobs(bucket_name, soft_deleted=True))
    out["soft_deleted"] = "accepted"
except exceptions.BadRequest as e:
    out["soft_deleted"] = e.message

# patch: only what changed is sent; the metageneration moves, the generation does not.
blob = bucket.get_blob("a.txt")
out["custom_metadata_on_upload"] = blob.metadata
out["time_created_ms"] = blob.time_created.microsecond % 1000 == 0
generation, metageneration = blob.generation, blob.metageneration
blob.content_type = "application/json"
blob.cache_control = "no-cache"
blob.metadata = {"origin": None, "reviewed": "yes"}
blob.patch(if_metageneration_match=metageneration)
out["patched"] = {
    "content_type": blob.content_type,
    "cache_control": blob.cache_control,
    "metadata": blob.metadata,
    "same_generation": blob.generation == generation,
    "metageneration": blob.metageneration,
}
stale = bucket.blob("a.txt")
stale.content_type = "text/x-stale"
try:
    stale.patch(if_metageneration_match=metageneration)
    out["stale_patch"] = "accepted"
except exceptions.PreconditionFailed:
    out["stale_patch"] = 412
# update (PUT) sends every property it holds, read-only ones included.
blob.reload()
blob.metadata = {"final": "1"}
blob.update()
out["updated_metadata"] = bucket.get_blob("a.txt").metadata

# compose: the composite's bytes, its CRC32C (the client checks it on download), no MD5.
parts = [bucket.blob(n) for n in ["a.csv", "b.txt", "dir/a.txt"]]
joined = bucket.blob("joined.txt")
joined.content_type = "text/plain"
joined.compose(parts)
out["compose"] = {
    "bytes": joined.download_as_bytes().decode(),
    "component_count": joined.component_count,
    "md5": joined.md5_hash,
    "has_crc32c": bool(joined.crc32c),
}
try:
    bucket.blob("never.txt").compose([bucket.blob("a.csv"), bucket.blob("missing.bin")])
    out["compose_missing"] = "accepted"
except exceptions.NotFound:
    out["compose_missing"] = 404
out["exists"] = [bucket.blob("joined.txt").exists(), bucket.blob("never.txt").exists()]
bucket.blob("joined.txt").delete(if_generation_match=joined.generation)
print(json.dumps(out))
