#!/usr/bin/env python3
"""Golden values from diffusers for the latent-pipeline parity test.

Writes, under crates/diffuse-core/tests/fixtures/latent_dit/:
  pipeline/        a DiTPipeline folder (save_pretrained): a small random DiTTransformer2DModel with
                   learned sigma on a 4×8×8 latent, a small random AutoencoderKL (3×16×16 images,
                   scaling_factor 0.5) and a DDIMScheduler without clipping
  io.safetensors   `init_noise` [2,4,8,8], `class_labels`, and for guidance 1 and 4 the 10-step
                   result: `latents_g1`/`latents_g4` and `samples_g1`/`samples_g4`, the raw decoder
                   output vae.decode(latents / scaling_factor).sample (before the [0,1] clamp)

The loop is DiTPipeline.__call__ line for line, read back with DiTPipeline.from_pretrained, with
two differences: the initial noise is given (drawn from a seeded generator), and the null class is
`num_embeds_ada_norm` (DiTPipeline hard-codes 1000, the value for the released ImageNet models,
which a 10-class model has no row for).

Run (from the repository root, with `pip install -r tools/reference/requirements.txt`):
    python tools/reference/latent_pipeline_fixtures.py
"""

import pathlib
import shutil

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "diffuse-core" / "tests" / "fixtures" / "latent_dit"
STEPS = 10
CLASS_LABELS = [1, 3]


def perturbed(module, seed):
    """Default init leaves some paths near zero; widen the weights so every path carries signal."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return module.eval()


def dit_loop(pipe, latents, class_labels, guidance_scale):
    """DiTPipeline.__call__ from its noise on, with the null class num_embeds_ada_norm."""
    transformer, scheduler = pipe.transformer, pipe.scheduler
    latent_channels = transformer.config.in_channels
    batch_size = len(class_labels)
    latent_model_input = torch.cat([latents] * 2) if guidance_scale > 1 else latents
    class_labels = torch.tensor(class_labels).reshape(-1)
    class_null = torch.tensor([transformer.config.num_embeds_ada_norm] * batch_size)
    class_labels_input = torch.cat([class_labels, class_null], 0) if guidance_scale > 1 else class_labels
    scheduler.set_timesteps(STEPS)
    for t in scheduler.timesteps:
        if guidance_scale > 1:
            half = latent_model_input[: len(latent_model_input) // 2]
            latent_model_input = torch.cat([half, half], dim=0)
        latent_model_input = scheduler.scale_model_input(latent_model_input, t)
        timesteps = t[None].expand(latent_model_input.shape[0])
        noise_pred = transformer(latent_model_input, timestep=timesteps, class_labels=class_labels_input).sample
        if guidance_scale > 1:
            eps, rest = noise_pred[:, :latent_channels], noise_pred[:, latent_channels:]
            cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
            half_eps = uncond_eps + guidance_scale * (cond_eps - uncond_eps)
            eps = torch.cat([half_eps, half_eps], dim=0)
            noise_pred = torch.cat([eps, rest], dim=1)
        if transformer.config.out_channels // 2 == latent_channels:
            model_output, _ = torch.split(noise_pred, latent_channels, dim=1)
        else:
            model_output = noise_pred
        latent_model_input = scheduler.step(model_output, t, latent_model_input).prev_sample
    if guidance_scale > 1:
        latents, _ = latent_model_input.chunk(2, dim=0)
    else:
        latents = latent_model_input
    samples = pipe.vae.decode(1 / pipe.vae.config.scaling_factor * latents).sample
    return latents, samples


def main():
    transformer = perturbed(DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8, num_layers=2,
        sample_size=8, patch_size=2, num_embeds_ada_norm=10,
    ), seed=1)
    vae = perturbed(AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, sample_size=16, scaling_factor=0.5,
    ), seed=2)
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    shutil.rmtree(OUT, ignore_errors=True)
    DiTPipeline(transformer=transformer, vae=vae, scheduler=scheduler).save_pretrained(OUT / "pipeline")

    pipe = DiTPipeline.from_pretrained(OUT / "pipeline")
    init_noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    tensors = {"init_noise": init_noise, "class_labels": torch.tensor(CLASS_LABELS)}
    with torch.no_grad():
        for guidance in (1, 4):
            latents, samples = dit_loop(pipe, init_noise.clone(), CLASS_LABELS, guidance)
            tensors[f"latents_g{guidance}"] = latents
            tensors[f"samples_g{guidance}"] = samples
            print(f"guidance {guidance}: latents std {latents.std():.3f}, samples std {samples.std():.3f}")
    save_file({k: v.contiguous() for k, v in tensors.items()}, OUT / "io.safetensors")


if __name__ == "__main__":
    main()
