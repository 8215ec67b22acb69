#!/usr/bin/env bash
# The whole codelab on a fresh embedded server in a temp dir: Primus protects its model,
# Secundus runs the authorized workload on a VTPM instance and gets the result, then an
# unauthorized workload (another image digest) is refused by Primus's attribute condition.
# Exits 0 only when both outcomes are as expected.
#
# With DEMO_SIGNED_RELEASE=1 (`cloister demo --signed-release`), the signed-release act of
# Google's signed container image codelab follows: Primus signs its workload with its own key
# and trusts the key instead of one digest; a new release signed by that key runs and reads
# the model with no policy edit, while an unsigned image and one signed by another key are
# refused with Google's text. Exits 0 only when all three outcomes are as expected.
#
# With CLOISTER_ENDPOINT (and CLOISTER_ADMIN_CREDENTIAL, the bootstrap admin's credential file)
# it runs against that deployment instead (scripts/replicas.sh: two replicas behind a load
# balancer, so consecutive steps land on different replicas).
#
# Needs: CLOISTER (the cloister binary), ML_INFERENCE (the workload binary), ORT_LIBRARY
# (libonnxruntime.so), python3 with onnx, onnxruntime, numpy and pillow (scripts/install-deps.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${CLOISTER:?set CLOISTER to the cloister binary}" "${ML_INFERENCE:?set ML_INFERENCE}" "${ORT_LIBRARY:?set ORT_LIBRARY}"
export CLOISTER
work=$(mktemp -d)
export CLOISTER_CONFIG_DIR="$work/config"
log="$work/server.log"
started=$(date +%s%N)
step() { printf '==> %s\n' "$*"; }
serial() {
  "$CLOISTER" --profile secundus compute instances get-serial-port-output "$1" \
    --project "${SECUNDUS_PROJECT_ID:-secundus-bank}" --zone "${SECUNDUS_PROJECT_ZONE:-us-west1-b}"
}

if [ -n "${CLOISTER_ENDPOINT:-}" ]; then
  # An existing deployment (scripts/replicas.sh): its endpoint and bootstrap admin credential.
  : "${CLOISTER_ADMIN_CREDENTIAL:?set CLOISTER_ADMIN_CREDENTIAL with CLOISTER_ENDPOINT}"
  endpoint=$CLOISTER_ENDPOINT admin_credential=$CLOISTER_ADMIN_CREDENTIAL server=
else
  "$CLOISTER" server --listen 127.0.0.1:0 --data-dir "$work/data" --log-format json 2>"$log" &
  server=$!
