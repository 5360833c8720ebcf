#!/usr/bin/env python3
"""Training replays from PyTorch + diffusers, for the training parity tests (tests/training_replay.rs).

Each case runs 50 optimisation steps of the `diffuse demo` recipe (or one change of it) on a tiny
network that diffusers builds, with diffusers' own training pieces: `DDPMScheduler.add_noise` and
`get_velocity`, `compute_snr` for min-SNR weighting, `get_scheduler` for the learning rate,
`torch.optim.AdamW`, `clip_grad_norm_` and `EMAModel`. The learned-variance case adds
improved-diffusion's noising and hybrid loss (`GaussianDiffusion.q_sample` and `training_losses` with
`LossType.RESCALED_MSE`: L_simple + T/1000 · L_vlb, the mean stopped), written out below from its
`losses.py` and `gaussian_diffusion.py`. Every random draw is recorded, so `diffuse` can replay the
run from the same initial weights and must end at the same weights.

Writes crates/diffuse-core/tests/fixtures/replay/:
  data.safetensors      `images` [64, 1, 8, 8] (Fashion-MNIST, centre 24² crop, 3×3 mean pooled,
                        scaled to [-1, 1]) and `labels` [64]
  <case>/recipe.json    the run as diffuse's TrainConfig keys
  <case>/init/          the initial network as a pipeline folder (save_pretrained)
  <case>/replay.safetensors
                        per micro-batch (step-major): `indices`, `timesteps`, `noise`,
                        `class_labels` (after label dropout); per step: `loss`, `grad_norm`, `lr`;
                        the final weights `model/<name>` and EMA weights `ema/<name>`

Run (from the repository root, with `pip install -r tools/reference/requirements.txt`):
    python tools/reference/train_replay_fixtures.py [CASE ...]
"""

import gzip
import json
import math
import pathlib
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMPipeline, DDPMScheduler, DiTTransformer2DModel, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel, compute_snr
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates" / "diffuse-core" / "tests" / "fixtures" / "replay"
DATA = ROOT.parent / "shared" / "data" / "fashion-mnist"

STEPS = 50
BATCH = 4
SAMPLES = 64
CLASSES = 10
T = 1000

# The demo recipe (out/demo/train_config.toml), with a warm-up short enough to end within 50 steps
# where the case anneals.
DEMO = dict(
    steps=STEPS, batch_size=BATCH, grad_accumulation=1, learning_rate=2e-3, warmup_steps=200,
    lr_schedule="constant", adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, weight_decay=0.0,
    max_grad_norm=1.0, ema_max_decay=0.995, ema_warmup=True, ema_inv_gamma=1.0, ema_power=2 / 3,
    prediction_type="epsilon", class_conditional=True, label_dropout=0.1, beta_schedule="linear",
    beta_start=1e-4, beta_end=0.02, num_train_timesteps=T, variance_type="fixed_small",
    vlb_weight=0.001,
)

CASES = {
    "unet_epsilon": dict(net="unet"),
    "unet_v_prediction": dict(net="unet", prediction_type="v_prediction"),
    "unet_min_snr": dict(net="unet", min_snr_gamma=5.0),
    "unet_accumulation": dict(net="unet", grad_accumulation=2),
    "unet_cosine": dict(net="unet", lr_schedule="cosine", warmup_steps=10, weight_decay=0.01),
    "unet_learned_range": dict(net="unet", variance_type="learned_range"),
    "dit_epsilon": dict(net="dit"),
}


def tiny_unet(out_channels):
    """The unet-28 preset's layout at 8×8: attention at the lower level, class embeddings."""
    return UNet2DModel(
        sample_size=8, in_channels=1, out_channels=out_channels, block_out_channels=(4, 8),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1, attention_head_dim=4, norm_num_groups=2, num_class_embeds=CLASSES + 1,
    )


def tiny_dit():
    dit = DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=1, num_layers=1, sample_size=8,
        patch_size=2, num_embeds_ada_norm=CLASSES,
    )
    return switch_off_label_dropout(dit)


def switch_off_label_dropout(dit):
    """diffusers' DiT drops labels itself in train mode; here, as in diffuse, the dropout is drawn
    outside the model (and recorded), so the model's own is switched off."""
    for module in dit.modules():
        if hasattr(module, "dropout_prob"):
            module.dropout_prob = 0.0
    return dit


def load_data():
    with gzip.open(DATA / "train-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:SAMPLES]
    with gzip.open(DATA / "train-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)[:SAMPLES]
    crop = torch.tensor(images[:, :, 2:26, 2:26] / 255.0, dtype=torch.float64)
    pooled = F.avg_pool2d(crop, 3) * 2.0 - 1.0
    return pooled.float().contiguous(), torch.tensor(labels, dtype=torch.long)


# improved-diffusion's losses.py and GaussianDiffusion (float64 schedule arrays, as there).
def normal_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + ((mean1 - mean2) ** 2) * torch.exp(-logvar2))


def approx_standard_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    centered_x = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered_x + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered_x - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return torch.where(x < -0.999, log_cdf_plus, torch.where(
        x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))))


