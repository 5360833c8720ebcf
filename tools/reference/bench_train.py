#!/usr/bin/env python3
"""PyTorch/diffusers twin of `diffuse bench train`: wall time of one DDPM training step of a
UNet2DModel built from a config.json (random init, seed 0), float32 on the CPU.

One step: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (linear beta 1e-4..0.02 over 1000 steps,
t uniform in [0, 1000)), forward (class labels when the config has num_class_embeds; the first
in_channels output channels when the model also predicts variance), MSE against eps, backward,
clip_grad_norm_(1.0), AdamW(lr=1e-4, weight_decay=0) step, zero_grad(set_to_none=True).
The random x0 / t / eps / labels are drawn before timing, like a prefetching loader; the noising
itself is timed. Prints one JSON line.

    python tools/reference/bench_train.py --model-config benches/configs/ddpm-cifar10-32.json --batch-size 16
"""

import argparse
import json
import resource
import sys
import time

import torch
from diffusers import UNet2DModel

TRAIN_STEPS = 1000


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-config", required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = json.load(open(args.model_config))
    size = config.get("sample_size")
    if not isinstance(size, int):
        sys.exit(f"{args.model_config}: needs an integer sample_size, got {size!r}")

    torch.manual_seed(0)
    unet = UNet2DModel.from_config(config).train()
    params = [q for q in unet.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    in_ch = unet.config.in_channels
    split = unet.config.out_channels == 2 * in_ch
    classes = config.get("num_class_embeds")
    alphas_bar = torch.cumprod(1.0 - torch.linspace(1e-4, 0.02, TRAIN_STEPS), dim=0)

    b, n = args.batch_size, args.warmup + args.steps
    batches = [(
        torch.randn(b, in_ch, size, size),
        torch.randint(0, TRAIN_STEPS, (b,)),
        torch.randn(b, in_ch, size, size),
        torch.randint(0, classes, (b,)) if classes else None,
    ) for _ in range(n)]

    def step(x0, t, eps, labels):
        abar = alphas_bar[t].view(-1, 1, 1, 1)
        x_t = abar.sqrt() * x0 + (1.0 - abar).sqrt() * eps
        out = unet(x_t, t, class_labels=labels).sample
        if split:
            out = out[:, :in_ch]
        loss = torch.nn.functional.mse_loss(out, eps)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for batch in batches[:args.warmup]:
        step(*batch)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    for batch in batches[args.warmup:]:
        step(*batch)
    elapsed = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cores = (usage.ru_utime + usage.ru_stime - cpu) / elapsed
    seconds = elapsed / max(args.steps, 1)

    print(json.dumps({
        "impl": "pytorch",
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": b,
        "steps": args.steps,
        "seconds_per_step": seconds,
        "images_per_second": b / seconds,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "parameters": sum(q.numel() for q in unet.parameters()),
        "cores_busy": cores,
    }))


if __name__ == "__main__":
    main()
