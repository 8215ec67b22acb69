#!/usr/bin/env bash
# Installs what building and testing Cloister needs on Debian 12 (as root). Idempotent.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust 1.89 or newer (https://rustup.rs), then run this again." >&2
  exit 1
fi

# Debian packages the build and the tests use. Skipped when all are present, so repeated runs
# and machines without network access to Debian still work.
# swtpm provides the vTPM; libtss2-dev is the TPM software stack the attester links;
# skopeo and podman are the real OCI clients the registry interop tests drive; runc runs
# the workload containers the launcher starts.
packages=(gcc pkg-config ca-certificates swtpm swtpm-tools libtss2-dev tpm2-tools skopeo podman runc)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# Python packages the wire-compatibility tests drive Cloister with (Google's own client library).
if ! python3 -c 'import google.auth, google.cloud.storage, requests, jwt, cryptography' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check \
    'google-auth==2.62.2' 'google-cloud-storage==3.17.1' 'requests>=2.31' 'PyJWT[crypto]==2.15.1'
fi
