"""Wire compatibility with Google's Cloud Storage client library (google-cloud-storage),
pointed at Cloister with `api_endpoint` and a Cloister access token. Prints one JSON line."""
import json
import sys

from google.cloud import storage
from google.oauth2.credentials import Credentials

endpoint, token, project, bucket_name = sys.argv[1:5]
client = storage.Client(
    project=project, credentials=Credentials(token), client_options={"api_endpoint": endpoint}
)
bucket = client.create_bucket(bucket_name)
bucket.blob("images/cat.jpg").upload_from_string(b"\xff\xd8 not really a jpeg", content_type="image/jpeg")
bucket.blob("model.onnx").upload_from_string(b"weights" * 1000)
big = bytes(range(256)) * (10 * 4096)  # 10 MiB: the client uploads it resumably
resumable = bucket.blob("big.bin", chunk_size=4 * 1024 * 1024)
resumable.upload_from_string(big)
big_back = bucket.blob("big.bin").download_as_bytes()
bucket.blob("big.bin").delete()
names = [b.name for b in client.list_blobs(bucket_name)]
top = client.list_blobs(bucket_name, delimiter="/")
top_names = [b.name for b in top]
data = bucket.blob("model.onnx").download_as_bytes()
partial = bucket.blob("model.onnx").download_as_bytes(start=7, end=13)
meta = bucket.get_blob("images/cat.jpg")
# copy_blob is a server-side rewrite; the copy has its own generation and the same bytes.
copied = bucket.copy_blob(bucket.blob("model.onnx"), bucket, "copies/model.onnx")
copy_same = copied.download_as_bytes() == data and copied.md5_hash == bucket.get_blob("model.onnx").md5_hash
copied.delete()
bucket.blob("images/cat.jpg").delete()
after = [b.name for b in client.list_blobs(bucket_name)]
print(json.dumps({
    "names": names,
    "top": top_names,
    "prefixes": sorted(top.prefixes),
    "size": len(data),
    "partial": partial.decode(),
    "content_type": meta.content_type,
    "md5": meta.md5_hash,
    "after_delete": after,
    "big_round_trip": big_back == big,
    "copy_same": copy_same,
}))
