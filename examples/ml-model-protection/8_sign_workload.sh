#!/usr/bin/env bash
# Primus, as the party that reviews the workload, signs a release it has reviewed (Google's
# signed container image codelab): with its own P-256 signing key (made on first use; the
# codelab keeps it in Cloud KMS, Cloister's signer reads a PEM file), into its own signature
# repository, which Secundus's workload service account may read (the launcher fetches
# signatures with that account's token). Prints the key's fingerprint as an attribute
# condition names it: ECDSA_P256_SHA256:KEY_ID (KEY_ID = SHA-256 of the public key's DER).
# Usage: 8_sign_workload.sh TAG
set -euo pipefail
source "$(dirname "$0")/config_env.sh"
tag=$1
if [ ! -f "$PRIMUS_SIGNING_KEY_FILE" ]; then
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PRIMUS_SIGNING_KEY_FILE")
fi
at=(--project "$PRIMUS_PROJECT_ID" --location "$PRIMUS_PROJECT_REPOSITORY_REGION")
if ! primus artifacts repositories describe "$PRIMUS_COSIGN_REPOSITORY" "${at[@]}" >/dev/null 2>&1; then
  primus artifacts repositories create "$PRIMUS_COSIGN_REPOSITORY" "${at[@]}" --repository-format docker >/dev/null
  primus artifacts repositories add-iam-policy-binding "$PRIMUS_COSIGN_REPOSITORY" "${at[@]}" \
    --member "serviceAccount:$WORKLOAD_SERVICEACCOUNT@$SECUNDUS_PROJECT_ID.iam.gserviceaccount.com" \
    --role roles/artifactregistry.reader >/dev/null
fi
primus artifacts sign "$(workload_image "$tag")" --key "$PRIMUS_SIGNING_KEY_FILE" \
  --signature-repo "$(primus_signature_repo)"
