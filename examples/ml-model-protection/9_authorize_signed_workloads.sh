#!/usr/bin/env bash
# Primus trusts every release its key signed, instead of one digest: a second provider in its
# pool with the attribute condition Google's signed container image codelab documents,
# verbatim (the key's fingerprint among the algorithm:key_id of the token's verified image
# signatures), plus the codelab's swname and service-account clauses. A new signed release
# needs no edit here. Usage: 9_authorize_signed_workloads.sh FINGERPRINT (ALGORITHM:KEY_ID)
set -euo pipefail
source "$(dirname "$0")/config_env.sh"
PUBLIC_KEY_FINGERPRINT=$1
condition="assertion.swname == 'CONFIDENTIAL_SPACE' && ['${PUBLIC_KEY_FINGERPRINT}'].exists(fingerprint, fingerprint in assertion.submods.container.image_signatures.map(sig, sig.signature_algorithm+':'+sig.key_id)) && '${WORKLOAD_SERVICEACCOUNT}@${SECUNDUS_PROJECT_ID}.iam.gserviceaccount.com' in assertion.google_service_accounts"
primus iam workload-identity-pools providers create-oidc "$PRIMUS_SIGNED_WIP_PROVIDER" \
  --workload-identity-pool "$PRIMUS_WORKLOAD_IDENTITY_POOL" --project "$PRIMUS_PROJECT_ID" --location global \
  --issuer-uri "$(endpoint)" --allowed-audiences "https://sts.googleapis.com" \
  --attribute-mapping "google.subject=assertion.sub" --attribute-condition "$condition" >/dev/null
echo "Primus trusts workloads signed by $PUBLIC_KEY_FINGERPRINT (provider $PRIMUS_SIGNED_WIP_PROVIDER)"
