"""Generates the demo images deterministically into DIR: baseline and progressive JPEGs, an RGB
PNG, an RGBA PNG (alpha is dropped), a grayscale PNG (replicated to RGB), in several sizes,
plus a file that is not an image. Usage: make_demo_images.py DIR"""
import os
import sys

import numpy as np
from PIL import Image

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)


def scene(w, h, kind):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:  # sunset gradient with a disc
        img = np.stack([255 * x / w, 120 + 80 * np.sin(y / 17), 255 * (1 - y / h)], -1)
        img[(x - w * 0.6) ** 2 + (y - h * 0.4) ** 2 < (h / 5) ** 2] = [250, 220, 40]
    elif kind == 1:  # stripes
        img = np.stack([128 + 127 * np.sin(x / 5), 128 + 127 * np.cos(y / 9), 60 + 0 * x], -1)
    elif kind == 2:  # checkerboard
        c = ((x // 16 + y // 16) % 2) * 200 + 30
        img = np.stack([c, c * 0.5, 255 - c], -1)
    else:  # smooth noise
        n = rng.uniform(0, 255, size=(h // 8 + 1, w // 8 + 1, 3))
        img = np.kron(n, np.ones((8, 8, 1)))[:h, :w]
    return np.clip(img, 0, 255).astype(np.uint8)


shots = [("cat.jpg", 200, 160, 0), ("dog.JPEG", 320, 240, 1), ("bird.png", 96, 128, 2), ("car.jpeg", 640, 480, 3), ("leaf.png", 128, 128, 0)]
for name, w, h, kind in shots:
    img = Image.fromarray(scene(w, h, kind))
    path = os.path.join(out, name)
    if name == "dog.JPEG":
        img.save(path, quality=90, progressive=True)
    elif name.lower().endswith((".jpg", ".jpeg")):
        img.save(path, quality=90)
    else:
        img.save(path)
Image.fromarray(scene(150, 100, 1)).convert("RGBA").save(os.path.join(out, "flower.png"))
Image.fromarray(scene(100, 150, 2)).convert("L").save(os.path.join(out, "gray.png"))
with open(os.path.join(out, "notes.txt"), "w") as f:
    f.write("not an image; the workload lists only .jpg .jpeg .png\n")
with open(os.path.join(out, "broken.jpg"), "wb") as f:
    f.write(b"\xff\xd8\xff\xe0 this is not really a jpeg")
