#!/usr/bin/env python3
"""Golden terms of the variational bound, from improved DDPM's own formulas.

Writes crates/diffuse-core/tests/fixtures/vlb.json. The functions below are transcribed from
openai/improved-diffusion (improved_diffusion/losses.py: normal_kl,
approx_standard_normal_cdf, discretized_gaussian_log_likelihood; gaussian_diffusion.py:
q_posterior_mean_variance, the fixed-variance and LEARNED_RANGE branches of p_mean_variance,
_vb_terms_bpd, _prior_bpd), evaluated in float64 torch on the betas of diffusers' DDPMScheduler (linear,
1e-4..0.02, T = 1000; stored as `betas`, so the test uses exactly these). For two samples x_0 on 8-bit levels, a given x_t and a given clipped
x̂_0 at several t, each case stores the term in bits/dim for fixed-small, fixed-large and
learned-range variance (with a given variance output v), and the prior term L_T.

Run (from the repository root, with `pip install -r tools/reference/requirements.txt`):
    /opt/refenv/bin/python tools/reference/vlb_fixtures.py
"""

import json
import math
import pathlib

import numpy as np
import torch
from diffusers import DDPMScheduler

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/diffuse-core/tests/fixtures/vlb.json"


def normal_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + ((mean1 - mean2) ** 2) * torch.exp(-logvar2))


def approx_standard_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def discretized_gaussian_log_likelihood(x, *, means, log_scales):
    centered_x = x - means
    inv_stdv = torch.exp(-log_scales)
    plus_in = inv_stdv * (centered_x + 1.0 / 255.0)
    cdf_plus = approx_standard_normal_cdf(plus_in)
    min_in = inv_stdv * (centered_x - 1.0 / 255.0)
    cdf_min = approx_standard_normal_cdf(min_in)
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return torch.where(
        x < -0.999, log_cdf_plus,
        torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))))


class Diffusion:
    def __init__(self, betas):
        self.betas = betas
        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)
        self.num_timesteps = len(betas)

    def q_posterior_mean(self, x_start, x_t, t):
        return self.posterior_mean_coef1[t] * x_start + self.posterior_mean_coef2[t] * x_t

    def model_log_variance(self, t, variance, model_var_values):
        if variance == "fixed_small":
            return torch.tensor(self.posterior_log_variance_clipped[t], dtype=torch.float64)
        if variance == "fixed_large":
            return torch.tensor(np.log(np.append(self.posterior_variance[1], self.betas[1:]))[t],
                                dtype=torch.float64)
        min_log = self.posterior_log_variance_clipped[t]
        max_log = np.log(self.betas)[t]
        frac = (model_var_values + 1) / 2
        return frac * max_log + (1 - frac) * min_log

    def vb_terms_bpd(self, x_start, x_t, t, pred_xstart, variance, model_var_values):
        true_mean = self.q_posterior_mean(x_start, x_t, t)
        true_log_variance_clipped = torch.tensor(self.posterior_log_variance_clipped[t], dtype=torch.float64)
        model_mean = self.q_posterior_mean(pred_xstart, x_t, t)
        model_log_variance = self.model_log_variance(t, variance, model_var_values)
        kl = normal_kl(true_mean, true_log_variance_clipped, model_mean, model_log_variance)
        kl = kl.mean(dim=1) / math.log(2.0)
        decoder_nll = -discretized_gaussian_log_likelihood(
            x_start, means=model_mean, log_scales=0.5 * model_log_variance)
        decoder_nll = decoder_nll.mean(dim=1) / math.log(2.0)
        return decoder_nll if t == 0 else kl

    def prior_bpd(self, x_start):
        t = self.num_timesteps - 1
        mean = math.sqrt(self.alphas_cumprod[t]) * x_start
        log_variance = torch.tensor(math.log(1.0 - self.alphas_cumprod[t]), dtype=torch.float64)
        kl = normal_kl(mean, log_variance, torch.tensor(0.0, dtype=torch.float64),
                       torch.tensor(0.0, dtype=torch.float64))
        return kl.mean(dim=1) / math.log(2.0)


def main():
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear",
                              beta_start=1e-4, beta_end=0.02)
    diffusion = Diffusion(scheduler.betas.double().numpy())
    rng = np.random.default_rng(20261126)
    dim = 24
    x0 = torch.tensor(rng.integers(0, 256, size=(2, dim)) / 127.5 - 1.0)
    x0[0, :3] = torch.tensor([-1.0, 1.0, 0.0])  # both edge bins and the middle
    cases = []
    for t in [0, 1, 2, 10, 250, 500, 999]:
        a = diffusion.alphas_cumprod[t]
        noise = torch.tensor(rng.normal(size=(2, dim)))
        x_t = math.sqrt(a) * x0 + math.sqrt(1.0 - a) * noise
        pred = (x0 + 0.004 * torch.tensor(rng.normal(size=(2, dim)))).clamp(-1.0, 1.0)
        # Variance outputs around the [-1, 1] range a trained model uses, a little beyond it too.
        v = torch.tensor(rng.uniform(-1.2, 1.2, size=(2, dim)))
        case = {"t": t, "x_t": x_t.ravel().tolist(), "x0_predicted": pred.ravel().tolist(),
                "variance_output": v.ravel().tolist()}
        for variance in ("fixed_small", "fixed_large", "learned_range"):
            case[variance] = diffusion.vb_terms_bpd(x0, x_t, t, pred, variance, v).tolist()
        cases.append(case)
    fixture = {
        "betas": diffusion.betas.tolist(),
        "dim": dim,
        "x0": x0.ravel().tolist(),
        "prior_bits_per_dim": diffusion.prior_bpd(x0).tolist(),
        "cases": cases,
    }
    OUT.write_text(json.dumps(fixture))
    print(f"wrote {OUT}: {len(cases)} timesteps; decoder NLL at t=0 {cases[0]['fixed_small']}")


if __name__ == "__main__":
    main()
