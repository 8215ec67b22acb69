#!/usr/bin/env bash
# Secundus: its project, the images to classify, the result bucket, the workload's service
# account (workloadUser to attest; reads images, writes results).
# Usage: 2_setup_secundus_resources.sh IMAGES_DIR
set -euo pipefail
source "$(dirname "$0")/config_env.sh"
images=$1
sa="$WORKLOAD_SERVICEACCOUNT@$SECUNDUS_PROJECT_ID.iam.gserviceaccount.com"
secundus projects create "$SECUNDUS_PROJECT_ID" >/dev/null
for b in "$SECUNDUS_INPUT_STORAGE_BUCKET" "$SECUNDUS_RESULT_STORAGE_BUCKET"; do
  secundus storage buckets create "gs://$b" --project "$SECUNDUS_PROJECT_ID" >/dev/null
done
for f in "$images"/*; do
  secundus storage cp "$f" "gs://$SECUNDUS_INPUT_STORAGE_BUCKET/" 2>/dev/null
done
secundus iam service-accounts create "$WORKLOAD_SERVICEACCOUNT" --project "$SECUNDUS_PROJECT_ID" >/dev/null
secundus projects add-iam-policy-binding "$SECUNDUS_PROJECT_ID" --member "serviceAccount:$sa" \
  --role roles/confidentialcomputing.workloadUser >/dev/null
secundus storage buckets add-iam-policy-binding "gs://$SECUNDUS_INPUT_STORAGE_BUCKET" \
  --member "serviceAccount:$sa" --role roles/storage.objectViewer >/dev/null
secundus storage buckets add-iam-policy-binding "gs://$SECUNDUS_RESULT_STORAGE_BUCKET" \
  --member "serviceAccount:$sa" --role roles/storage.objectAdmin >/dev/null
echo "Secundus: images in gs://$SECUNDUS_INPUT_STORAGE_BUCKET, results to gs://$SECUNDUS_RESULT_STORAGE_BUCKET"
