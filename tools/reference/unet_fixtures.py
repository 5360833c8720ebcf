#!/usr/bin/env python3
"""Golden values from diffusers for the U-Net parity tests.

For each of three small, randomly initialised UNet2DModel configs this writes, under
crates/diffuse-core/tests/fixtures/unet/<name>/:
  pipeline/   a diffusers pipeline folder (DDPMPipeline.save_pretrained: model_index.json,
              unet/config.json + diffusion_pytorch_model.safetensors, scheduler/scheduler_config.json)
  io.safetensors
              sample [B,C,H,W], timesteps [B], class_labels [B] (when conditional) and the float32
              forward output `output`; and a 20-step DDIM run from `init_noise` to `ddim_samples`.

Run (from the repository root, with `pip install -r tools/reference/requirements.txt`):
    python tools/reference/unet_fixtures.py
"""

import pathlib
import shutil

import torch
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "diffuse-core" / "tests" / "fixtures" / "unet"

CONFIGS = {
    # Attention at two levels, three channels.
    "attn2_rgb": dict(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        attention_head_dim=8,
        norm_num_groups=8,
    ),
    # One channel, class embeddings (10 classes + the null class for CFG), scale_shift, sine first.
    "class_scaleshift_gray": dict(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=2,
        attention_head_dim=16,
        norm_num_groups=8,
        num_class_embeds=11,
        resnet_time_scale_shift="scale_shift",
        flip_sin_to_cos=False,
        freq_shift=1,
    ),
    # Learned variance (out = 2 x in), centred input, padding-0 downsampling, no mid attention.
    "learned_sigma_misc": dict(
        sample_size=8,
        in_channels=3,
        out_channels=6,
        block_out_channels=(16, 32),
        down_block_types=("AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D"),
        layers_per_block=1,
        attention_head_dim=None,
        norm_num_groups=4,
        center_input_sample=True,
        downsample_padding=0,
        add_attention=False,
        mid_block_scale_factor=1.4142,
        norm_eps=1e-6,
    ),
}


def main():
    for index, (name, cfg) in enumerate(CONFIGS.items()):
        torch.manual_seed(index)
        unet = UNet2DModel(**cfg).eval()
        # Default init leaves outputs tiny; widen the weights so every path carries signal.
        with torch.no_grad():
            for p in unet.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        scheduler = DDPMScheduler(num_train_timesteps=1000, clip_sample=False)
        folder = OUT / name
        shutil.rmtree(folder, ignore_errors=True)
        DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder / "pipeline")

        batch, size = 3, cfg["sample_size"]
        sample = torch.randn(batch, cfg["in_channels"], size, size)
        timesteps = torch.tensor([999.0, 500.0, 3.0])
        labels = torch.tensor([0, 7, 10]) if cfg.get("num_class_embeds") else None
        with torch.no_grad():
            output = unet(sample, timesteps, class_labels=labels).sample

            ddim = DDIMScheduler.from_config(scheduler.config)
            ddim.set_timesteps(20)
            init_noise = torch.randn(2, cfg["in_channels"], size, size)
            x = init_noise.clone()
            ddim_labels = labels[:2] if labels is not None else None
            for t in ddim.timesteps:
                eps = unet(x, t, class_labels=ddim_labels).sample[:, : cfg["in_channels"]]
                x = ddim.step(eps, t, x).prev_sample

        tensors = {
            "sample": sample,
            "timesteps": timesteps,
            "output": output,
            "init_noise": init_noise,
            "ddim_samples": x,
        }
        if labels is not None:
            tensors["class_labels"] = labels.to(torch.int64)
        save_file({k: v.contiguous() for k, v in tensors.items()}, folder / "io.safetensors")
        params = sum(p.numel() for p in unet.parameters())
        print(f"{name}: {params} parameters, output std {output.std():.3f}")


if __name__ == "__main__":
    main()
