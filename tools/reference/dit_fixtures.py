#!/usr/bin/env python3
"""Golden values from diffusers for the DiT parity tests.

For two small, randomly initialised DiTTransformer2DModel configs this writes, under
crates/diffuse-core/tests/fixtures/dit/<name>/:
  transformer/     save_pretrained output (config.json + diffusion_pytorch_model.safetensors)
  io.safetensors   sample, timesteps, class_labels and the float32 forward `output`; and a 20-step
                   DDIM run (epsilon = first in_channels outputs) from `init_noise` to `ddim_samples`
                   with `ddim_labels`.

Run (from the repository root, with `pip install -r tools/reference/requirements.txt`):
    python tools/reference/dit_fixtures.py
"""

import pathlib
import shutil

import torch
from diffusers import DDIMScheduler, DiTTransformer2DModel
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "diffuse-core" / "tests" / "fixtures" / "dit"

CONFIGS = {
    "class_conditional": dict(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, num_layers=2,
        sample_size=8, patch_size=2, num_embeds_ada_norm=10,
    ),
    "learned_sigma": dict(
        num_attention_heads=4, attention_head_dim=8, in_channels=3, out_channels=6, num_layers=1,
        sample_size=8, patch_size=4, num_embeds_ada_norm=5, norm_eps=1e-6,
    ),
}


def main():
    for index, (name, cfg) in enumerate(CONFIGS.items()):
        torch.manual_seed(100 + index)
        model = DiTTransformer2DModel(**cfg).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        folder = OUT / name
        shutil.rmtree(folder, ignore_errors=True)
        model.save_pretrained(folder / "transformer")

        c, size, classes = cfg["in_channels"], cfg["sample_size"], cfg["num_embeds_ada_norm"]
        sample = torch.randn(3, c, size, size)
        timesteps = torch.tensor([999.0, 421.0, 0.0])
        labels = torch.tensor([0, classes - 1, classes])  # the last is the null class
        scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
        scheduler.set_timesteps(20)
        init_noise = torch.randn(2, c, size, size)
        ddim_labels = torch.tensor([1, classes])
        with torch.no_grad():
            output = model(sample, timestep=timesteps, class_labels=labels).sample
            x = init_noise.clone()
            for t in scheduler.timesteps:
                eps = model(x, timestep=t.repeat(2), class_labels=ddim_labels).sample[:, :c]
                x = scheduler.step(eps, t, x).prev_sample
        save_file(
            {
                "sample": sample, "timesteps": timesteps, "class_labels": labels, "output": output,
                "init_noise": init_noise, "ddim_labels": ddim_labels, "ddim_samples": x,
            },
            folder / "io.safetensors",
        )
        print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, output std {output.std():.3f}")


if __name__ == "__main__":
    main()
