#!/usr/bin/env bash
# Primus, the workload author, packages the inference workload (and the ONNX Runtime library it
# loads) as an image without Docker, publishes it in its repository, lets Secundus's workload
# service account pull it, and prints its digest.
# Usage: 3_create_workload.sh WORKLOAD_BIN ORT_LIBRARY [TAG] [EXTRA_LABEL]
set -euo pipefail
source "$(dirname "$0")/config_env.sh"
bin=$1 ort=$2 tag=${3:-$WORKLOAD_IMAGE_TAG}
labels=(--label tee.launch_policy.allow_cmd_override=true --label tee.launch_policy.log_redirect=always)
[ -n "${4:-}" ] && labels+=(--label "$4")
image=$(workload_image "$tag")
# The CA bundle lets the workload's HTTPS client start (as distroless images carry it).
primus artifacts push "$image" --executable "$bin" --file "$ort:/usr/local/bin/libonnxruntime.so" \
  --file /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt \
  "${labels[@]}" >/dev/null
primus artifacts repositories add-iam-policy-binding "$PRIMUS_ARTIFACT_REPOSITORY" --project "$PRIMUS_PROJECT_ID" \
  --location "$PRIMUS_PROJECT_REPOSITORY_REGION" \
  --member "serviceAccount:$WORKLOAD_SERVICEACCOUNT@$SECUNDUS_PROJECT_ID.iam.gserviceaccount.com" \
  --role roles/artifactregistry.reader >/dev/null
primus artifacts docker images describe "$image" --format 'value(image_summary.digest)'
