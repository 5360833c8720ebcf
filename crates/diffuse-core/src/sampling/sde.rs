//! Score SDEs in continuous time t ∈ [0, 1] (Song et al. 2021, §3.4 and App. B–G): the VP,
//! sub-VP and VE processes, the reverse-SDE Euler–Maruyama predictor with the Langevin corrector
//! (predictor–corrector sampling, Alg. 1 with Algs. 4/5), and the probability-flow ODE (Eq. 13).
//!
//! The score comes from any discrete-time [`Denoiser`] trained on a VP schedule: a continuous
//! marginal N(a(t) x₀, s(t)² I) has the noise level σ = s/a of the VP timestep with the same
//! signal-to-noise ratio, so x/a·√ᾱ_τ is that timestep's input and ∇ log p_t(x) = −ε̂ / s(t).

use burn::tensor::Tensor;

use super::generate::{GenerationConfig, in_batches};
use crate::denoiser::Denoiser;
use crate::error::{DiffuseError, Result};
use crate::noise::SeededNoise;
use crate::process::schedule::NoiseSchedule;
use crate::process::sde::{Sde, score};
use crate::process::sigmas::schedule_sigmas;
use crate::tensor_ops::to_host_f64;

/// How to integrate the reverse process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SdeSampler {
    /// Reverse-SDE Euler–Maruyama predictor, then `corrector_steps` Langevin steps at
    /// signal-to-noise ratio `snr` per step (Alg. 1; `corrector_steps` 0 is plain
    /// Euler–Maruyama). Returns the last predictor mean (no noise on the final step).
    PredictorCorrector { corrector_steps: usize, snr: f64 },
    /// The probability-flow ODE dx/dt = f x − ½ g² ∇ log p_t by Heun's method, then one
    /// Tweedie denoising step x₀ = (x + s² ∇ log p)/a at the end time.
    ProbabilityFlow,
}

impl SdeSampler {
    /// `pc` or `ode`, as the CLI spells them.
    pub fn name(&self) -> &'static str {
        match self {
            Self::PredictorCorrector { .. } => "pc",
            Self::ProbabilityFlow => "ode",
        }
    }
}

/// A continuous-time sampler: which process, how to integrate it, in how many steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SdeSettings {
    pub sde: Sde,
    pub sampler: SdeSampler,
    /// Steps from t = 1 to the end time (each PC step also runs the corrector steps).
    pub steps: usize,
}

/// One batch of reverse-time sampling from the prior N(0, s(1)² I), drawn from `z` (unit noise).
fn sample_sde_batch<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    schedule: &NoiseSchedule,
    settings: &SdeSettings,
    z: Tensor<D>,
    labels: Option<&[usize]>,
    noise: &mut SeededNoise,
) -> Result<Tensor<D>> {
    let SdeSettings {
        sde,
        sampler,
        steps,
    } = *settings;
    let sigmas = schedule_sigmas(schedule);
    let end = sde.end_time();
    let times: Vec<f64> = (0..=steps)
        .map(|i| 1.0 - (1.0 - end) * i as f64 / steps as f64)
        .collect();
    let (shape, device, dtype) = (z.dims(), z.device(), z.dtype());
    let score_at =
        |x: Tensor<D>, t: f64| score(denoiser, schedule, &sigmas, x, sde.marginal(t), labels);
    let mut x = z.mul_scalar(sde.marginal(1.0).1);
    for (step, window) in times.windows(2).enumerate() {
        let (t, t_next) = (window[0], window[1]);
        let dt = t_next - t; // negative: time runs backwards
        match sampler {
            SdeSampler::PredictorCorrector {
                corrector_steps,
                snr,
            } => {
                for _ in 0..corrector_steps {
                    let grad = score_at(x.clone(), t)?;
                    let step_noise = noise.next(shape, &device, dtype);
                    x = langevin_step(x, grad, step_noise, snr, langevin_alpha(&sde, t))?;
                }
                // Reverse SDE: dx = [f x − g² ∇ log p] dt + g dw̄ (Eq. 6), Euler–Maruyama.
                let (f, g) = sde.drift_and_diffusion(t);
                let grad = score_at(x.clone(), t)?;
                let mean = x.clone() + (x.mul_scalar(f) - grad.mul_scalar(g * g)).mul_scalar(dt);
                x = if step + 1 == steps {
                    mean
                } else {
                    mean + noise
                        .next(shape, &device, dtype)
                        .mul_scalar(g * (-dt).sqrt())
                };
            }
            SdeSampler::ProbabilityFlow => {
                // Heun on dx/dt = f x − ½ g² ∇ log p (Eq. 13).
                let velocity = |x: Tensor<D>, t: f64| -> Result<Tensor<D>> {
                    let (f, g) = sde.drift_and_diffusion(t);
                    let grad = score_at(x.clone(), t)?;
                    Ok(x.mul_scalar(f) - grad.mul_scalar(0.5 * g * g))
                };
                let k1 = velocity(x.clone(), t)?;
                let euler = x.clone() + k1.clone().mul_scalar(dt);
                let k2 = velocity(euler, t_next)?;
                x = x + (k1 + k2).mul_scalar(0.5 * dt);
            }
        }
    }
    if sampler == SdeSampler::ProbabilityFlow {
        // Tweedie: E[x₀ | x_ε] = (x + s² ∇ log p) / a.
        let (a, s) = sde.marginal(end);
        let grad = score_at(x.clone(), end)?;
        x = (x + grad.mul_scalar(s * s)).div_scalar(a);
    }
    Ok(x)
}

