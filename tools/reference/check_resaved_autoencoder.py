#!/usr/bin/env python3
"""Checks that diffusers loads `vae/` folders written by diffuse and computes the same outputs.

For every autoencoder fixture: `diffuse` re-writes the folder (examples/resave_autoencoder.rs),
diffusers loads the result (AutoencoderKL.from_pretrained), and the posterior mode and the decoder
output on the fixture's inputs must equal the stored diffusers outputs (relative max-norm error
<= 1e-6: the same weights; the f16 legacy folder comes back in f32 with today's names).

Run from the repository root:
    python tools/reference/check_resaved_autoencoder.py
"""

import pathlib
import subprocess
import sys
import tempfile

import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates" / "diffuse-core" / "tests" / "fixtures" / "autoencoder"


def relative_error(got, want):
    return ((got - want).abs().max() / want.abs().max()).item()


def main():
    worst = 0.0
    for case in sorted(FIXTURES.iterdir()):
        with tempfile.TemporaryDirectory() as tmp:
            out = pathlib.Path(tmp) / "vae"
            subprocess.run(
                ["cargo", "run", "-q", "-p", "diffuse-core", "--example", "resave_autoencoder", "--",
                 str(case / "vae"), str(out)],
                cwd=ROOT, check=True,
            )
            vae = AutoencoderKL.from_pretrained(out).eval()
            io = load_file(case / "io.safetensors")
            with torch.no_grad():
                errors = {
                    "mode": relative_error(vae.encode(io["images"]).latent_dist.mode(), io["mode"]),
                    "decoded": relative_error(vae.decode(io["latents"]).sample, io["decoded"]),
                }
        print(case.name, " ".join(f"{k} {v:.2e}" for k, v in errors.items()))
        worst = max(worst, *errors.values())
    print(f"worst relative error {worst:.2e}")
    sys.exit(0 if worst <= 1e-6 else 1)


if __name__ == "__main__":
    main()
