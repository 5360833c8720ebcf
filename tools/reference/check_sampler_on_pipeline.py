#!/usr/bin/env python3
"""diffusers' EulerDiscreteScheduler on a class-conditional pipeline folder written by `diffuse`,
from the same initial noise as `diffuse sample --scheduler euler`: an end-to-end check of a
σ-space sampler through a real network (float64 U-Net on the diffusers side).

    target/release/diffuse sample --pipeline out/demo --scheduler euler --steps 50 --n 8 \
        --class-labels 0,1,2,3,4,5,6,7 --init-noise /tmp/z.safetensors --out-tensor /tmp/ours.safetensors
    python tools/reference/check_sampler_on_pipeline.py out/demo /tmp/z.safetensors /tmp/ours.safetensors

With no /tmp/z.safetensors yet, run the script once first: it writes the noise (seed 5) and exits.
"""

import pathlib
import sys

import torch
from diffusers import EulerDiscreteScheduler, UNet2DModel
from safetensors.torch import load_file, save_file

pipeline, noise_path, ours_path = sys.argv[1:4]
if not pathlib.Path(noise_path).exists():
    g = torch.Generator().manual_seed(5)
    save_file({"noise": torch.randn(8, 1, 28, 28, generator=g)}, noise_path)
    sys.exit(f"wrote {noise_path}; now run diffuse sample with --init-noise {noise_path}")
unet = UNet2DModel.from_pretrained(f"{pipeline}/unet").double().eval()
scheduler = EulerDiscreteScheduler.from_pretrained(f"{pipeline}/scheduler")
scheduler.set_timesteps(50)
z = load_file(noise_path)["noise"].double()
labels = torch.arange(z.shape[0])
x = z * scheduler.init_noise_sigma
with torch.no_grad():
    for t in scheduler.timesteps:
        out = unet(scheduler.scale_model_input(x, t), t.double(), class_labels=labels).sample
        x = scheduler.step(out, t, x).prev_sample.double()
ours = load_file(ours_path)["samples"].double()
print(f"max |diffusers − diffuse| {(x - ours).abs().max().item():.3e} (values up to {x.abs().max().item():.2f})")
print(f"pixels outside [-1, 1]: diffusers {(x.abs() > 1).double().mean().item():.3f}, diffuse {(ours.abs() > 1).double().mean().item():.3f}")