/// The Langevin step's α: DDPM's α_i = 1 − β_i at the matching one of 1000 scales for VP,
/// 1 otherwise (Song et al.'s code).
fn langevin_alpha(sde: &Sde, t: f64) -> f64 {
    match *sde {
        Sde::Vp { beta_min, beta_max } => 1.0 - (beta_min + t * (beta_max - beta_min)) / 1000.0,
        _ => 1.0,
    }
}

/// Langevin MCMC step (Song et al. Alg. 4/5) with one step size for the batch, as their code
/// has it: ε = 2 α (snr · mean ‖z‖ / mean ‖∇ log p‖)², norms per sample then averaged. A
/// per-sample ratio would take huge steps where the score vanishes (at modes), which in low
/// dimensions biases the samples; the price is that with a corrector, samples depend on the
/// batch they are drawn in.
fn langevin_step<const D: usize>(
    x: Tensor<D>,
    grad: Tensor<D>,
    z: Tensor<D>,
    snr: f64,
    alpha: f64,
) -> Result<Tensor<D>> {
    let mean_norm = |t: Tensor<D>| -> Result<f64> {
        let per_sample: usize = t.dims()[1..].iter().product();
        let values = to_host_f64(t)?;
        let norms: Vec<f64> = values
            .chunks(per_sample)
            .map(|v| v.iter().map(|x| x * x).sum::<f64>().sqrt())
            .collect();
        Ok(norms.iter().sum::<f64>() / norms.len() as f64)
    };
    let ratio = snr * mean_norm(z.clone())? / mean_norm(grad.clone())?.max(1e-12);
    let step = 2.0 * alpha * ratio * ratio;
    Ok(x + grad.mul_scalar(step) + z.mul_scalar((2.0 * step).sqrt()))
}

/// Draws `config.count` samples by reverse-time integration of the settings' SDE, the
/// score from `denoiser` (a VP-trained model on `schedule`). Noise is seeded per sample, as in
/// [`super::generate`].
pub fn generate_sde<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    schedule: &NoiseSchedule,
    settings: &SdeSettings,
    item_shape: &[usize],
    config: &GenerationConfig,
) -> Result<Vec<f64>> {
    if settings.steps == 0 {
        return Err(DiffuseError::config("SDE sampling needs at least one step"));
    }
    in_batches(item_shape, config, &mut |z, labels, noise| {
        sample_sde_batch(denoiser, schedule, settings, z, labels, noise)
    })
}
