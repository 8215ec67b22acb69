#!/usr/bin/env bash
# Installs what building and testing Cloister needs on Debian 12 (as root). Idempotent.
#   install-deps.sh [--test-servers]   (also the servers only the tests and scripts/replicas.sh
#                                       need: PostgreSQL, Garage, nginx)
set -euo pipefail
test_servers=false
[ "${1:-}" = "--test-servers" ] && test_servers=true

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust 1.92 or newer (https://rustup.rs), then run this again." >&2
  exit 1
fi

# Debian packages the build and the tests use. Skipped when all are present, so repeated runs
# and machines without network access to Debian still work.
# swtpm provides the vTPM; libtss2-dev is the TPM software stack the attester links;
# skopeo and podman are the real OCI clients the registry interop tests drive; runc runs
# the workload containers the launcher starts; iproute2's `ip` configures each instance's
# network namespaces; e2fsprogs' mkfs.ext4 and mount (util-linux) make and mount each
# instance's disk. The VM driver (--compute-driver vm): qemu-system-x86 runs the guests,
# ovmf is their firmware (it measures the kernel into the vTPM), linux-image-amd64 is the
# guest kernel (read from /boot when the guest image is built, never fetched at run time),
# binutils' objcopy strips the binary that goes into the initramfs. chromium and
# chromium-driver are the real browser (and its WebDriver) the console tests drive.
packages=(gcc pkg-config ca-certificates swtpm swtpm-tools libtss2-dev tpm2-tools skopeo podman runc iproute2
  e2fsprogs mount qemu-system-x86 ovmf linux-image-amd64 binutils chromium chromium-driver)
# PostgreSQL, the replicas' shared metadata store (the tests start their own server from its
# programs, a temporary cluster per test process, never the system's), and nginx, the load
# balancer of scripts/replicas.sh.
if $test_servers; then packages+=(postgresql nginx); fi
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

# Python packages: Google's client libraries for the wire-compatibility tests (google-cloud-kms
# brings grpcio: its default transport is gRPC); onnx, numpy and
# pillow generate the demo model and images; onnxruntime is the reference the workload's
# results are checked against, and its libonnxruntime.so is the engine the workload loads;
# cryptography (pinned: its x509 API checks PKI attestation token chains, 40+ needed);
# selenium is the WebDriver client the console's browser tests use (with Debian's driver);
# sev-snp-measure is the independent SEV-SNP launch digest the Rust computation is checked against.
if ! python3 -c 'import google.auth, google.cloud.storage, google.cloud.kms, requests, jwt, cryptography, onnx, numpy, PIL, onnxruntime, selenium, sevsnpmeasure; assert onnxruntime.__version__ == "1.24.4"; assert cryptography.__version__ == "48.0.0"' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check \
    'google-auth==2.62.2' 'google-cloud-storage==3.17.1' 'google-cloud-kms==3.18.0' 'requests>=2.31' 'PyJWT[crypto]==2.15.1' 'cryptography==48.0.0' \
    'onnxruntime==1.24.4' 'onnx==1.18.0' 'numpy<2.3' 'pillow==11.3.0' 'selenium==4.27.1' \
    'sev-snp-measure==0.0.12'
fi

# Garage, a real S3-compatible object store, for the S3 blob-store tests: built once from
# crates.io into ~/.cargo/bin (10 to 17 minutes on two cores) and reused afterwards.
if $test_servers && ! garage --version 2>/dev/null | grep -q 'cargo:2.5.0'; then
  cargo install --quiet --locked garage --version 2.5.0
fi
