#!/usr/bin/env python3
"""Checks that diffusers loads a pipeline folder written by diffuse and computes the same outputs.

For every U-Net fixture: `diffuse` re-writes the diffusers-written folder (examples/resave_pipeline.rs),
diffusers' DDPMPipeline.from_pretrained loads the result, and its forward output on the fixture's
inputs must equal the stored diffusers output (relative max-norm error <= 1e-6: same weights).

Run from the repository root:
    python tools/reference/check_resaved_pipeline.py
"""

import pathlib
import subprocess
import sys
import tempfile

import torch
from diffusers import DDPMPipeline
from safetensors.torch import load_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates" / "diffuse-core" / "tests" / "fixtures" / "unet"


def main():
    worst = 0.0
    for case in sorted(p for p in FIXTURES.iterdir() if p.is_dir()):
        with tempfile.TemporaryDirectory() as out:
            subprocess.run(
                ["cargo", "run", "-q", "-p", "diffuse-core", "--example", "resave_pipeline", "--",
                 str(case / "pipeline"), out],
                cwd=ROOT, check=True,
            )
            pipe = DDPMPipeline.from_pretrained(out)
            io = load_file(case / "io.safetensors")
            with torch.no_grad():
                got = pipe.unet(io["sample"], io["timesteps"], class_labels=io.get("class_labels")).sample
            err = float((got - io["output"]).abs().max() / io["output"].abs().max())
            worst = max(worst, err)
            print(f"{case.name}: diffusers loads the diffuse-written folder; forward relative error {err:.3e}")
    sys.exit(0 if worst <= 1e-6 else 1)


if __name__ == "__main__":
    main()