fi
cleanup() {
  "$here/7_cleanup.sh" workload-vm unauthorized-vm empty-vm tampered-vm \
    signed-release-vm unsigned-vm other-key-vm >/dev/null 2>&1 || true
  if [ -n "$server" ]; then kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
if [ -n "$server" ]; then
  for _ in $(seq 600); do grep -q '"cloister server listening"' "$log" 2>/dev/null && break; sleep 0.05; done
  address=$(grep -o '"address":"[^"]*"' "$log" | head -1 | cut -d'"' -f4)
  [ -n "$address" ] || { cat "$log" >&2; exit 1; }
  endpoint="http://$address" admin_credential="$work/data/bootstrap-admin-credential.json"
  step "Cloister listening at $endpoint (embedded default, data in $work/data)"
else
  step "Cloister at $endpoint"
fi

step "the platform admin creates the two companies' users; each gets its own CLI profile"
"$CLOISTER" config profiles create admin --endpoint "$endpoint" >/dev/null 2>&1
"$CLOISTER" --profile admin auth login --credential-file "$admin_credential" >/dev/null 2>&1
for who in primus secundus; do
  "$CLOISTER" --profile admin iam users create "$who@example.com" --credential-file "$work/$who.json" >/dev/null 2>&1
  "$CLOISTER" config profiles create "$who" --endpoint "$endpoint" >/dev/null 2>&1
  "$CLOISTER" --profile "$who" auth login --credential-file "$work/$who.json" >/dev/null 2>&1
done

step "generating the demo model (MobileNet V1, 128x128, 1001 classes) and images"
python3 "$here/../../workloads/ml-inference/demo/make_demo_model.py" "$work/model.onnx"
python3 "$here/../../workloads/ml-inference/demo/make_demo_images.py" "$work/images"

step "Primus: project, service account, KMS key, the model envelope-encrypted in its bucket, workload repository, workload identity pool"
"$here/1_setup_primus_resources.sh" "$work/model.onnx"
step "Secundus: project, image and result buckets, workload service account"
"$here/2_setup_secundus_resources.sh" "$work/images"
step "Primus, the workload author, packages and publishes the workload image"
digest=$("$here/3_create_workload.sh" "$ML_INFERENCE" "$ORT_LIBRARY" latest)
echo "workload image digest: $digest"
step "Primus authorizes exactly that image with the codelab's attribute condition"
"$here/4_authorize_workload.sh" "$digest"
step "Secundus runs the workload on a VTPM instance"
"$here/5_run_workload.sh" latest workload-vm
step "the result object"
result=$("$here/6_view_results.sh") || { echo "FAIL: no result; the instance's serial console:" >&2; serial workload-vm >&2; exit 1; }
printf '%s\n' "$result"
echo "$result" | grep -q "^Image: cat.jpg, Response: {'predicted_class': " || { echo "FAIL: no classification in the result" >&2; exit 1; }

step "a workload image Primus has not authorized (another digest) runs and is refused by Primus's condition"
other=$("$here/3_create_workload.sh" "$ML_INFERENCE" "$ORT_LIBRARY" unauthorized "variant=unauthorized")
echo "unauthorized image digest: $other"
"$here/5_run_workload.sh" unauthorized unauthorized-vm
result=$("$here/6_view_results.sh") || { serial unauthorized-vm >&2; exit 1; }
printf '%s\n' "$result"
echo "$result" | grep -q "^Error: .*The given credential is rejected by the attribute condition." || { echo "FAIL: the unauthorized run was not refused" >&2; exit 1; }

if [ "${DEMO_SIGNED_RELEASE:-0}" = 1 ]; then
  source "$here/config_env.sh"
  export PRIMUS_SIGNING_KEY_FILE="$work/primus-signing-key.pem"
  # Each run under the signed provider starts with no result object, so a check never reads
  # the one before it.
  signed_run() {
    secundus storage rm "gs://$SECUNDUS_RESULT_STORAGE_BUCKET/result" >/dev/null 2>&1 || true
    PRIMUS_WIP_PROVIDER=$PRIMUS_SIGNED_WIP_PROVIDER "$here/5_run_workload.sh" "$@"
  }
  step "signed release: Primus signs its workload with its own key, and a second provider trusts the key instead of one digest"
  fingerprint=$("$here/8_sign_workload.sh" latest)
  echo "Primus's signing key: $fingerprint"
  "$here/9_authorize_signed_workloads.sh" "$fingerprint"
  step "Primus publishes a new release (another digest) and signs it; Secundus runs it with tee-signed-image-repos, no policy edit"
  release=$("$here/3_create_workload.sh" "$ML_INFERENCE" "$ORT_LIBRARY" release-2 "variant=release-2")
  echo "new release digest: $release"
  [ "$release" != "$digest" ] || { echo "FAIL: the new release has the first one's digest" >&2; exit 1; }
  "$here/8_sign_workload.sh" release-2 >/dev/null
  signed_run release-2 signed-release-vm "$(primus_signature_repo)"
  result=$("$here/6_view_results.sh") || { serial signed-release-vm >&2; exit 1; }
  printf '%s\n' "$result"
  echo "$result" | grep -q "^Image: cat.jpg, Response: {'predicted_class': " || { echo "FAIL: the signed release got no model" >&2; serial signed-release-vm >&2; exit 1; }

  step "an unsigned image (the unauthorized one) is refused by the signature condition"
  signed_run unauthorized unsigned-vm "$(primus_signature_repo)"
  result=$("$here/6_view_results.sh") || { serial unsigned-vm >&2; exit 1; }
  printf '%s\n' "$result"
  echo "$result" | grep -q "^Error: .*The given credential is rejected by the attribute condition." || { echo "FAIL: the unsigned image was not refused" >&2; exit 1; }

  step "the same image signed by Secundus's own key (its repository listed too) is refused"
  secundus_repo="$(registry_host)/$SECUNDUS_PROJECT_ID/secundus-cosign-repo/$WORKLOAD_IMAGE_NAME"
  secundus artifacts repositories create secundus-cosign-repo --project "$SECUNDUS_PROJECT_ID" \
    --location "$PRIMUS_PROJECT_REPOSITORY_REGION" --repository-format docker >/dev/null
  secundus artifacts repositories add-iam-policy-binding secundus-cosign-repo --project "$SECUNDUS_PROJECT_ID" \
    --location "$PRIMUS_PROJECT_REPOSITORY_REGION" --role roles/artifactregistry.reader \
    --member "serviceAccount:$WORKLOAD_SERVICEACCOUNT@$SECUNDUS_PROJECT_ID.iam.gserviceaccount.com" >/dev/null
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/secundus-signing-key.pem" 2>/dev/null
  other_key=$(secundus artifacts sign "$(registry_host)/$PRIMUS_PROJECT_ID/$PRIMUS_ARTIFACT_REPOSITORY/$WORKLOAD_IMAGE_NAME@$other" \
    --key "$work/secundus-signing-key.pem" --signature-repo "$secundus_repo" 2>/dev/null)
  echo "Secundus's signing key: $other_key"
  signed_run unauthorized other-key-vm "$(primus_signature_repo),$secundus_repo"
  result=$("$here/6_view_results.sh") || { serial other-key-vm >&2; exit 1; }
  printf '%s\n' "$result"
  echo "$result" | grep -q "^Error: .*The given credential is rejected by the attribute condition." || { echo "FAIL: the image signed by another key was not refused" >&2; exit 1; }
  step "Primus reads why in its audit log: the signature clause looked for its key among the token's signatures"
  denied=$(primus audit list --project "$PRIMUS_PROJECT_ID" --permission sts.googleapis.com/token.exchange \
    --decision deny --format 'value(id)' | tail -1)
  why=$(primus audit describe "$denied")
  printf '%s\n' "$why" | awk '/^(PASS|FAIL|ERROR)/ { show = /^FAIL/ } show'
  { echo "$why" | grep -q "^FAIL .*exists(fingerprint" && echo "$why" | grep -qF "[\"$other_key\"]"; } ||
    { echo "FAIL: the audit entry does not show the signature clause refusing Secundus's key" >&2; printf '%s\n' "$why" >&2; exit 1; }
  "$here/7_cleanup.sh" signed-release-vm unsigned-vm other-key-vm
fi

if [ "${DEMO_REFUSALS:-0}" = 1 ]; then
  # Beyond the story (the test suite asks for these): what the authorized workload does with
  # an empty image bucket and with a model whose ciphertext was tampered with.
  step "refusal checks: an empty image bucket, then a tampered encrypted model"
  source "$here/config_env.sh"
  secundus storage buckets create gs://secundus-empty --project "$SECUNDUS_PROJECT_ID" >/dev/null 2>&1
  secundus storage buckets add-iam-policy-binding gs://secundus-empty \
    --member "serviceAccount:$WORKLOAD_SERVICEACCOUNT@$SECUNDUS_PROJECT_ID.iam.gserviceaccount.com" \
    --role roles/storage.objectViewer >/dev/null 2>&1
  SECUNDUS_INPUT_STORAGE_BUCKET=secundus-empty "$here/5_run_workload.sh" latest empty-vm
  result=$("$here/6_view_results.sh")
  [ -z "$result" ] || { echo "FAIL: an empty bucket gave a result: $result" >&2; exit 1; }
  echo "empty bucket: empty result"
  primus storage cp "gs://$PRIMUS_INPUT_STORAGE_BUCKET/$PRIMUS_MODEL_OBJECT" "$work/model.enc" 2>/dev/null
  python3 -c "import sys; b = bytearray(open(sys.argv[1], 'rb').read()); b[len(b) // 2] ^= 1; open(sys.argv[1], 'wb').write(b)" "$work/model.enc"
  primus storage cp "$work/model.enc" "gs://$PRIMUS_INPUT_STORAGE_BUCKET/$PRIMUS_MODEL_OBJECT" 2>/dev/null
  "$here/5_run_workload.sh" latest tampered-vm
  result=$("$here/6_view_results.sh")
  printf '%s\n' "$result"
  echo "$result" | grep -q "^Error: the encrypted model does not decrypt" || { echo "FAIL: a tampered model was not refused" >&2; exit 1; }
  "$here/7_cleanup.sh" empty-vm tampered-vm
fi

elapsed=$(( ($(date +%s%N) - started) / 1000000 ))
outcome="the authorized workload got the model, the unauthorized one was refused"
[ "${DEMO_SIGNED_RELEASE:-0}" = 1 ] && outcome+="; the release signed by Primus's key got it with no policy edit, the unsigned one and the one signed by another key were refused"
step "done in ${elapsed} ms: $outcome"
if [ -n "$server" ] && [ "${DEMO_KEEP:-0}" = 1 ]; then
  # Keep the server (and its data) for a look at the story in the console.
  trap - EXIT
  step "the console: $endpoint/console/ (each link below signs in once, within five minutes)"
  for who in primus secundus; do
    printf '    %s: %s\n' "$who" "$("$CLOISTER" --profile "$who" auth console-login 2>/dev/null)"
  done
  step "the server keeps serving (pid $server, data in $work); stop it with: kill $server; rm -rf $work"
  echo "    CLI: CLOISTER_CONFIG_DIR=$CLOISTER_CONFIG_DIR $CLOISTER --profile primus …"
else
  step "the console was at $endpoint/console/ (\`cloister demo --keep\` keeps the server to look at it)"
fi
