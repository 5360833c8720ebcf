#!/usr/bin/env python3
"""Golden values for pipelines that `diffuse train` exported: diffusers must load them and its
forward output becomes the fixture the Rust tests compare against (tests/trained_export.rs).

For each case this script trains a few steps with the release binary (a tiny class-conditional
U-Net, and a 2-layer DiT, on MNIST), keeps only the pipeline part of the run folder
(model_index.json, unet/ or transformer/, scheduler/), loads it with diffusers
(DDPMPipeline.from_pretrained; DiTTransformer2DModel.from_pretrained for the DiT, whose pipeline
has no VAE), and stores the network's output on seeded inputs in io.safetensors.

Run from the repository root (needs torch + diffusers, see requirements.txt):
    cargo build --release && python tools/reference/trained_fixtures.py
"""

import pathlib
import shutil
import subprocess
import tempfile

import torch
from diffusers import DDPMPipeline, DDPMScheduler, DiTTransformer2DModel
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates" / "diffuse-core" / "tests" / "fixtures" / "trained"
CASES = {
    "unet-tiny-mnist": ["--preset", "tiny"],
    "dit-mnist": ["--model-config", "tools/reference/configs/dit-trained-fixture.json"],
}


def train(args, run):
    subprocess.run(
        [str(ROOT / "target/release/diffuse"), "train", "--dataset", "mnist", "--class-conditional",
         "--steps", "20", "--batch-size", "8", "--checkpoint-every", "0", "--sample-steps", "2",
         "--seed", "1", "--out", str(run), *args],
        cwd=ROOT, check=True,
    )


def keep_pipeline(run, case_dir):
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    for part in ["model_index.json", "unet", "transformer", "scheduler"]:
        src = run / part
        if src.is_dir():
            shutil.copytree(src, case_dir / part)
        elif src.is_file():
            shutil.copy(src, case_dir / part)


def forward(case_dir):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 28, 28, generator=generator)
    t = torch.tensor([0, 421, 999])
    labels = torch.tensor([3, 7, 10])  # 10 = the null class
    with torch.no_grad():
        if (case_dir / "unet").is_dir():
            pipeline = DDPMPipeline.from_pretrained(case_dir)
            assert isinstance(pipeline.scheduler, DDPMScheduler)
            out = pipeline.unet(x, t, class_labels=labels).sample
        else:
            model = DiTTransformer2DModel.from_pretrained(case_dir / "transformer")
            DDPMScheduler.from_pretrained(case_dir / "scheduler")
            out = model(x, timestep=t, class_labels=labels).sample
    save_file(
        {"x": x, "timesteps": t.to(torch.float32), "class_labels": labels.to(torch.float32),
         "out": out.contiguous()},
        str(case_dir / "io.safetensors"),
    )
    print(f"{case_dir.name}: output |max| {out.abs().max():.4f}")


def main():
    for name, args in CASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            run = pathlib.Path(tmp) / "run"
            train(args, run)
            keep_pipeline(run, FIXTURES / name)
        forward(FIXTURES / name)


if __name__ == "__main__":
    main()
