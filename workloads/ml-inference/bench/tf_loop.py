"""The codelab's TensorFlow loop on DIR's images: per image decode_image, resize to 128x128,
convert_image_dtype, model(img[None]), argmax and top-5, with a Keras MobileNet V1 (alpha 1.0,
128x128, 1001 classes, random weights: the same architecture as the demo model). Prints
images per second."""
import os
import sys
import time

import numpy as np
import tensorflow as tf

images = sys.argv[1]
model = tf.keras.applications.MobileNet(input_shape=(128, 128, 3), alpha=1.0, weights=None, classes=1001)
files = sorted(f for f in os.listdir(images) if f.lower().endswith((".jpg", ".jpeg", ".png")))
start = time.perf_counter()
for f in files:
    content = tf.io.read_file(os.path.join(images, f))
    img = tf.image.decode_image(content, channels=3)
    img = tf.image.resize(img, [128, 128])
    img = tf.image.convert_image_dtype(img, tf.float32)
    logits = model(img[None])
    predicted = int(np.argmax(logits[0]))
    top = np.argsort(logits[0])[-5:][::-1]
print(len(files) / (time.perf_counter() - start))
