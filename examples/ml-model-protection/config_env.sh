# The codelab's names (https://codelabs.developers.google.com/codelabs/confidential-space-ml-model-protection),
# for Cloister. Source this file. Two CLI profiles stand for the two companies; each holds
# only its own company's permissions.
: "${CLOISTER:=cloister}"
export PRIMUS_PROJECT_ID=${PRIMUS_PROJECT_ID:-primus-bank}
export SECUNDUS_PROJECT_ID=${SECUNDUS_PROJECT_ID:-secundus-bank}
export PRIMUS_INPUT_STORAGE_BUCKET=${PRIMUS_INPUT_STORAGE_BUCKET:-primus-ml-models}
export SECUNDUS_INPUT_STORAGE_BUCKET=${SECUNDUS_INPUT_STORAGE_BUCKET:-secundus-images}
export SECUNDUS_RESULT_STORAGE_BUCKET=${SECUNDUS_RESULT_STORAGE_BUCKET:-secundus-results}
export PRIMUS_SERVICEACCOUNT=${PRIMUS_SERVICEACCOUNT:-primus-sa}
export PRIMUS_WORKLOAD_IDENTITY_POOL=${PRIMUS_WORKLOAD_IDENTITY_POOL:-primus-pool}
export PRIMUS_WIP_PROVIDER=${PRIMUS_WIP_PROVIDER:-primus-wip-provider}
export PRIMUS_ARTIFACT_REPOSITORY=${PRIMUS_ARTIFACT_REPOSITORY:-primus-workloads}
export PRIMUS_PROJECT_REPOSITORY_REGION=${PRIMUS_PROJECT_REPOSITORY_REGION:-us}
export WORKLOAD_SERVICEACCOUNT=${WORKLOAD_SERVICEACCOUNT:-workload-sa}
export WORKLOAD_IMAGE_NAME=${WORKLOAD_IMAGE_NAME:-workload-container}
export WORKLOAD_IMAGE_TAG=${WORKLOAD_IMAGE_TAG:-latest}
export WORKLOAD_VM=${WORKLOAD_VM:-workload-vm}
export SECUNDUS_PROJECT_ZONE=${SECUNDUS_PROJECT_ZONE:-us-west1-b}
export PRIMUS_MODEL_OBJECT=${PRIMUS_MODEL_OBJECT:-mobilenet_v1_100_128.onnx}
export PRIMUS_KEYRING=${PRIMUS_KEYRING:-primus-keyring}
export PRIMUS_KEY=${PRIMUS_KEY:-model-key}
# The signed-release act (Google's signed container image codelab): Primus's signing key (a PEM
# file here; the codelab keeps it in Cloud KMS), the repository its signatures go to, and the
# provider that trusts the key instead of one digest.
export PRIMUS_SIGNING_KEY_FILE=${PRIMUS_SIGNING_KEY_FILE:-primus-signing-key.pem}
export PRIMUS_COSIGN_REPOSITORY=${PRIMUS_COSIGN_REPOSITORY:-primus-cosign-repo}
export PRIMUS_SIGNED_WIP_PROVIDER=${PRIMUS_SIGNED_WIP_PROVIDER:-primus-signed-wip-provider}

primus() { "$CLOISTER" --profile primus "$@"; }
secundus() { "$CLOISTER" --profile secundus "$@"; }
endpoint() { "$CLOISTER" config profiles describe primus --format 'value(endpoint)'; }
registry_host() { endpoint | sed -e 's#^https\?://##'; }
workload_image() { echo "$(registry_host)/$PRIMUS_PROJECT_ID/$PRIMUS_ARTIFACT_REPOSITORY/$WORKLOAD_IMAGE_NAME:$1"; }
# Where Primus's signatures of the workload live (what tee-signed-image-repos names).
primus_signature_repo() { echo "$(registry_host)/$PRIMUS_PROJECT_ID/$PRIMUS_COSIGN_REPOSITORY/$WORKLOAD_IMAGE_NAME"; }
