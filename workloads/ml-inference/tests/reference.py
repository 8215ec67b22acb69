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
    report[name] = {
        "max_abs_diff": float(np.max(np.abs(ours - ref))),
        "top5_ours": [int(i) for i in np.argsort(ours)[-5:][::-1]],
        "top5_ref": [int(i) for i in np.argsort(ref)[-5:][::-1]],
    }
print(json.dumps(report))
