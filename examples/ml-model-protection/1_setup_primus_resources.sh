#!/usr/bin/env bash
# Primus: its project, the bucket holding the model, the service account that may read it,
# and the workload identity pool + provider that trusts Cloister's attestation tokens.
# Usage: 1_setup_primus_resources.sh MODEL_FILE
set -euo pipefail
source "$(dirname "$0")/config_env.sh"
model=$1
primus projects create "$PRIMUS_PROJECT_ID" >/dev/null
primus storage buckets create "gs://$PRIMUS_INPUT_STORAGE_BUCKET" --project "$PRIMUS_PROJECT_ID" >/dev/null
primus storage cp "$model" "gs://$PRIMUS_INPUT_STORAGE_BUCKET/$PRIMUS_MODEL_OBJECT"
primus iam service-accounts create "$PRIMUS_SERVICEACCOUNT" --project "$PRIMUS_PROJECT_ID" >/dev/null
primus storage buckets add-iam-policy-binding "gs://$PRIMUS_INPUT_STORAGE_BUCKET" \
  --member "serviceAccount:$PRIMUS_SERVICEACCOUNT@$PRIMUS_PROJECT_ID.iam.gserviceaccount.com" \
  --role roles/storage.objectViewer >/dev/null
primus iam workload-identity-pools create "$PRIMUS_WORKLOAD_IDENTITY_POOL" \
  --project "$PRIMUS_PROJECT_ID" --location global >/dev/null
number=$(primus projects describe "$PRIMUS_PROJECT_ID" --format 'value(projectNumber)')
primus iam service-accounts add-iam-policy-binding \
  "$PRIMUS_SERVICEACCOUNT@$PRIMUS_PROJECT_ID.iam.gserviceaccount.com" \
  --member "principalSet://iam.googleapis.com/projects/$number/locations/global/workloadIdentityPools/$PRIMUS_WORKLOAD_IDENTITY_POOL/*" \
  --role roles/iam.workloadIdentityUser >/dev/null
echo "Primus: model at gs://$PRIMUS_INPUT_STORAGE_BUCKET/$PRIMUS_MODEL_OBJECT, pool $PRIMUS_WORKLOAD_IDENTITY_POOL"
