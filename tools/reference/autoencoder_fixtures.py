#!/usr/bin/env python3
"""Golden values from diffusers for the AutoencoderKL parity tests.

For each small, randomly initialised AutoencoderKL config this writes, under
crates/diffuse-core/tests/fixtures/autoencoder/<name>/:
  vae/        the component folder (save_pretrained: config.json + diffusion_pytorch_model.safetensors)
  io.safetensors
              images [B,C,H,W] in [-1,1] and, from the folder read back with from_pretrained,
              the posterior's `mode` (mean) and clamped `logvar`, its per-image `kl`, the decoder
              output `decoded` of `latents` [B,latent_C,h,w], and the reconstruction
              `reconstruction` = decode(mode).

For `rgb_quant_attn` it also writes tiled.safetensors: `big_images` [2,3,40,40] and `big_latents`
[2,4,20,20] (2.5 tiles a side) with diffusers' tiled outputs after `enable_tiling()`: the posterior
mode `tiled_mode` and the decoder output `tiled_decoded`.

The `legacy_f16` case rewrites the first config's folder as Stable Diffusion's releases ship it:
half-precision weights and the pre-0.14 attention names (query, key, value, proj_attn), which
from_pretrained converts; its outputs come from diffusers reading that folder.

Run (from the repository root, with `pip install -r tools/reference/requirements.txt`):
    python tools/reference/autoencoder_fixtures.py
"""

import json
import pathlib
import shutil

import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file, save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "diffuse-core" / "tests" / "fixtures" / "autoencoder"

CONFIGS = {
    # Three channels, two levels, quant convs and mid attention (the SD layout, scaled down).
    "rgb_quant_attn": dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    ),
    # One channel, three levels, two layers per block, no quant convs, no mid attention.
    "gray_plain": dict(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 16, 16),
        layers_per_block=2,
        latent_channels=2,
        norm_num_groups=4,
        sample_size=16,
        use_quant_conv=False,
        use_post_quant_conv=False,
        mid_block_add_attention=False,
    ),
    # Three channels, a quant conv but no post-quant conv, scaling and shift factors set.
    "rgb_shift": dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(16, 32),
        layers_per_block=1,
        latent_channels=3,
        norm_num_groups=8,
        sample_size=16,
        use_post_quant_conv=False,
        scaling_factor=0.5,
        shift_factor=0.1,
    ),
}

LEGACY_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def legacy_folder(source: pathlib.Path, target: pathlib.Path):
    """`source` as SD's releases ship it: f16 weights, pre-0.14 attention names, an old config."""
    shutil.copytree(source, target)
    weights = load_file(source / "diffusion_pytorch_model.safetensors")
    renamed = {}
    for name, tensor in weights.items():
        for new, old in LEGACY_NAMES.items():
            name = name.replace(f".{new}.", f".{old}.")
        renamed[name] = tensor.half().contiguous()
    save_file(renamed, target / "diffusion_pytorch_model.safetensors", metadata={"format": "pt"})
    config = json.loads((source / "config.json").read_text())
    for newer in ("force_upcast", "use_quant_conv", "use_post_quant_conv", "mid_block_add_attention",
                  "shift_factor", "latents_mean", "latents_std", "scaling_factor"):
        config.pop(newer, None)
    config["_diffusers_version"] = "0.6.0"
    (target / "config.json").write_text(json.dumps(config, indent=2))


def write_outputs(folder: pathlib.Path, in_channels: int, seed: int):
    vae = AutoencoderKL.from_pretrained(folder / "vae").eval()
    generator = torch.Generator().manual_seed(seed)
    size = vae.config.sample_size
    images = torch.rand(2, in_channels, size, size, generator=generator) * 2 - 1
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    latents = torch.randn(2, vae.config.latent_channels, size // factor, size // factor, generator=generator)
    with torch.no_grad():
        posterior = vae.encode(images).latent_dist
        tensors = {
            "images": images,
            "mode": posterior.mode(),
            "logvar": posterior.logvar,
            "kl": posterior.kl(),
            "latents": latents,
            "decoded": vae.decode(latents).sample,
            "reconstruction": vae.decode(posterior.mode()).sample,
        }
    save_file({k: v.contiguous() for k, v in tensors.items()}, folder / "io.safetensors")
    return tensors


def write_tiled_outputs(folder: pathlib.Path, seed: int):
    vae = AutoencoderKL.from_pretrained(folder / "vae").eval()
    vae.enable_tiling()
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(2, vae.config.in_channels, 40, 40, generator=generator) * 2 - 1
    latents = torch.randn(2, vae.config.latent_channels, 20, 20, generator=generator)
    with torch.no_grad():
        tensors = {
            "big_images": images,
            "tiled_mode": vae.encode(images).latent_dist.mode(),
            "big_latents": latents,
            "tiled_decoded": vae.decode(latents).sample,
        }
    save_file({k: v.contiguous() for k, v in tensors.items()}, folder / "tiled.safetensors")


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    for index, (name, cfg) in enumerate(CONFIGS.items()):
        torch.manual_seed(index)
        vae = AutoencoderKL(**cfg).eval()
        # Default init leaves some paths near zero; widen the weights so every path carries signal.
        with torch.no_grad():
            for p in vae.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        folder = OUT / name
        vae.save_pretrained(folder / "vae")
        out = write_outputs(folder, cfg["in_channels"], seed=100 + index)
        params = sum(p.numel() for p in vae.parameters())
        print(f"{name}: {params} parameters, mode std {out['mode'].std():.3f}, "
              f"decoded std {out['decoded'].std():.3f}")
    write_tiled_outputs(OUT / "rgb_quant_attn", seed=300)
    legacy = OUT / "legacy_f16"
    legacy_folder(OUT / "rgb_quant_attn" / "vae", legacy / "vae")
    out = write_outputs(legacy, 3, seed=200)
    print(f"legacy_f16: mode std {out['mode'].std():.3f}")


if __name__ == "__main__":
    main()
