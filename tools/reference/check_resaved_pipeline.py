#!/usr/bin/env python3
"""Checks that diffusers loads pipeline folders written by diffuse and computes the same outputs.

For every U-Net and DiT fixture: `diffuse` re-writes the diffusers-written weights
(examples/resave_pipeline.rs), diffusers loads the result (DDPMPipeline.from_pretrained, or
DiTTransformer2DModel.from_pretrained on its transformer/), and the forward output on the fixture's
inputs must equal the stored diffusers output (relative max-norm error <= 1e-6: same weights).

Run from the repository root:
    python tools/reference/check_resaved_pipeline.py
"""

import pathlib
import subprocess
import sys
import tempfile

import json
import shutil

import torch
from diffusers import DDPMPipeline, DDIMScheduler, DiTTransformer2DModel
from safetensors.torch import load_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates" / "diffuse-core" / "tests" / "fixtures"


def resave(src, out):
    subprocess.run(
        ["cargo", "run", "-q", "-p", "diffuse-core", "--example", "resave_pipeline", "--", str(src), str(out)],
        cwd=ROOT, check=True,
    )


def dit_pipeline_folder(case, folder):
    """A pixel-space DiTPipeline folder (no VAE) around a fixture's transformer/."""
    shutil.copytree(case / "transformer", folder / "transformer")
    DDIMScheduler(clip_sample=False).save_pretrained(folder / "scheduler")
    index = {"_class_name": "DiTPipeline", "_diffusers_version": "0.42.1",
             "transformer": ["diffusers", "DiTTransformer2DModel"], "scheduler": ["diffusers", "DDIMScheduler"]}
    (folder / "model_index.json").write_text(json.dumps(index))


def main():
    worst = 0.0
    cases = sorted((FIXTURES / "unet").iterdir()) + sorted((FIXTURES / "dit").iterdir())
    for case in cases:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            io = load_file(case / "io.safetensors")
            if (case / "pipeline").is_dir():
                resave(case / "pipeline", tmp / "out")
                model = DDPMPipeline.from_pretrained(tmp / "out").unet
            else:
                dit_pipeline_folder(case, tmp / "in")
                resave(tmp / "in", tmp / "out")
                model = DiTTransformer2DModel.from_pretrained(tmp / "out" / "transformer")
            with torch.no_grad():
                kwargs = {"class_labels": io.get("class_labels")}
                got = model(io["sample"], io["timesteps"], **kwargs).sample
            err = float((got - io["output"]).abs().max() / io["output"].abs().max())
            worst = max(worst, err)
            print(f"{case.parent.name}/{case.name}: diffusers loads the diffuse-written folder; "
                  f"forward relative error {err:.3e}")
    sys.exit(0 if worst <= 1e-6 else 1)


if __name__ == "__main__":
    main()