class ImprovedDiffusionVlb:
    """`GaussianDiffusion.q_sample` and `_vb_terms_bpd` for LEARNED_RANGE variance (bits/dim per sample)."""

    def __init__(self, betas):
        betas = np.asarray(betas, dtype=np.float64)
        alphas_cumprod = np.cumprod(1.0 - betas)
        prev = np.append(1.0, alphas_cumprod[:-1])
        self.betas = betas
        self.sqrt_alphas_cumprod = np.sqrt(alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - alphas_cumprod)
        self.sqrt_recip = np.sqrt(1.0 / alphas_cumprod)
        self.sqrt_recipm1 = np.sqrt(1.0 / alphas_cumprod - 1)
        variance = betas * (1.0 - prev) / (1.0 - alphas_cumprod)
        self.log_var_clipped = np.log(np.append(variance[1], variance[1:]))
        self.coef1 = betas * np.sqrt(prev) / (1.0 - alphas_cumprod)
        self.coef2 = (1.0 - prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_cumprod)

    @staticmethod
    def extract(array, t, like):
        return torch.from_numpy(array).to(like.device)[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0, noise, t):
        # Eq. 4 of DDPM with the float64 schedule rounded per sample (diffusers' add_noise rounds
        # alphas_cumprod to float32 first: x_t moves by up to 2.5e-6, which the t = 0 decoder NLL
        # turns into 2e-5 of the loss).
        return (self.extract(self.sqrt_alphas_cumprod, t, x0) * x0
                + self.extract(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise)

    def posterior_mean(self, x0, x_t, t):
        return self.extract(self.coef1, t, x_t) * x0 + self.extract(self.coef2, t, x_t) * x_t

    def terms(self, eps_frozen, variance_values, x0, x_t, t):
        # In float64, so the golden terms carry no float32 rounding of their own (at t = 0 the
        # decoder's bin probability Φ(b+) − Φ(b−) cancels).
        eps_frozen, variance_values, x0, x_t = (v.double() for v in (eps_frozen, variance_values, x0, x_t))
        return self.terms64(eps_frozen, variance_values, x0, x_t, t).float()

    def terms64(self, eps_frozen, variance_values, x0, x_t, t):
        min_log = self.extract(self.log_var_clipped, t, x_t)
        max_log = self.extract(np.log(self.betas), t, x_t)
        frac = (variance_values + 1) / 2
        model_log_variance = frac * max_log + (1 - frac) * min_log
        pred_x0 = self.extract(self.sqrt_recip, t, x_t) * x_t - self.extract(self.sqrt_recipm1, t, x_t) * eps_frozen
        model_mean = self.posterior_mean(pred_x0, x_t, t)
        true_mean = self.posterior_mean(x0, x_t, t)
        true_log_variance = self.extract(self.log_var_clipped, t, x_t)
        kl = normal_kl(true_mean, true_log_variance, model_mean, model_log_variance)
        kl = kl.mean(dim=(1, 2, 3)) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x0, means=model_mean, log_scales=0.5 * model_log_variance)
        nll = nll.mean(dim=(1, 2, 3)) / math.log(2.0)
        return torch.where(t == 0, nll, kl)


def micro_batch_loss(model, recipe, scheduler, vlb, x0, t, noise, labels):
    """The loss of one micro-batch, as diffusers' training examples (and improved-diffusion) compute it."""
    learned = recipe["variance_type"] == "learned_range"
    x_t = vlb.q_sample(x0, noise, t) if learned else scheduler.add_noise(x0, noise, t)
    out = model(x_t, t, class_labels=labels).sample
    if recipe["prediction_type"] == "v_prediction":
        target = scheduler.get_velocity(x0, noise, t)
    else:
        target = noise
    if learned:
        prediction, variance_values = out[:, :1], out[:, 1:]
        mse = ((prediction - target) ** 2).mean(dim=(1, 2, 3))
        vb = vlb.terms(prediction.detach(), variance_values, x0, x_t, t)
        return (mse + vb * T / 1000.0).mean()
    if "min_snr_gamma" in recipe:
        snr = compute_snr(scheduler, t)
        weights = torch.stack([snr, recipe["min_snr_gamma"] * torch.ones_like(t)], dim=1).min(dim=1)[0]
        weights = weights / snr if recipe["prediction_type"] == "epsilon" else weights / (snr + 1)
        per_sample = F.mse_loss(out, target, reduction="none").mean(dim=(1, 2, 3))
        return (per_sample * weights).mean()
    return F.mse_loss(out, target)


