#!/usr/bin/env bash
# Prints the path of libonnxruntime.so from the onnxruntime PyPI wheel (scripts/install-deps.sh
# installs it): the ONNX Runtime the workload loads.
set -euo pipefail
python3 - <<'PY'
import glob, os, onnxruntime
found = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))
if not found:
    raise SystemExit("the onnxruntime wheel has no libonnxruntime.so")
print(found[0])
PY
