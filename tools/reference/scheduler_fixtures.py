#!/usr/bin/env python3
"""Golden values from diffusers for the schedule, timestep and DDPM/DDIM step tests.

Writes three JSON files into crates/diffuse-core/tests/fixtures/:
  schedules.json  betas and alphas_cumprod of DDPMScheduler for every beta schedule x rescale
                  (plus Chen 2023's continuous sigmoid, computed here from the paper's formula),
                  and set_timesteps() for every spacing x N x steps_offset;
  steps.json      single DDPMScheduler.step / DDIMScheduler.step calls on random inputs, run once
                  in float64 and once in float32, for every prediction type and option;
  pipelines.json  whole DDPM/DDIM sampling loops driven by the exact Gaussian-mixture denoiser
                  (implemented below in numpy), from fixed initial and step noise.

Run (from the repository root, with `pip install -r tools/reference/requirements.txt`):
    python tools/reference/scheduler_fixtures.py
"""

import json
import math
import pathlib

import diffusers
import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.schedulers import scheduling_ddpm

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "diffuse-core" / "tests" / "fixtures"
RNG = np.random.default_rng(20261125)

BETA_RANGES = {
    "linear": (0.0001, 0.02),
    "scaled_linear": (0.00085, 0.012),
    "squaredcos_cap_v2": (0.0001, 0.02),
    "sigmoid": (0.0001, 0.02),
}


def floats(t):
    """A tensor as a flat list of Python floats (float32 values are exact in float64). Non-finite
    values (diffusers' float32 DDIM can take the square root of a rounded-negative number) become
    null, which JSON can hold."""
    return [v if math.isfinite(v) else None for v in t.detach().to(torch.float64).flatten().tolist()]


