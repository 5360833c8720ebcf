#!/usr/bin/env python3
"""Golden whole-loop sampler runs from diffusers, for the multistep / Karras-style sampler tests.

Writes crates/diffuse-core/tests/fixtures/samplers.json: complete sampling loops of diffusers'
DPMSolverMultistepScheduler (dpmsolver++ and sde-dpmsolver++), UniPCMultistepScheduler,
EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, HeunDiscreteScheduler and PNDMScheduler,
each driven by the exact Gaussian-mixture denoiser of scheduler_fixtures.py (MIXTURE, gmm_x0,
model_output) from fixed initial noise, with every random draw the scheduler makes injected and
recorded. Each case stores the scheduler config (as save_config would write it), its timesteps and
sigmas, the timesteps the model was called with, the noise and the final samples.

The model is called with fractional timesteps by some schedulers (Karras sigmas in Euler/Heun); t
is mapped to alpha_bar exactly as diffuse-core's NoiseSchedule::alpha_bar_at does (log sigma
interpolated linearly between neighbouring training steps).

Note that diffusers does not keep the loop in float64: the schedulers' sigmas are float32 tensors,
and DPMSolverMultistep, EulerDiscrete and EulerAncestralDiscrete cast the sample to float32 inside
step() ("upcast"), so these fixtures carry float32-level rounding (compare with ~1e-5 tolerance).

Run (from the repository root, with `pip install -r tools/reference/requirements.txt`):
    /opt/refenv/bin/python tools/reference/sampler_fixtures.py
"""

import json
import math
import pathlib
import sys

import diffusers
import numpy as np
import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers import (
    scheduling_dpmsolver_multistep,
    scheduling_euler_ancestral_discrete,
    scheduling_euler_discrete,
)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from scheduler_fixtures import MIXTURE, gmm_x0  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "diffuse-core" / "tests" / "fixtures"
SEED = 20261126
SHAPE = (4, 2)

LINEAR = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear")
SCALED_LINEAR = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
COSINE = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="squaredcos_cap_v2")

CLASSES = {
    "dpmsolver++": DPMSolverMultistepScheduler,
    "dpmsolver++-sde": DPMSolverMultistepScheduler,
    "unipc": UniPCMultistepScheduler,
    "euler": EulerDiscreteScheduler,
    "euler-ancestral": EulerAncestralDiscreteScheduler,
    "heun": HeunDiscreteScheduler,
    "pndm": PNDMScheduler,
}
DETERMINISTIC = ("dpmsolver++", "unipc", "euler", "heun", "pndm")
SHORT = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}


class NoiseInjector:
    """Replaces randn_tensor in a scheduler module: draws float32-rounded unit normals from our rng
    and records every draw, in order (even ones the scheduler then multiplies by zero)."""

    def __init__(self):
        self.rng = None
        self.draws = []

    def __call__(self, shape, generator=None, device=None, dtype=None, **_):
        noise = self.rng.standard_normal(tuple(shape)).astype(np.float32).astype(np.float64)
        self.draws.append([float(v) for v in noise.flatten()])
        return torch.from_numpy(noise).to(dtype or torch.float32)


INJECT = NoiseInjector()
for _module in (scheduling_euler_ancestral_discrete, scheduling_dpmsolver_multistep, scheduling_euler_discrete):
    _module.randn_tensor = INJECT


class MixtureModel:
    """The exact denoiser, called with a (possibly fractional) timestep as diffuse-core does."""

    def __init__(self, alphas_cumprod, prediction_type):
        self.ac = np.asarray(alphas_cumprod, dtype=np.float64)
        self.sigmas = np.sqrt((1.0 - self.ac) / self.ac)
        self.prediction_type = prediction_type

    def alpha_bar_at(self, t):
        t = min(max(t, 0.0), float(len(self.ac) - 1))
        lo, hi = math.floor(t), math.ceil(t)
        if lo == hi:
            return float(self.ac[lo])
        w = t - lo
        log_sigma = (1.0 - w) * math.log(self.sigmas[lo]) + w * math.log(self.sigmas[hi])
        return 1.0 / (1.0 + math.exp(2.0 * log_sigma))

    def __call__(self, x_t, t):
        ab = self.alpha_bar_at(t)
        x0 = gmm_x0(x_t, ab)
        a, sigma = math.sqrt(ab), math.sqrt(1.0 - ab)
        if self.prediction_type == "sample":
            return x0
        if self.prediction_type == "epsilon":
            return (x_t - a * x0) / sigma
        return (a * x_t - x0) / sigma


