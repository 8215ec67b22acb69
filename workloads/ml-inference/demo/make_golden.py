"""Writes the preprocessing golden file with TensorFlow (run once, in a venv with TensorFlow;
the output is committed, TensorFlow is not): for each demo image, the codelab's pipeline —
tf.image.decode_image(channels=3), tf.image.resize to 16x16 (bilinear, half-pixel centers),
convert_image_dtype(float32) — as a flat list. 16x16 keeps the file small while exercising
every part of the kernel. Usage: make_golden.py IMAGES_DIR OUT.json"""
import json
import os
import sys

import tensorflow as tf

images, out = sys.argv[1:3]
golden = {}
for name in sorted(os.listdir(images)):
    if not name.lower().endswith((".jpg", ".jpeg", ".png")) or name == "broken.jpg":
        continue
    img = tf.image.decode_image(tf.io.read_file(os.path.join(images, name)), channels=3)
    img = tf.image.resize(img, [16, 16])
    img = tf.image.convert_image_dtype(img, tf.float32)
    golden[name] = [round(float(v), 4) for v in img.numpy().reshape(-1)]
with open(out, "w") as f:
    json.dump({"tensorflow": tf.__version__, "size": 16, "images": golden}, f, separators=(",", ":"))