def f32_normal(shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def chen_sigmoid_betas(T, start, end, tau, max_beta=0.999):
    """Chen 2023 Algorithm 1's sigmoid gamma(t), discretised like diffusers' betas_for_alpha_bar."""

    def sigmoid(x):
        return 1.0 / (1.0 + math.exp(-x))

    def gamma(t):
        v_start, v_end = sigmoid(start / tau), sigmoid(end / tau)
        out = (v_end - sigmoid((t * (end - start) + start) / tau)) / (v_end - v_start)
        return min(max(out, 1e-9), 1.0)

    return [min(1 - gamma((i + 1) / T) / gamma(i / T), max_beta) for i in range(T)]


def schedules():
    cases = []
    for T in (1000, 50):
        for name, (start, end) in BETA_RANGES.items():
            for rescale in (False, True):
                s = DDPMScheduler(
                    num_train_timesteps=T,
                    beta_start=start,
                    beta_end=end,
                    beta_schedule=name,
                    rescale_betas_zero_snr=rescale,
                )
                cases.append(
                    {
                        "beta_schedule": name,
                        "num_train_timesteps": T,
                        "beta_start": start,
                        "beta_end": end,
                        "rescale_betas_zero_snr": rescale,
                        "betas": floats(s.betas),
                        "alphas_cumprod": floats(s.alphas_cumprod),
                    }
                )
    continuous = []
    for start, end, tau in ((-3.0, 3.0, 1.0), (0.0, 3.0, 0.7), (-3.0, 3.0, 1.1)):
        T = 1000
        betas = chen_sigmoid_betas(T, start, end, tau)
        continuous.append(
            {
                "start": start,
                "end": end,
                "tau": tau,
                "num_train_timesteps": T,
                "betas": betas,
                "alphas_cumprod": list(np.cumprod(1.0 - np.array(betas))),
            }
        )
    timesteps = []
    for T in (1000, 50):
        for spacing in ("leading", "trailing", "linspace"):
            for offset in (0, 1) if spacing == "leading" else (0,):
                for n in (1, 2, 3, 7, 10, 20, 25, 50, 100, 250, 333, 999, 1000):
                    if n > T:
                        continue
                    s = DDPMScheduler(num_train_timesteps=T, timestep_spacing=spacing, steps_offset=offset)
                    s.set_timesteps(n)
                    ts = [int(v) for v in s.timesteps]
                    if max(ts) >= T:
                        continue  # diffusers would index past its schedule; we reject this as an error
                    timesteps.append(
                        {
                            "num_train_timesteps": T,
                            "timestep_spacing": spacing,
                            "steps_offset": offset,
                            "num_inference_steps": n,
                            "timesteps": ts,
                        }
                    )
    return {"cases": cases, "continuous_sigmoid": continuous, "timesteps": timesteps}


class InjectedNoise:
    """Replaces diffusers' randn_tensor in scheduling_ddpm so DDPM steps use our noise."""

    def __init__(self):
        self.queue = []

    def __call__(self, shape, generator=None, device=None, dtype=None, **_):
        noise = self.queue.pop(0)
        assert tuple(noise.shape) == tuple(shape)
        return noise.to(dtype)


INJECT = InjectedNoise()
scheduling_ddpm.randn_tensor = INJECT


def make_scheduler(kind, cfg, dtype):
    common = dict(
        num_train_timesteps=cfg["num_train_timesteps"],
        beta_schedule=cfg["beta_schedule"],
        beta_start=cfg["beta_start"],
        beta_end=cfg["beta_end"],
        rescale_betas_zero_snr=cfg["rescale_betas_zero_snr"],
        prediction_type=cfg["prediction_type"],
        clip_sample=cfg["clip_sample"],
        clip_sample_range=cfg["clip_sample_range"],
        timestep_spacing=cfg["timestep_spacing"],
        steps_offset=cfg["steps_offset"],
    )
    if kind == "ddpm":
        s = DDPMScheduler(variance_type=cfg["variance_type"], **common)
        s.one = torch.tensor(1.0, dtype=dtype)
    else:
        s = DDIMScheduler(set_alpha_to_one=cfg["set_alpha_to_one"], **common)
        s.final_alpha_cumprod = s.final_alpha_cumprod.to(dtype)
    # Same alphas_cumprod values (float32, exact in float64) in both runs; only the arithmetic differs.
    s.alphas_cumprod = s.alphas_cumprod.to(dtype)
    s.set_timesteps(cfg["num_inference_steps"])
    return s


def step(kind, s, cfg, model_output, t, sample, noise):
    if kind == "ddpm":
        if t > 0:
            INJECT.queue.append(noise)
        return s.step(model_output, t, sample)
    return s.step(
        model_output,
        t,
        sample,
        eta=cfg["eta"],
        use_clipped_model_output=cfg["use_clipped_model_output"],
        variance_noise=noise if cfg["eta"] > 0 else None,
    )


def prev_timestep(kind, s, cfg, t):
    if kind == "ddpm":
        return int(s.previous_timestep(t))
    return t - cfg["num_train_timesteps"] // cfg["num_inference_steps"]


SCHEDULES = [
    ("linear", False),
    ("squaredcos_cap_v2", False),
    ("scaled_linear", True),
]


def step_configs():
    i = 0
    for kind in ("ddpm", "ddim"):
        for prediction_type in ("epsilon", "sample", "v_prediction"):
            for spacing in ("leading", "trailing", "linspace"):
                for clip in (False, True):
                    variants = (
                        [{"variance_type": v} for v in ("fixed_small", "fixed_large", "learned_range")]
                        if kind == "ddpm"
                        else [
                            {"eta": eta, "set_alpha_to_one": one, "use_clipped_model_output": clip and eta == 0.5}
                            for eta in (0.0, 0.5, 1.0)
                            for one in (True, False)
                        ]
                    )
                    for variant in variants:
                        name, rescale = SCHEDULES[i % len(SCHEDULES)]
                        i += 1
                        if rescale and prediction_type == "epsilon":
                            rescale = False  # epsilon is undefined at zero terminal SNR
                        start, end = BETA_RANGES[name]
                        yield kind, {
                            "num_train_timesteps": 1000,
                            "beta_schedule": name,
                            "beta_start": start,
                            "beta_end": end,
                            "rescale_betas_zero_snr": rescale,
                            "prediction_type": prediction_type,
                            "timestep_spacing": spacing,
                            "steps_offset": 1 if spacing == "leading" else 0,
                            "num_inference_steps": 6,
                            "clip_sample": clip,
                            "clip_sample_range": 1.0,
                            **variant,
                        }


def steps():
    shape = (2, 3)
    cases = []
    schedules = {}
    for kind, cfg in step_configs():
        s64 = make_scheduler(kind, cfg, torch.float64)
        s32 = make_scheduler(kind, cfg, torch.float32)
        records = []
        for t in [int(v) for v in s64.timesteps]:
            sample = f32_normal(shape, 1.5)
            # A learned variance rides in C more channels: [prediction, variance output v].
            learned = cfg.get("variance_type") == "learned_range"
            model_output = f32_normal((shape[0], 2 * shape[1]) if learned else shape)
            noise = f32_normal(shape)
            outs = {}
            for label, s, dtype in (("f64", s64, torch.float64), ("f32", s32, torch.float32)):
                o = step(
                    kind,
                    s,
                    cfg,
                    torch.from_numpy(model_output).to(dtype),
                    t,
                    torch.from_numpy(sample).to(dtype),
                    torch.from_numpy(noise).to(dtype),
                )
                outs[f"prev_sample_{label}"] = floats(o.prev_sample)
                outs[f"pred_original_sample_{label}"] = floats(o.pred_original_sample)
            records.append(
                {
                    "timestep": t,
                    "prev_timestep": prev_timestep(kind, s64, cfg, t),
                    "sample": floats(torch.from_numpy(sample)),
                    "model_output": floats(torch.from_numpy(model_output)),
                    "noise": floats(torch.from_numpy(noise)),
                    **outs,
                }
            )
        cases.append(
            {
                "sampler": kind,
                "config": cfg,
                "shape": list(shape),
                "timesteps": [int(v) for v in s64.timesteps],
                "schedule_key": schedule_key(cfg),
                "steps": records,
            }
        )
        schedules[schedule_key(cfg)] = floats(s64.alphas_cumprod)
    return {"alphas_cumprod": schedules, "cases": cases}


def schedule_key(cfg):
    return cfg["beta_schedule"] + ("+zero_snr" if cfg["rescale_betas_zero_snr"] else "")


MIXTURE = {
    "weights": [0.5, 0.3, 0.2],
    "means": [[-1.5, 0.5], [1.0, 1.0], [0.5, -1.2]],
    "stds": [[0.3, 0.2], [0.25, 0.25], [0.15, 0.4]],
}


def gmm_x0(x_t, alpha_bar):
    """E[x0 | x_t] for the mixture, as in diffuse-core's gmm.rs (numpy, float64)."""
    a, sigma = math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)
    w = np.array(MIXTURE["weights"]) / sum(MIXTURE["weights"])
    mu, s = np.array(MIXTURE["means"]), np.array(MIXTURE["stds"])
    var = a * a * s**2 + sigma**2  # [K, D]
    diff = x_t[:, None, :] - a * mu[None]  # [B, K, D]
    log_p = np.log(w)[None] - 0.5 * np.sum(np.log(2 * np.pi * var)[None] + diff**2 / var[None], axis=2)
    r = np.exp(log_p - log_p.max(axis=1, keepdims=True))
    r /= r.sum(axis=1, keepdims=True)
    post = mu[None] + (a * s**2 / var)[None] * diff  # [B, K, D]
    return np.einsum("bk,bkd->bd", r, post)


