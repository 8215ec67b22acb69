#!/usr/bin/env bash
# Secundus runs the workload on a Confidential Space VM (VTPM on the local driver) and waits
# for it to finish. With SIGNATURE_REPOS (comma-separated), the launcher looks there for the
# image's signatures (metadata tee-signed-image-repos, as Google's signed container image
# codelab sets it). Usage: 5_run_workload.sh [TAG] [VM_NAME] [SIGNATURE_REPOS]
set -euo pipefail
source "$(dirname "$0")/config_env.sh"
tag=${1:-$WORKLOAD_IMAGE_TAG} vm=${2:-$WORKLOAD_VM} signature_repos=${3:-}
number=$(primus projects describe "$PRIMUS_PROJECT_ID" --format 'value(projectNumber)')
provider="//iam.googleapis.com/projects/$number/locations/global/workloadIdentityPools/$PRIMUS_WORKLOAD_IDENTITY_POOL/providers/$PRIMUS_WIP_PROVIDER"
image=$(workload_image "$tag")
cmd="[\"run\",\"--provider\",\"$provider\",\"--service-account\",\"$PRIMUS_SERVICEACCOUNT@$PRIMUS_PROJECT_ID.iam.gserviceaccount.com\",\"--model\",\"gs://$PRIMUS_INPUT_STORAGE_BUCKET/$PRIMUS_MODEL_OBJECT\",\"--input-bucket\",\"$SECUNDUS_INPUT_STORAGE_BUCKET\",\"--result-bucket\",\"$SECUNDUS_RESULT_STORAGE_BUCKET\"]"
metadata="^~^tee-image-reference=$image~tee-restart-policy=Never~tee-container-log-redirect=true~tee-cmd=$cmd"
if [ -n "$signature_repos" ]; then metadata+="~tee-signed-image-repos=$signature_repos"; fi
secundus compute instances create "$vm" --project "$SECUNDUS_PROJECT_ID" --zone "$SECUNDUS_PROJECT_ZONE" \
  --confidential-compute-type VTPM --shielded-secure-boot --maintenance-policy MIGRATE \
  --image-project confidential-space-images --image-family confidential-space \
  --service-account "$WORKLOAD_SERVICEACCOUNT@$SECUNDUS_PROJECT_ID.iam.gserviceaccount.com" \
  --metadata "$metadata" >/dev/null
while [ "$(secundus compute instances describe "$vm" --project "$SECUNDUS_PROJECT_ID" --zone "$SECUNDUS_PROJECT_ZONE" --format 'value(status)')" != TERMINATED ]; do
  sleep 0.2
done
echo "$vm finished"
