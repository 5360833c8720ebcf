#!/usr/bin/env python3
"""The `diffuse demo` recipe in PyTorch + diffusers, for the side-by-side in docs/QUALITY.md.

Trains the same class-conditional UNet2DModel (tools/reference/configs/unet-28-class.json, the
`unet-28` preset with 10 classes + the null class) on Fashion-MNIST with the same settings as
`diffuse demo` (out/demo/train_config.toml): ε-prediction, linear β 1e-4..0.02 over T = 1000,
t ~ U{0..999}, batch 32 drawn from each epoch's shuffled order, AdamW lr 2e-3 (β 0.9/0.999,
ε 1e-8, no weight decay) with 200 linear warm-up steps then constant (diffusers'
get_scheduler), global grad-norm clip 1.0, label dropout 0.1 to the null class, EMA with warm-up
(diffusers EMAModel: max decay 0.995, inv_gamma 1, power 2/3). Stops after --steps or --minutes,
whichever comes first, and saves a DDPMPipeline folder with the EMA weights (DDPMScheduler,
clip_sample true) that `diffuse eval --pipeline DIR` reads.

    python tools/reference/train_fmnist_reference.py --steps 1350 --seed 0 --out out/torch-demo
    target/release/diffuse eval --pipeline out/torch-demo --dataset fashion-mnist --n 1000 --json
"""

import argparse
import gzip
import json
import pathlib
import time

import numpy as np
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_fashion_mnist(data_dir, split="train"):
    """Images in [-1, 1] [N, 1, 28, 28] and labels of the `train` or `t10k` (test) idx files."""
    with gzip.open(data_dir / f"{split}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(data_dir / f"{split}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return torch.tensor(images / 127.5 - 1.0, dtype=torch.float32), torch.tensor(labels, dtype=torch.long)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=100000)
    p.add_argument("--minutes", type=float, default=None)
    p.add_argument("--out", default="out/torch-demo")
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/fashion-mnist"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.manual_seed(args.seed)
    images, labels = load_fashion_mnist(pathlib.Path(args.data))
    # The config file as a user's folder holds it (load_config reads the file, as from_pretrained).
    config = UNet2DModel.load_config(ROOT / "tools/reference/configs/unet-28-class.json")
    unet = UNet2DModel.from_config(config).train()
    null_class = config["num_class_embeds"] - 1
    ema = EMAModel(unet.parameters(), decay=0.995, use_ema_warmup=True, inv_gamma=1.0, power=2 / 3)
    opt = torch.optim.AdamW(unet.parameters(), lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    warmup = get_scheduler("constant_with_warmup", opt, num_warmup_steps=200)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                              beta_end=0.02, clip_sample=True)
    alphas_bar = scheduler.alphas_cumprod
    start, step, losses = time.perf_counter(), 0, []
    order, cursor = [], 0
    while step < args.steps:
        if args.minutes is not None and time.perf_counter() - start > 60 * args.minutes:
            break
        # Epoch-wise shuffling, as diffuse's loader: a fresh permutation whenever one runs out.
        while len(order) - cursor < 32:
            order, cursor = order[cursor:] + torch.randperm(len(images)).tolist(), 0
        index, cursor = torch.tensor(order[cursor:cursor + 32]), cursor + 32
        x0, y = images[index], labels[index].clone()
        y[torch.rand(32) < 0.1] = null_class
        t = torch.randint(0, 1000, (32,))
        eps = torch.randn_like(x0)
        abar = alphas_bar[t].view(-1, 1, 1, 1)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
        loss = torch.nn.functional.mse_loss(unet(x_t, t, class_labels=y).sample, eps)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        warmup.step()
        opt.zero_grad(set_to_none=True)
        ema.step(unet.parameters())
        step += 1
        losses.append(loss.item())
        if step % 100 == 0:
            print(f"step {step} loss {np.mean(losses[-100:]):.4f} {time.perf_counter() - start:.0f}s", flush=True)
    ema.copy_to(unet.parameters())
    DDPMPipeline(unet=unet.eval(), scheduler=scheduler).save_pretrained(args.out)
    summary = {"steps": step, "seconds": time.perf_counter() - start,
               "last_loss": float(np.mean(losses[-100:])), "torch_threads": torch.get_num_threads()}
    (pathlib.Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
