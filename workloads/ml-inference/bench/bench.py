"""Side by side on the same images, in one run: the workload end to end (decode → resize →
batched ONNX Runtime → result text) and its model stage, versus ONNX Runtime from Python at
batch 1 and 32 on the same input tensors, and versus the codelab's TensorFlow loop (decode,
resize, convert, model per image) when TensorFlow is importable (the bench's venv).

Usage: bench.py WORKLOAD_BIN ORT_LIBRARY WORKDIR [N_IMAGES]
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

workload, ort_lib, work = sys.argv[1:4]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 256
here = os.path.dirname(os.path.abspath(__file__))
model = os.path.join(work, "model.onnx")
images = os.path.join(work, "images")
subprocess.run([sys.executable, os.path.join(here, "..", "demo", "make_demo_model.py"), model], check=True)
os.makedirs(images, exist_ok=True)
from PIL import Image  # noqa: E402

rng = np.random.default_rng(3)
for i in range(n):
    coarse = rng.uniform(0, 255, size=(30, 40, 3))
    img = np.kron(coarse, np.ones((8, 8, 1))).astype(np.uint8)  # 320x240
    Image.fromarray(img).save(os.path.join(images, f"img{i:04}.jpg"), quality=90)

env = dict(os.environ, ORT_DYLIB_PATH=ort_lib)
best_total, best_model = None, None
for _ in range(3):
    t = time.perf_counter()
    out = subprocess.run([workload, "classify", "--model", model, "--images", images, "--report-timing"],
                         env=env, capture_output=True, text=True, check=True)
    total = time.perf_counter() - t
    model_ms = float(out.stderr.split(" in ")[1].split(" ms")[0])
    best_total = total if best_total is None else min(best_total, total)
    best_model = model_ms if best_model is None else min(best_model, model_ms)
ours_e2e = n / best_total
ours_model = n / (best_model / 1000)

# ONNX Runtime (Python) on the workload's own input tensors.
tensors = os.path.join(work, "tensors")
subprocess.run([workload, "tensors", "--model", model, "--images", images, "--out", tensors], env=env, check=True)
x = np.stack([np.fromfile(os.path.join(tensors, f), dtype="<f4").reshape(128, 128, 3)
              for f in sorted(os.listdir(tensors)) if f.endswith(".input")])
opts = ort.SessionOptions()
opts.intra_op_num_threads = os.cpu_count()
session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name


def ort_rate(batch):
    best = None
    for _ in range(3):
        t = time.perf_counter()
        for i in range(0, len(x), batch):
            session.run(None, {name: x[i:i + batch]})
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    return len(x) / best


ort1, ort32 = ort_rate(1), ort_rate(32)
def ours_alone(batch):
    out = subprocess.run([workload, "bench-model", "--model", model, "--tensors", tensors, "--batch", str(batch)],
                         env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


# The workload's default batch (8) and, for reference, batch 32.
ours_model_alone, ours_model_alone32 = ours_alone(8), ours_alone(32)
report = {
    "images": n,
    "workload_end_to_end_images_per_s": round(ours_e2e, 1),
    "workload_model_stage_in_pipeline_images_per_s": round(ours_model, 1),
    "workload_model_stage_alone_batch8_images_per_s": round(ours_model_alone, 1),
    "workload_model_stage_alone_batch32_images_per_s": round(ours_model_alone32, 1),
    "onnxruntime_python_batch1_images_per_s": round(ort1, 1),
    "onnxruntime_python_batch32_images_per_s": round(ort32, 1),
    "model_stage_vs_ort_batch32": round(ours_model_alone / ort32, 2),
}
tf_python = os.environ.get("TF_PYTHON")
if tf_python:
    tf = subprocess.run([tf_python, os.path.join(here, "tf_loop.py"), images], capture_output=True, text=True)
    if tf.returncode == 0:
        rate = float(tf.stdout.strip())
        report["tensorflow_codelab_loop_images_per_s"] = round(rate, 1)
        report["end_to_end_vs_tensorflow_loop"] = round(ours_e2e / rate, 1)
    else:
        report["tensorflow"] = "not run: " + tf.stderr.strip().splitlines()[-1]
print(json.dumps(report, indent=2))
