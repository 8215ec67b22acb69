"""Generates the demo model deterministically: MobileNet V1 (depth multiplier 1.0, 128x128 RGB
input in NHWC, 1001 classes with index 0 = background), the codelab's architecture, as ONNX
with seeded random weights. Usage: make_demo_model.py OUT.onnx [--nchw]  (--nchw: the same model taking [batch, 3, H, W])

Random weights alone give degenerate outputs on 0..255 pixels (every image lands on the same
class), so they are conditioned: the first convolution maps 0..255 to roughly -1..1, every
layer's bias (batch norm folded) centres its output in the middle of ReLU6's range with unit
gain, so the network stays smooth (±1 pixel of noise moves nothing), and the
classifier is fitted to the features of seeded random images (centred and scaled per feature),
so logits spread (std ~3) and the top class varies from image to image.

The real model: download TF Hub's `imagenet/mobilenet_v1_100_128/classification` SavedModel
(the codelab's model.tar.gz), then `pip install tf2onnx tensorflow` and run
`python -m tf2onnx.convert --saved-model DIR --output model.onnx --opset 13`.
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

SEED = 20251201
SIZE = 128
CLASSES = 1001
# (depthwise stride, pointwise output channels) of MobileNet V1's 13 separable blocks.
# Activations are kept around the middle of ReLU6's range.
MID = 3.0
BLOCKS = [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512)] + [(1, 512)] * 5 + [(2, 1024), (1, 1024)]

rng = np.random.default_rng(SEED)
nodes, inits = [], []


def const(name, array):
    inits.append(numpy_helper.from_array(array.astype(np.float32), name))
    return name


def conv(x, name, w, b, stride, group=1):
    k = w.shape[-1]
    nodes.append(helper.make_node(
        "Conv", [x, const(name + "_w", w), const(name + "_b", b)], [name],
        strides=[stride, stride], pads=[k // 2] * 4, group=group))
    nodes.append(helper.make_node("Clip", [name, const(name + "_lo", np.array(0.0)), const(name + "_hi", np.array(6.0))], [name + "_relu6"]))
    return name + "_relu6"


def centred(x, name, w, stride, group=1, level=MID):
    """A convolution whose output sits at `level` when its input sits at MID: the bias cancels
    what the (random) weights make of the constant part, so ReLU6 stays in its linear range."""
    return conv(x, name, w, level - MID * w.sum(axis=(1, 2, 3)), stride, group)


def scaled(shape, fan_in):
    # Gain 0.9 per layer in the linear range: slightly contractive, so pixel noise fades while
    # differences between images, spread over the whole picture, survive global pooling.
    return rng.normal(0.0, 0.9 * np.sqrt(1.0 / fan_in), size=shape)


NCHW = "--nchw" in sys.argv[2:]
if NCHW:
    nodes.append(helper.make_node("Identity", ["input"], ["nchw"]))
else:
    nodes.append(helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]))
# First convolution: pixels 0..255 seen as -1..1, output centred at MID.
w = scaled((32, 3, 3, 3), 27) / 127.5
x = conv("nchw", "conv0", w * 3.0, MID - 3.0 * w.sum(axis=(1, 2, 3)) * 127.5, 2)
channels = 32
for i, (stride, out) in enumerate(BLOCKS):
    x = centred(x, f"dw{i}", scaled((channels, 1, 3, 3), 9), stride, group=channels)
    x = centred(x, f"pw{i}", scaled((out, channels, 1, 1), channels), 1)
    channels = out
nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], axis=1))


def model(outputs, extra_nodes=()):
    graph = helper.make_graph(
        nodes + list(extra_nodes), "mobilenet_v1_100_128_demo",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE] if NCHW else ["batch", SIZE, SIZE, 3])],
        outputs, inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="cloister-demo")
    m.ir_version = 8
    return m


# Fit the classifier to the features of seeded random images.
features_model = model([helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", channels])])
session = ort.InferenceSession(features_model.SerializeToString(), providers=["CPUExecutionProvider"])
# Probes: blocky random images (16-pixel cells), closer to photographs than pixel noise.
coarse = rng.uniform(0, 255, size=(48, SIZE // 16, SIZE // 16, 3))
probe = np.kron(coarse, np.ones((1, 16, 16, 1))).astype(np.float32)
if NCHW:
    probe = probe.transpose(0, 3, 1, 2)
feats = session.run(["features"], {"input": probe})[0]
mu, sigma = feats.mean(axis=0), feats.std(axis=0) + 1e-3
w = rng.normal(0.0, 3.0 / np.sqrt(channels), size=(CLASSES, channels)) / sigma
b = -(w @ mu)
nodes.append(helper.make_node("Gemm", ["features", const("fc_w", w), const("fc_b", b)], ["logits"], transB=1))
final = model([helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])])
onnx.checker.check_model(final)
onnx.save(final, sys.argv[1])