def draw_micro_batch(gen, order, cursor, labels):
    """The next BATCH indices of the epoch-wise shuffled order, and their drawn randomness."""
    while len(order) - cursor < BATCH:
        order = order[cursor:] + torch.randperm(SAMPLES, generator=gen).tolist()
        cursor = 0
    indices = torch.tensor(order[cursor:cursor + BATCH])
    t = torch.randint(0, T, (BATCH,), generator=gen)
    noise = torch.randn(BATCH, 1, 8, 8, generator=gen)
    y = labels[indices].clone()
    y[torch.rand(BATCH, generator=gen) < DEMO["label_dropout"]] = CLASSES
    return order, cursor + BATCH, indices, t, noise, y


def save_init(model, recipe, scheduler, folder):
    if recipe["net"] == "unet":
        DDPMPipeline(unet=model, scheduler=scheduler).save_pretrained(folder)
        return
    model.save_pretrained(folder / "transformer")
    scheduler.save_pretrained(folder / "scheduler")
    index = {"_class_name": "DiTPipeline", "_diffusers_version": "0.42.1",
             "scheduler": ["diffusers", "DDPMScheduler"], "transformer": ["diffusers", "DiTTransformer2DModel"]}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


def run_case(index, name, case, images, labels):
    recipe = {**DEMO, **{k: v for k, v in case.items() if k != "net"}}
    torch.manual_seed(1000 + index)
    learned = recipe["variance_type"] == "learned_range"
    model = tiny_unet(2 if learned else 1) if case["net"] == "unet" else tiny_dit()
    model.train()
    scheduler = DDPMScheduler(num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                              variance_type=recipe["variance_type"], prediction_type=recipe["prediction_type"])
    folder = OUT / name
    shutil.rmtree(folder, ignore_errors=True)
    save_init(model, {**recipe, "net": case["net"]}, scheduler, folder / "init")
    # Train what a user would load: the saved folder, read back with from_pretrained.
    network_class, component = (UNet2DModel, "unet") if case["net"] == "unet" else (DiTTransformer2DModel, "transformer")
    model = network_class.from_pretrained(folder / "init" / component)
    if case["net"] == "dit":
        switch_off_label_dropout(model)
    model.train()

    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe["learning_rate"],
                                  betas=(recipe["adam_beta1"], recipe["adam_beta2"]),
                                  eps=recipe["adam_epsilon"], weight_decay=recipe["weight_decay"])
    lr_schedule = get_scheduler("cosine" if recipe["lr_schedule"] == "cosine" else "constant_with_warmup",
                                optimizer, num_warmup_steps=recipe["warmup_steps"], num_training_steps=STEPS)
    ema = EMAModel(model.parameters(), decay=recipe["ema_max_decay"], use_ema_warmup=True,
                   inv_gamma=recipe["ema_inv_gamma"], power=recipe["ema_power"])
    # improved-diffusion's linear schedule, in float64 (diffusers' betas are float32; at t = 0 the
    # decoder NLL is steep enough in σ that their rounding shows at 1e-5).
    vlb = ImprovedDiffusionVlb(np.linspace(1e-4, 0.02, T, dtype=np.float64))
    gen = torch.Generator().manual_seed(2000 + index)
    order, cursor = [], 0
    record = {k: [] for k in ("indices", "timesteps", "noise", "class_labels", "loss", "grad_norm", "lr")}
    accumulation = recipe["grad_accumulation"]
    for _ in range(STEPS):
        step_loss = 0.0
        for _ in range(accumulation):
            order, cursor, indices, t, noise, y = draw_micro_batch(gen, order, cursor, labels)
            loss = micro_batch_loss(model, recipe, scheduler, vlb, images[indices], t, noise, y) / accumulation
            loss.backward()
            step_loss += loss.item()
            for key, value in (("indices", indices), ("timesteps", t), ("noise", noise), ("class_labels", y)):
                record[key].append(value)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["max_grad_norm"])
        record["lr"].append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(model.parameters())
        record["loss"].append(step_loss)
        record["grad_norm"].append(grad_norm.item())

    tensors = {k: torch.stack(record[k]) for k in ("indices", "timesteps", "noise", "class_labels")}
    tensors.update({k: torch.tensor(record[k], dtype=torch.float64) for k in ("loss", "grad_norm", "lr")})
    for (key, value), shadow in zip(model.named_parameters(), ema.shadow_params):
        tensors[f"model/{key}"] = value.detach().clone().contiguous()
        tensors[f"ema/{key}"] = shadow.detach().clone().contiguous()
    save_file(tensors, folder / "replay.safetensors")
    (folder / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    print(f"{name}: loss {record['loss'][0]:.4f} -> {np.mean(record['loss'][-10:]):.4f}, "
          f"{sum(p.numel() for p in model.parameters())} parameters")


def main():
    """Writes every case, or those named on the command line."""
    wanted = sys.argv[1:] or list(CASES)
    images, labels = load_data()
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({"images": images, "labels": labels}, OUT / "data.safetensors")
    for index, (name, case) in enumerate(CASES.items()):
        if name in wanted:
            run_case(index, name, case, images, labels)


if __name__ == "__main__":
    main()
