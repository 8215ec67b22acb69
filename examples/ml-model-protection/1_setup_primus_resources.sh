#!/usr/bin/env bash
# Primus: its project, the bucket holding the model, the service account that may read it,
# the repository of the workload Primus authors, and the workload identity pool the provider
# will hang from. Beyond the codelab, the model is
# envelope-encrypted with a Cloud KMS key only that service account may decrypt with, so the
# bucket alone never holds the weights in the clear.
# Usage: 1_setup_primus_resources.sh MODEL_FILE
set -euo pipefail
source "$(dirname "$0")/config_env.sh"
model=$1
primus projects create "$PRIMUS_PROJECT_ID" >/dev/null
primus storage buckets create "gs://$PRIMUS_INPUT_STORAGE_BUCKET" --project "$PRIMUS_PROJECT_ID" >/dev/null
primus iam service-accounts create "$PRIMUS_SERVICEACCOUNT" --project "$PRIMUS_PROJECT_ID" >/dev/null
primus kms keyrings create "$PRIMUS_KEYRING" --project "$PRIMUS_PROJECT_ID" >/dev/null
primus kms keys create "$PRIMUS_KEY" --keyring "$PRIMUS_KEYRING" --project "$PRIMUS_PROJECT_ID" >/dev/null
primus kms keys add-iam-policy-binding --key "$PRIMUS_KEY" --keyring "$PRIMUS_KEYRING" --project "$PRIMUS_PROJECT_ID" \
  --member "serviceAccount:$PRIMUS_SERVICEACCOUNT@$PRIMUS_PROJECT_ID.iam.gserviceaccount.com" \
  --role roles/cloudkms.cryptoKeyDecrypter >/dev/null
primus kms encrypt-file --key "$PRIMUS_KEY" --keyring "$PRIMUS_KEYRING" --project "$PRIMUS_PROJECT_ID" \
  "$model" "$model.enc"
primus storage cp "$model.enc" "gs://$PRIMUS_INPUT_STORAGE_BUCKET/$PRIMUS_MODEL_OBJECT"
primus storage buckets add-iam-policy-binding "gs://$PRIMUS_INPUT_STORAGE_BUCKET" \
  --member "serviceAccount:$PRIMUS_SERVICEACCOUNT@$PRIMUS_PROJECT_ID.iam.gserviceaccount.com" \
  --role roles/storage.objectViewer >/dev/null
# Primus also authors the workload: its images live in Primus's own repository.
primus artifacts repositories create "$PRIMUS_ARTIFACT_REPOSITORY" --project "$PRIMUS_PROJECT_ID" \
  --repository-format docker --location "$PRIMUS_PROJECT_REPOSITORY_REGION" >/dev/null
primus iam workload-identity-pools create "$PRIMUS_WORKLOAD_IDENTITY_POOL" \
  --project "$PRIMUS_PROJECT_ID" --location global >/dev/null
number=$(primus projects describe "$PRIMUS_PROJECT_ID" --format 'value(projectNumber)')
primus iam service-accounts add-iam-policy-binding \
  "$PRIMUS_SERVICEACCOUNT@$PRIMUS_PROJECT_ID.iam.gserviceaccount.com" \
  --member "principalSet://iam.googleapis.com/projects/$number/locations/global/workloadIdentityPools/$PRIMUS_WORKLOAD_IDENTITY_POOL/*" \
  --role roles/iam.workloadIdentityUser >/dev/null
echo "Primus: model at gs://$PRIMUS_INPUT_STORAGE_BUCKET/$PRIMUS_MODEL_OBJECT, pool $PRIMUS_WORKLOAD_IDENTITY_POOL"
