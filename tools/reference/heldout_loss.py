"""Held-out denoising loss of trained pipelines, for the seed table in docs/QUALITY.md.

Every pipeline folder is scored by diffusers on the same inputs: the Fashion-MNIST test split
(10 000 images with their labels), one timestep t ~ U{0..999} and one ε per image, both drawn
once from a fixed seed, so two models are compared on identical (x0, t, ε) and only the weights
differ. The score is the ε-prediction loss mean ‖ε − ε_θ(x_t, t, y)‖² (the training objective),
overall and per quarter of the timestep range, with its standard error over images.

    python tools/reference/heldout_loss.py out/q-0 out/torch-0 ...
"""

import argparse
import json
import pathlib

import torch
from diffusers import DDPMScheduler, UNet2DModel

from train_fmnist_reference import load_fashion_mnist

ROOT = pathlib.Path(__file__).resolve().parents[2]


@torch.no_grad()
def per_image_loss(unet, scheduler, x0, y, t, eps, batch=250):
    abar = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    losses = []
    for i in range(0, len(x0), batch):
        out = unet(x_t[i:i + batch], t[i:i + batch], class_labels=y[i:i + batch]).sample
        losses.append(((out - eps[i:i + batch]) ** 2).mean(dim=(1, 2, 3)))
    return torch.cat(losses).double()


def summary(values):
    return {"mean": float(values.mean()), "se": float(values.std() / len(values) ** 0.5)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("pipelines", nargs="+")
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/fashion-mnist"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    x0, y = load_fashion_mnist(pathlib.Path(args.data), split="t10k")
    g = torch.Generator().manual_seed(args.seed)
    t = torch.randint(0, 1000, (len(x0),), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    quarter = t // 250
    for folder in args.pipelines:
        folder = pathlib.Path(folder)
        unet = UNet2DModel.from_pretrained(folder / "unet").eval()
        scheduler = DDPMScheduler.from_pretrained(folder / "scheduler")
        losses = per_image_loss(unet, scheduler, x0, y, t, eps)
        result = {"pipeline": str(folder), "images": len(x0), "loss": summary(losses),
                  "by_quarter": [summary(losses[quarter == q]) for q in range(4)]}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
