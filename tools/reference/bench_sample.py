#!/usr/bin/env python3
"""PyTorch/diffusers twin of `diffuse bench sample`: wall time of one DDIM draw of a batch from a
UNet2DModel built from a config.json with random weights (seed 0), float32 on the CPU, under
torch.no_grad().

The loop is DDIMPipeline's: DDIMScheduler over DDPM's training schedule (linear beta 1e-4..0.02,
1000 steps, x0 clipped), `steps` evaluations of the U-Net (class 0 for a class-conditional one),
samples read back. A one-step draw first warms up. Prints one JSON line.

    python tools/reference/bench_sample.py --model-config benches/configs/unet-28.json --batch-size 16 --steps 50
"""

import argparse
import json
import resource
import time

import torch
from diffusers import DDIMScheduler, UNet2DModel


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-config", required=True)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = json.load(open(args.model_config))
    torch.manual_seed(0)
    unet = UNet2DModel.from_config(config).eval()
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                              beta_schedule="linear", clip_sample=True)
    size = config["sample_size"]
    b, c = args.batch_size, config["in_channels"]
    labels = torch.zeros(b, dtype=torch.long) if config.get("num_class_embeds") else None

    def draw(steps):
        scheduler.set_timesteps(steps)
        x = torch.randn(b, c, size, size, generator=torch.Generator().manual_seed(0))
        for t in scheduler.timesteps:
            eps = unet(x, t, class_labels=labels).sample
            if eps.shape[1] == 2 * c:
                eps = eps[:, :c]
            x = scheduler.step(eps, t, x).prev_sample
        return x.numpy()

    with torch.no_grad():
        draw(1)
        cpu, start = cpu_seconds(), time.perf_counter()
        draw(args.steps)
        seconds = time.perf_counter() - start
        cores = (cpu_seconds() - cpu) / seconds

    print(json.dumps({
        "impl": "pytorch",
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "parameters": sum(q.numel() for q in unet.parameters()),
        "batch_size": b,
        "steps": args.steps,
        "seconds": seconds,
        "images_per_second": b / seconds,
        "cores_busy": cores,
    }))


if __name__ == "__main__":
    main()
