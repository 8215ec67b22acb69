"""Checks the workload against ONNX Runtime (Python, from PyPI) on the same input tensors:
identical top-5 and logits within 1e-3. Usage: reference.py MODEL TENSORS_DIR (prints JSON)."""
import json
import os
import sys

import numpy as np
import onnxruntime as ort

model, tensors = sys.argv[1:3]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
shape = session.get_inputs()[0].shape
report = {}
for name in sorted(f[: -len(".input")] for f in os.listdir(tensors) if f.endswith(".input")):
    x = np.fromfile(os.path.join(tensors, name + ".input"), dtype="<f4").reshape(1, shape[1], shape[2], shape[3])
    ours = np.fromfile(os.path.join(tensors, name + ".logits"), dtype="<f4")
    ref = session.run(None, {session.get_inputs()[0].name: x})[0][0]
    # The demo model's conditioning: ±1 level of pixel noise leaves the top-5 unchanged.
    noisy = np.clip(x + np.random.default_rng(len(report)).integers(-1, 2, size=x.shape), 0, 255).astype(np.float32)
    ref_noisy = session.run(None, {session.get_inputs()[0].name: noisy})[0][0]
    report[name] = {
        "top5_stable_under_noise": bool((np.argsort(ref)[-5:] == np.argsort(ref_noisy)[-5:]).all()),
        "max_abs_diff": float(np.max(np.abs(ours - ref))),
        "top5_ours": [int(i) for i in np.argsort(ours)[-5:][::-1]],
        "top5_ref": [int(i) for i in np.argsort(ref)[-5:][::-1]],
    }
print(json.dumps(report))