def model_output(prediction_type, x_t, alpha_bar):
    x0 = gmm_x0(x_t, alpha_bar)
    a, sigma = math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)
    if prediction_type == "sample":
        return x0
    if prediction_type == "epsilon":
        return (x_t - a * x0) / sigma
    return (a * x_t - x0) / sigma


def pipelines():
    cases = []
    configs = [
        ("ddim", {"prediction_type": "epsilon", "timestep_spacing": "leading", "eta": 0.0}),
        ("ddim", {"prediction_type": "v_prediction", "timestep_spacing": "trailing", "eta": 0.0}),
        ("ddim", {"prediction_type": "sample", "timestep_spacing": "linspace", "eta": 1.0}),
        ("ddpm", {"prediction_type": "epsilon", "timestep_spacing": "leading", "variance_type": "fixed_small"}),
        ("ddpm", {"prediction_type": "v_prediction", "timestep_spacing": "trailing", "variance_type": "fixed_large"}),
    ]
    for kind, extra in configs:
        cfg = {
            "num_train_timesteps": 1000,
            "beta_schedule": "linear",
            "beta_start": 0.0001,
            "beta_end": 0.02,
            "rescale_betas_zero_snr": False,
            "steps_offset": 0,
            "num_inference_steps": 20,
            "clip_sample": False,
            "clip_sample_range": 1.0,
            "set_alpha_to_one": True,
            "use_clipped_model_output": False,
            "eta": 0.0,
            "variance_type": "fixed_small",
            **extra,
        }
        s = make_scheduler(kind, cfg, torch.float64)
        x = f32_normal((4, 2)).astype(np.float64)
        init = x.copy()
        step_noise = []
        for t in [int(v) for v in s.timesteps]:
            alpha_bar = float(s.alphas_cumprod[t])
            out = torch.from_numpy(model_output(cfg["prediction_type"], x, alpha_bar))
            needs_noise = t > 0 if kind == "ddpm" else cfg["eta"] > 0
            noise = torch.from_numpy(f32_normal((4, 2)).astype(np.float64)) if needs_noise else None
            if noise is not None:
                step_noise.append(floats(noise))
            x = step(kind, s, cfg, out, t, torch.from_numpy(x), noise).prev_sample.numpy()
        alphas_cumprod = floats(s.alphas_cumprod)
        cases.append(
            {
                "sampler": kind,
                "config": cfg,
                "init_noise": [float(v) for v in init.flatten()],
                "step_noise": step_noise,
                "samples": [float(v) for v in x.flatten()],
            }
        )
    return {"mixture": MIXTURE, "shape": [4, 2], "alphas_cumprod": alphas_cumprod, "cases": cases}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"diffusers_version": diffusers.__version__, "torch_version": torch.__version__}
    for name, build in (("schedules", schedules), ("steps", steps), ("pipelines", pipelines)):
        path = OUT / f"{name}.json"
        path.write_text(json.dumps({**meta, **build()}) + "\n")
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
