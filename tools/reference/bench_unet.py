#!/usr/bin/env python3
"""PyTorch/diffusers twin of `diffuse bench unet`: forward passes per second of a UNet2DModel built
from a config.json with random weights, on the CPU with every core, under torch.no_grad().

    python tools/reference/bench_unet.py --model-config benches/configs/ddpm-cifar10-32.json --batch-size 64
"""

import argparse
import json
import resource
import time

import torch
from diffusers import UNet2DModel


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model-config", required=True)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    args = p.parse_args()
    config = json.load(open(args.model_config))
    unet = UNet2DModel.from_config(config).eval()
    size = config.get("sample_size") or 32
    x = torch.randn(args.batch_size, config["in_channels"], size, size)
    t = torch.full((args.batch_size,), 500)
    labels = torch.zeros(args.batch_size, dtype=torch.long) if config.get("num_class_embeds") else None
    with torch.no_grad():
        unet(x, t, class_labels=labels)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime
        start = time.perf_counter()
        for _ in range(args.iters):
            unet(x, t, class_labels=labels)
        elapsed = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cores = (usage.ru_utime + usage.ru_stime - cpu) / elapsed
        seconds = elapsed / args.iters
    print(json.dumps({
        "parameters": sum(p.numel() for p in unet.parameters()),
        "batch_size": args.batch_size,
        "iterations": args.iters,
        "seconds_per_batch": seconds,
        "images_per_second": args.batch_size / seconds,
        "torch_threads": torch.get_num_threads(),
        "cores_busy": cores,
    }))


if __name__ == "__main__":
    main()
