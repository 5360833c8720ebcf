#!/usr/bin/env python3
"""Golden pool3 features of pytorch-fid's Inception-v3 with pseudo-random weights, for the
architecture parity test (crates/diffuse-core/tests/inception.rs) without a 90 MB weight fixture.

Every weight and input value is a function of its tensor's name and its element index: a counter-
based hash (splitmix64's finaliser of FNV-1a(name) + (index + 1)·γ) turned into a uniform u ∈ [0, 1)
and scaled by the tensor's role (`random_tensor`). tests/inception.rs implements the same hash, so
it rebuilds the weights and inputs exactly instead of reading them. Scales keep activations O(1)
through all 94 convolutions: He-uniform conv weights, γ ∈ [0.8, 1.2), β ∈ [−0.1, 0.1), running mean
∈ [−0.1, 0.1), running variance ∈ [0.5, 1.5).

The script
  1. builds the random state_dict of pytorch-fid's `fid_inception_v3()` (with its 1008-way `fc`, which
     pool3 does not use), saves it as a .pth and converts it with tools/reference/convert_inception.py,
     checking that the converter keeps the feature tensors bit for bit;
  2. runs pytorch-fid's `InceptionV3([3], resize_input=True, normalize_input=True)` on those weights
     (float64, so the reference itself has no float32 round-off; the float32 run's distance from it
     is recorded for scale) on two 1×28×28 and two 3×32×32 images and one 3×320×304 image in
     [−1, 1] (diffuse's range: pytorch-fid gets (x + 1) / 2; grayscale repeated to RGB, as
     pytorch-fid's PIL `.convert("RGB")` does);
  3. writes crates/diffuse-core/tests/fixtures/inception.json: the converted file's tensor names and
     shapes (what the Rust loader must accept, no more, no fewer), the inputs' names and shapes, the
     first values of a few generated tensors (to catch a hash mismatch directly) and the 2048
     features of each image.

Run (from the repository root, with `pip install -r tools/reference/requirements.txt`; no network):
    python tools/reference/inception_fixtures.py
"""

import json
import math
import pathlib
import sys
import tempfile
from unittest import mock

import numpy as np
import torch
from pytorch_fid import inception
from safetensors.torch import load_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from convert_inception import convert, fid_inception  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/diffuse-core/tests/fixtures/inception.json"

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3

# Inputs in diffuse's [−1, 1] range: (name, [N, C, H, W]); the last one is resized down, to a
# square from a non-square image.
INPUTS = [
    ("input/gray", [2, 1, 28, 28]),
    ("input/rgb", [2, 3, 32, 32]),
    ("input/large", [1, 3, 320, 304]),
]
# Tensors whose first generated values the fixture records.
SPOT_CHECKS = ["Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.bn.running_var", "input/rgb"]
SPOT_COUNT = 8


def fnv1a(name):
    """FNV-1a, 64 bits, of the UTF-8 bytes of `name`: the seed of its stream."""
    h = FNV_OFFSET
    for byte in name.encode():
        h = ((h ^ byte) * FNV_PRIME) & MASK
    return h


def splitmix64(z):
    """splitmix64's output function on uint64 counters (numpy wraps modulo 2^64)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform(name, count):
    """u_i ∈ [0, 1) for i < count: the top 53 bits of splitmix64(seed + (i + 1)·γ)."""
    index = np.arange(1, count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = splitmix64(np.uint64(fnv1a(name)) + index * np.uint64(GAMMA))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def random_tensor(name, shape):
    """The pseudo-random value of state_dict entry (or input) `name`, as float32."""
    count = math.prod(shape)
    u = uniform(name, count)
    if name.endswith(".conv.weight"):
        fan_in = count // shape[0]
        values = (2.0 * u - 1.0) * math.sqrt(6.0 / fan_in)  # He-uniform: variance 2 / fan_in
    elif name.endswith(".bn.weight"):
        values = 0.8 + 0.4 * u
    elif name.endswith(".bn.running_var"):
        values = 0.5 + u
    elif name.endswith((".bn.bias", ".bn.running_mean")):
        values = 0.1 * (2.0 * u - 1.0)
    else:  # inputs, and the unused fc layer
        values = 2.0 * u - 1.0
    return torch.from_numpy(values.astype(np.float32).reshape(shape))


def random_state_dict():
    """A state_dict for `fid_inception_v3()` with every tensor from `random_tensor` (BatchNorm's
    step counters as they are)."""
    template = fid_inception().state_dict()
    return {
        name: tensor.clone() if name.endswith("num_batches_tracked") else random_tensor(name, list(tensor.shape))
        for name, tensor in template.items()
    }


def pytorch_fid_pool3(state_dict):
    """pytorch-fid's FID feature extractor with `state_dict` in place of the downloaded weights."""
    with mock.patch.object(inception, "load_state_dict_from_url", lambda *_, **__: state_dict):
        return inception.InceptionV3([3], resize_input=True, normalize_input=True).eval()


def features(model, images):
    """pool3 features [N, 2048] of diffuse-range images, fed as pytorch-fid's data loader does."""
    x = (images + 1) / 2
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    with torch.no_grad():
        return model(x)[0][:, :, 0, 0]


def main():
    state_dict = random_state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        pth, converted_path = pathlib.Path(tmp, "random.pth"), pathlib.Path(tmp, "random.safetensors")
        torch.save(state_dict, pth)
        convert(pth, converted_path)
        converted = load_file(str(converted_path))
    for name, tensor in converted.items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, state_dict[name]), name

    model = pytorch_fid_pool3(state_dict)
    outputs = []
    for name, shape in INPUTS:
        images = random_tensor(name, shape)
        exact = features(model.double(), images.double())
        single = features(model.float(), images)
        rounding = float((single - exact).abs().max() / exact.abs().max())
        print(f"{name}: features mean {exact.mean():.4f}, std {exact.std():.4f}, max {exact.max():.4f}, "
              f"zeros {(exact == 0).double().mean():.3f}; float32 run off by {rounding:.2e} relative")
        outputs.append({"name": name, "shape": shape, "features": exact.tolist(), "float32_error": rounding})

    spot = {}
    for name in SPOT_CHECKS:
        shape = list(state_dict[name].shape) if name in state_dict else dict(INPUTS)[name]
        spot[name] = random_tensor(name, shape).flatten()[:SPOT_COUNT].double().tolist()
    fixture = {
        "tensors": [{"name": n, "shape": list(t.shape)} for n, t in converted.items()],
        "spot_checks": spot,
        "inputs": outputs,
    }
    OUT.write_text(json.dumps(fixture))
    print(f"wrote {OUT}: {len(converted)} tensors, {len(outputs)} input sets")


if __name__ == "__main__":
    main()
