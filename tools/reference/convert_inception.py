#!/usr/bin/env python3
"""Converts pytorch-fid's Inception-v3 FID weights to the safetensors file `diffuse eval --inception`
reads.

pytorch-fid (github.com/mseitzer/pytorch-fid) computes FID with the TensorFlow Inception network of
the original FID code, ported to PyTorch as `pt_inception-2015-12-05-6726825d.pth`: a state_dict of
its `fid_inception_v3()` network. pytorch-fid downloads the file from
    https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
and keeps it in torch hub's cache (~/.cache/torch/hub/checkpoints/).

This script loads the file into pytorch-fid's own `fid_inception_v3()` architecture, strictly (so a
torchvision Inception or another network is refused), and writes every tensor up to the 2048-d pool3
features, as float32, under its state_dict name (`Conv2d_1a_3x3.conv.weight`,
`Mixed_5b.branch1x1.bn.running_mean`, ...). The 1008-way classifier (`fc.*`) and BatchNorm's
`num_batches_tracked` counters are left out: FID does not use them.

Run (with `pip install -r tools/reference/requirements.txt`; no network needed):
    python tools/reference/convert_inception.py pt_inception-2015-12-05-6726825d.pth inception.safetensors
then
    diffuse eval --pipeline DIR --dataset mnist --inception inception.safetensors
"""

import argparse
import hashlib
import pathlib
from unittest import mock

import torch
import torchvision
from pytorch_fid import inception
from safetensors.torch import save_file

# torch hub's naming convention: the file name ends in the first hex digits of its SHA-256.
PUBLISHED_SHA256_PREFIX = "6726825d"


def fid_inception(state_dict=None):
    """pytorch-fid's `fid_inception_v3()` with `state_dict` in place of the download; with None, the
    architecture as initialised (to read its tensor names and shapes)."""
    with mock.patch.object(inception, "load_state_dict_from_url", lambda *_, **__: state_dict):
        if state_dict is not None:
            return inception.fid_inception_v3()
        with mock.patch.object(torchvision.models.Inception3, "load_state_dict"):
            return inception.fid_inception_v3()


def is_feature_tensor(name):
    """Whether pool3 features depend on the state_dict entry `name`."""
    return not name.startswith("fc.") and not name.endswith("num_batches_tracked")


def feature_tensors(state_dict):
    """The entries of a `fid_inception_v3()` state_dict (checked by loading it) that the pool3
    features use, as contiguous float32 tensors."""
    network = fid_inception(state_dict)
    return {
        name: tensor.detach().to(torch.float32).contiguous()
        for name, tensor in network.state_dict().items()
        if is_feature_tensor(name)
    }


def convert(pth_path, out_path):
    """Writes the feature tensors of the pytorch-fid weights at `pth_path` to `out_path`."""
    pth_path = pathlib.Path(pth_path)
    state_dict = torch.load(pth_path, map_location="cpu", weights_only=True)
    tensors = feature_tensors(state_dict)
    save_file(tensors, str(out_path), metadata={"source": pth_path.name})
    return tensors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pth", help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth")
    parser.add_argument("out", help="the safetensors file to write")
    args = parser.parse_args()
    digest = hashlib.sha256(pathlib.Path(args.pth).read_bytes()).hexdigest()
    if not digest.startswith(PUBLISHED_SHA256_PREFIX):
        # Same architecture, other weights: features (and FIDs) not comparable with published ones.
        print(f"warning: SHA-256 {digest} is not the published file's ({PUBLISHED_SHA256_PREFIX}…)")
    tensors = convert(args.pth, args.out)
    count = sum(t.numel() for t in tensors.values())
    print(f"wrote {args.out}: {len(tensors)} tensors, {count} parameters")


if __name__ == "__main__":
    main()
