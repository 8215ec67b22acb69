#!/usr/bin/env bash
# Primus trusts exactly this workload: the codelab's attribute condition, verbatim.
# Usage: 4_authorize_workload.sh WORKLOAD_IMAGE_DIGEST
set -euo pipefail
source "$(dirname "$0")/config_env.sh"
WORKLOAD_IMAGE_DIGEST=$1
condition="assertion.submods.container.image_digest == '${WORKLOAD_IMAGE_DIGEST}' && '${WORKLOAD_SERVICEACCOUNT}@${SECUNDUS_PROJECT_ID}.iam.gserviceaccount.com' in assertion.google_service_accounts && assertion.swname == 'CONFIDENTIAL_SPACE' && 'STABLE' in assertion.submods.confidential_space.support_attributes"
primus iam workload-identity-pools providers create-oidc "$PRIMUS_WIP_PROVIDER" \
  --workload-identity-pool "$PRIMUS_WORKLOAD_IDENTITY_POOL" --project "$PRIMUS_PROJECT_ID" --location global \
  --issuer-uri "$(endpoint)" --allowed-audiences "https://sts.googleapis.com" \
  --attribute-mapping "google.subject=assertion.sub" --attribute-condition "$condition" >/dev/null
echo "Primus authorized workloads with digest $WORKLOAD_IMAGE_DIGEST"
