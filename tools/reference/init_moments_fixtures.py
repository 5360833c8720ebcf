#!/usr/bin/env python3
"""Moments of freshly initialised PyTorch networks, for the initialisation test (tests/init_moments.rs).

For every network `diffuse` trains, the PyTorch module it mirrors is built SEEDS times from the
same config.json, and each parameter's values are pooled over those builds: their count, mean,
standard deviation and fourth central moment (for the sampling error of the standard deviation).
`diffuse` builds its networks as many times and must agree within sampling error.

- unet: diffusers `UNet2DModel` of the demo's class-conditional unet-28 (tools/reference/configs)
- dit: diffusers `DiTTransformer2DModel` of the dit-small preset (benches/configs)
- mlp: `diffuse`'s residual MLP for vectors, written below with PyTorch's `nn.Linear`,
  `nn.Embedding` and diffusers' `TimestepEmbedding` (diffusers has no such network)
- classifier: the noise-aware classifier (the built-in Fashion-MNIST one's config), written below
  with diffusers' `ResnetBlock2D` (scale-shift), `Downsample2D`, `TimestepEmbedding` and PyTorch's
  `nn.Conv2d`, `nn.GroupNorm`, `nn.Linear`

Every network is built as a user's config file on disk describes it (`load_config` of the file).

Writes crates/diffuse-core/tests/fixtures/init_moments/<case>/{config.json, moments.json}.

Run (from the repository root, with `pip install -r tools/reference/requirements.txt`):
    python tools/reference/init_moments_fixtures.py
"""

import json
import pathlib
import shutil

import torch
from diffusers import DiTTransformer2DModel, UNet2DModel
from diffusers.models.embeddings import TimestepEmbedding
from diffusers.models.resnet import Downsample2D, ResnetBlock2D
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates" / "diffuse-core" / "tests" / "fixtures" / "init_moments"
SEEDS = 32

# The MLP preset (`MlpConfig::new(2)`) with a class table, so the embedding is covered too.
MLP_CONFIG = {"_class_name": "MlpDenoiser", "data_dim": 2, "hidden_dim": 128, "num_blocks": 3,
              "time_features": 64, "num_class_embeds": 11}


class ResidualLinear(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.linear = nn.Linear(width, width)


class MlpDenoiser(nn.Module):
    """The parameters of crates/diffuse-core/src/nn/mlp.rs, under its names."""

    def __init__(self, c):
        super().__init__()
        h = c["hidden_dim"]
        self.input = nn.Linear(c["data_dim"], h)
        self.time_embedding = TimestepEmbedding(c["time_features"], h)
        self.class_embedding = nn.Embedding(c["num_class_embeds"], h)
        self.blocks = nn.ModuleList(ResidualLinear(h) for _ in range(c["num_blocks"]))
        self.output = nn.Linear(h, c["data_dim"])


class Level(nn.Module):
    def __init__(self, width_in, width, temb, groups, downsample):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(
            in_channels=width_in, out_channels=width, temb_channels=temb, groups=groups, eps=1e-5,
            time_embedding_norm="scale_shift", output_scale_factor=1.0)])
        # name="Conv2d_0" registers the convolution as `conv` only (the default also aliases it).
        self.downsample = Downsample2D(
            width, use_conv=True, out_channels=width, padding=1, name="Conv2d_0") if downsample else None


class NoiseAwareClassifier(nn.Module):
    """The parameters of crates/diffuse-core/src/classifier/model.rs, under its names."""

    def __init__(self, c):
        super().__init__()
        assert c["layers_per_block"] == 1, "the mirror builds one residual block per level"
        widths, groups = c["block_out_channels"], c["norm_num_groups"]
        temb = 4 * widths[0]
        self.conv_in = nn.Conv2d(c["in_channels"], widths[0], 3, stride=c["stem_stride"], padding=1)
        self.time_embedding = TimestepEmbedding(widths[0], temb)
        self.levels = nn.ModuleList(
            Level(widths[max(i - 1, 0)], w, temb, groups, i + 1 < len(widths)) for i, w in enumerate(widths))
        self.norm_out = nn.GroupNorm(groups, widths[-1])
        self.head = nn.Linear(widths[-1], c["num_classes"])


CASES = {
    "unet": (ROOT / "tools/reference/configs/unet-28-class.json",
             lambda path: UNet2DModel.from_config(UNet2DModel.load_config(path))),
    "dit": (ROOT / "benches/configs/dit-small.json",
            lambda path: DiTTransformer2DModel.from_config(DiTTransformer2DModel.load_config(path))),
    "mlp": (None, lambda path: MlpDenoiser(json.loads(path.read_text()))),
    "classifier": (ROOT / "crates/diffuse-core/assets/classifiers/fashion-mnist/config.json",
                   lambda path: NoiseAwareClassifier(json.loads(path.read_text()))),
}


def pooled_moments(build, path):
    """Per parameter: values of SEEDS fresh builds, pooled, as count, mean, std and μ₄."""
    pooled = {}
    for seed in range(SEEDS):
        torch.manual_seed(seed)
        for name, value in build(path).named_parameters():
            pooled.setdefault(name, []).append(value.detach().double().flatten())
    moments = {}
    for name, values in pooled.items():
        v = torch.cat(values)
        centred = v - v.mean()
        moments[name] = {"count": v.numel(), "mean": v.mean().item(), "std": centred.pow(2).mean().sqrt().item(),
                         "fourth_moment": centred.pow(4).mean().item()}
    return moments


def main():
    for case, (source, build) in CASES.items():
        folder = OUT / case
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "config.json"
        if source is None:
            config.write_text(json.dumps(MLP_CONFIG, indent=2) + "\n")
        else:
            shutil.copyfile(source, config)
        moments = pooled_moments(build, config)
        (folder / "moments.json").write_text(json.dumps(moments, indent=1) + "\n")
        print(f"{case}: {len(moments)} parameters, {sum(m['count'] for m in moments.values()) // SEEDS} values per build")


if __name__ == "__main__":
    main()