def strict(value):
    """save_config's JSON with non-finite floats as strings, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict(v) for v in value]
    return value


def floats(t):
    return [float(v) for v in torch.as_tensor(t).detach().to(torch.float64).flatten().tolist()]


def schedule_key(config):
    if config["beta_schedule"] == "squaredcos_cap_v2":
        return "squaredcos_cap_v2"
    return f'{config["beta_schedule"]}_{config["beta_start"]}_{config["beta_end"]}'


def run(sampler, config, n, init):
    """One diffusers-pipeline-style loop; returns the scheduler, model timesteps, noise, samples."""
    s = CLASSES[sampler](**config)
    s.set_timesteps(n)
    if hasattr(s, "set_begin_index"):
        # Walk the schedule from index 0. Without this diffusers finds the first step index by
        # looking t up in its timesteps and takes the *second* match when t repeats, which with
        # repeated timesteps (cosine + Karras) skips a step and then indexes past the sigmas.
        # For every other case here it changes nothing.
        s.set_begin_index(0)
    timesteps, sigmas = s.timesteps.clone(), getattr(s, "sigmas", None)
    sigmas = None if sigmas is None else torch.as_tensor(sigmas).clone()
    model = MixtureModel(floats(s.alphas_cumprod), config.get("prediction_type", "epsilon"))
    INJECT.draws = []
    x = torch.from_numpy(init) * s.init_noise_sigma
    x = x.to(torch.float64)
    model_timesteps = []
    for t in s.timesteps:
        inp = s.scale_model_input(x, t).to(torch.float64)
        model_timesteps.append(float(t))
        out = model(inp.numpy(), float(t))
        x = s.step(torch.from_numpy(out), t, x).prev_sample.to(torch.float64)
    assert torch.isfinite(x).all(), (sampler, config, n)
    return s, timesteps, sigmas, model_timesteps, list(INJECT.draws), x


def case_specs():
    """(name, sampler, config, N). Combinations diffusers rejects are dropped (see comments)."""
    specs = []

    def add(sampler, config, n, name):
        specs.append((name, sampler, config, n))

    preds = ("epsilon", "v_prediction", "sample")
    spacings = ("linspace", "leading", "trailing")

    # DPM-Solver++ (multistep, ODE)
    for order in (2, 3):
        for p in preds:
            for sp in spacings:
                cfg = dict(LINEAR, solver_order=order, prediction_type=p, timestep_spacing=sp)
                add("dpmsolver++", cfg, 10, f"dpmsolver++_o{order}_{SHORT[p]}_{sp}_n10")
    for order, p, sp, n in ((2, "epsilon", "linspace", 20), (3, "v_prediction", "trailing", 20),
                            (3, "sample", "leading", 20), (2, "sample", "leading", 5), (3, "epsilon", "linspace", 5)):
        cfg = dict(LINEAR, solver_order=order, prediction_type=p, timestep_spacing=sp)
        add("dpmsolver++", cfg, n, f"dpmsolver++_o{order}_{SHORT[p]}_{sp}_n{n}")
    for order in (2, 3):
        for n in (10, 20):
            cfg = dict(LINEAR, solver_order=order, use_karras_sigmas=True)
            add("dpmsolver++", cfg, n, f"dpmsolver++_o{order}_eps_karras_n{n}")
    # cosine + Karras: diffusers does not round these timesteps, but then truncates them to int64,
    # and the tiny last alpha_bar (sigma_max ~ 2e4) makes the first nine all 998 (see run()).
    add("dpmsolver++", dict(COSINE, solver_order=2, use_karras_sigmas=True), 20, "dpmsolver++_o2_eps_cosine_karras_n20")
    add("dpmsolver++", dict(SCALED_LINEAR, solver_order=2), 20, "dpmsolver++_o2_eps_scaled_linear_n20")
    add("dpmsolver++", dict(LINEAR, solver_order=2, solver_type="heun"), 10, "dpmsolver++_o2_eps_heun_n10")
    add("dpmsolver++", dict(LINEAR, solver_order=3, solver_type="heun", prediction_type="v_prediction"), 20,
        "dpmsolver++_o3_v_heun_n20")
    add("dpmsolver++", dict(LINEAR, solver_order=2, lower_order_final=False), 10,
        "dpmsolver++_o2_eps_no_lower_order_final_n10")
    add("dpmsolver++", dict(LINEAR, solver_order=2, final_sigmas_type="sigma_min"), 20,
        "dpmsolver++_o2_eps_sigma_min_n20")

    # SDE-DPM-Solver++
    sde = dict(LINEAR, algorithm_type="sde-dpmsolver++", solver_order=2)
    add("dpmsolver++-sde", dict(sde, timestep_spacing="linspace"), 10, "dpmsolver++-sde_o2_eps_linspace_n10")
    add("dpmsolver++-sde", dict(sde, prediction_type="v_prediction", timestep_spacing="trailing"), 20,
        "dpmsolver++-sde_o2_v_trailing_n20")
    add("dpmsolver++-sde", dict(sde, use_karras_sigmas=True), 15, "dpmsolver++-sde_o2_eps_karras_n15")

    # UniPC (bh2 by default)
    for order in (2, 3):
        for p in preds:
            for sp in spacings:
                cfg = dict(LINEAR, solver_order=order, prediction_type=p, timestep_spacing=sp)
                add("unipc", cfg, 10, f"unipc_o{order}_{SHORT[p]}_{sp}_n10")
    for order, p, sp, n in ((2, "epsilon", "linspace", 20), (3, "v_prediction", "trailing", 20),
                            (3, "sample", "leading", 20), (3, "epsilon", "trailing", 5)):
        cfg = dict(LINEAR, solver_order=order, prediction_type=p, timestep_spacing=sp)
        add("unipc", cfg, n, f"unipc_o{order}_{SHORT[p]}_{sp}_n{n}")
    for order in (2, 3):
        add("unipc", dict(LINEAR, solver_order=order, use_karras_sigmas=True), 10, f"unipc_o{order}_eps_karras_n10")
    add("unipc", dict(LINEAR, solver_order=3, use_karras_sigmas=True), 20, "unipc_o3_eps_karras_n20")
    # bh1 with final_sigmas_type "zero" gives NaN in diffusers at the last step (B(h) = h = -inf
    # times a zero predictor residual), so the bh1 cases end at sigma_min.
    add("unipc", dict(LINEAR, solver_order=2, solver_type="bh1", final_sigmas_type="sigma_min"), 10,
        "unipc_o2_eps_bh1_sigma_min_n10")
    add("unipc", dict(LINEAR, solver_order=3, solver_type="bh1", prediction_type="v_prediction",
                      final_sigmas_type="sigma_min"), 20, "unipc_o3_v_bh1_sigma_min_n20")
    add("unipc", dict(LINEAR, solver_order=2, final_sigmas_type="sigma_min"), 10, "unipc_o2_eps_sigma_min_n10")
    add("unipc", dict(LINEAR, solver_order=2, disable_corrector=[0]), 10, "unipc_o2_eps_disable_corrector0_n10")
    add("unipc", dict(COSINE, solver_order=2), 20, "unipc_o2_eps_cosine_n20")

    # Euler (ODE; s_churn = 0, so no noise is drawn)
    for p in preds:
        for sp in spacings:
            add("euler", dict(LINEAR, prediction_type=p, timestep_spacing=sp), 10, f"euler_{SHORT[p]}_{sp}_n10")
    add("euler", dict(LINEAR, use_karras_sigmas=True), 10, "euler_eps_karras_n10")
    add("euler", dict(LINEAR, prediction_type="v_prediction", use_karras_sigmas=True), 25, "euler_v_karras_n25")
    add("euler", dict(LINEAR, timestep_spacing="leading", steps_offset=1), 10, "euler_eps_leading_offset1_n10")
    add("euler", dict(COSINE), 20, "euler_eps_cosine_n20")
    add("euler", dict(LINEAR, final_sigmas_type="sigma_min"), 20, "euler_eps_sigma_min_n20")
    add("euler", dict(LINEAR), 20, "euler_eps_linspace_n20")

    # Euler ancestral. prediction_type "sample" is rejected by diffusers (NotImplementedError in step).
    for p in ("epsilon", "v_prediction"):
        for sp in spacings:
            add("euler-ancestral", dict(LINEAR, prediction_type=p, timestep_spacing=sp), 10,
                f"euler-ancestral_{SHORT[p]}_{sp}_n10")

    # Heun (its default betas are 0.00085/0.012, so LINEAR passes ours explicitly)
    for p in preds:
        for sp in spacings:
            add("heun", dict(LINEAR, prediction_type=p, timestep_spacing=sp), 10, f"heun_{SHORT[p]}_{sp}_n10")
    add("heun", dict(LINEAR, use_karras_sigmas=True), 10, "heun_eps_karras_n10")
    add("heun", dict(LINEAR, clip_sample=True), 10, "heun_eps_clip_sample_n10")
    add("heun", dict(LINEAR), 20, "heun_eps_linspace_n20")

    # PNDM. diffusers always steps from t to t - T//N (PLMS) or t - T//N//2 (PRK half steps)
    # whatever the spacing, so with linspace (spacing 111 for N=10) each step lands at t - 100
    # while the model is next called at t - 111; and trailing stops at t=99, whose prev
    # timestep -1 means final_alpha_cumprod. These cases pin that behaviour as it is.
    for skip in (False, True):
        for p in ("epsilon", "v_prediction"):
            for sp in ("leading", "linspace", "trailing"):
                cfg = dict(LINEAR, skip_prk_steps=skip, prediction_type=p, timestep_spacing=sp)
                tag = "plms" if skip else "prk"
                add("pndm", cfg, 10, f"pndm_{tag}_{SHORT[p]}_{sp}_n10")
    add("pndm", dict(LINEAR, skip_prk_steps=True), 25, "pndm_plms_eps_leading_n25")
    add("pndm", dict(LINEAR, skip_prk_steps=False), 20, "pndm_prk_eps_leading_n20")
    add("pndm", dict(LINEAR, skip_prk_steps=True, set_alpha_to_one=True), 10, "pndm_plms_eps_leading_alpha_one_n10")
    add("pndm", dict(LINEAR, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False), 20,
        "pndm_plms_eps_leading_offset1_n20")
    return specs


def main():
    rng = np.random.default_rng(SEED)
    INJECT.rng = rng
    schedules = {}
    cases = []
    rejected = []
    convergence = []
    names = set()
    for name, sampler, config, n in case_specs():
        assert name not in names, name
        names.add(name)
        init = rng.standard_normal(SHAPE).astype(np.float32).astype(np.float64)
        state = rng.bit_generator.state
        try:
            s, timesteps, sigmas, model_timesteps, draws, x = run(sampler, config, n, init)
        except Exception as e:  # noqa: BLE001 - diffusers rejecting a combination
            rejected.append((name, f"{type(e).__name__}: {e}"))
            rng.bit_generator.state = state
            continue
        key = schedule_key(config)
        ac = floats(s.alphas_cumprod)
        if key in schedules:
            assert schedules[key] == ac, key
        schedules[key] = ac
        cfg = strict(json.loads(s.to_json_string()))
        cases.append(
            {
                "name": name,
                "sampler": sampler,
                "num_inference_steps": n,
                "scheduler_config": cfg,
                "schedule_key": key,
                "timesteps": floats(timesteps),
                "sigmas": None if sigmas is None else floats(sigmas),
                "init_noise_sigma": float(s.init_noise_sigma),
                "init_noise": [float(v) for v in init.flatten()],
                "step_noise": draws,
                "model_timesteps": model_timesteps,
                "samples": [float(v) for v in x.flatten()],
            }
        )
        if sampler in DETERMINISTIC and n == 20:
            # Discretisation error only: N=50 should be much closer to N=200 than N=20 is.
            *_, fine = run(sampler, config, 200, init)
            *_, mid = run(sampler, config, 50, init)
            convergence.append((sampler, name, float((x - fine).abs().max()), float((mid - fine).abs().max())))

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "samplers.json"
    doc = {
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "mixture": MIXTURE,
        "shape": list(SHAPE),
        "alphas_cumprod": schedules,
        "cases": cases,
    }
    path.write_text(json.dumps(doc, allow_nan=False, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB, {len(cases)} cases)")
    counts = {}
    for c in cases:
        counts[c["sampler"]] = counts.get(c["sampler"], 0) + 1
    for sampler, k in counts.items():
        print(f"  {sampler:16s} {k:3d} cases")
    for name, why in rejected:
        print(f"  rejected by diffusers: {name}: {why}")
    print("self-check (not stored): max |x(N) - x(N=200)| for N = 20, 50")
    for sampler, name, err20, err50 in convergence:
        flag = "" if err50 < 0.05 and err50 < err20 else "  <-- not converging"
        print(f"  {sampler:12s} {name:44s} {err20:.2e} {err50:.2e}{flag}")


if __name__ == "__main__":
    main()
