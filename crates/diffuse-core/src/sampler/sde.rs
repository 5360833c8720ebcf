//! Score SDEs in continuous time t ∈ [0, 1] (Song et al. 2021, §3.4 and App. B–G): the VP,
//! sub-VP and VE processes, the reverse-SDE Euler–Maruyama predictor with the Langevin corrector
//! (predictor–corrector sampling, Alg. 1 with Algs. 4/5), and the probability-flow ODE (Eq. 13).
//!
//! The score comes from any discrete-time [`Denoiser`] trained on a VP schedule: a continuous
//! marginal N(a(t) x₀, s(t)² I) has the noise level σ = s/a of the VP timestep with the same
//! signal-to-noise ratio, so x/a·√ᾱ_τ is that timestep's input and ∇ log p_t(x) = −ε̂ / s(t).

use burn::tensor::Tensor;

use super::generate::{GenerationConfig, in_batches};
use super::grid::{schedule_sigmas, sigma_to_t};
use crate::denoiser::Denoiser;
use crate::error::{DiffuseError, Result};
use crate::noise::SeededNoise;
use crate::schedule::NoiseSchedule;
use crate::tensor_ops::to_host_f64;

/// A forward SDE dx = f(t) x dt + g(t) dw with a Gaussian marginal N(a(t) x₀, s(t)² I).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sde {
    /// Variance preserving, β(t) = β_min + t (β_max − β_min) (DDPM's continuum limit; β_min
    /// 0.1, β_max 20 match DDPM's linear 1e-4…0.02 over T = 1000).
    Vp { beta_min: f64, beta_max: f64 },
    /// Sub-variance preserving: VP's drift with a smaller diffusion, s(t) = 1 − a(t)² (Eq. 34).
    SubVp { beta_min: f64, beta_max: f64 },
    /// Variance exploding, σ(t) = σ_min (σ_max/σ_min)^t (NCSN's continuum limit).
    Ve { sigma_min: f64, sigma_max: f64 },
}

impl Sde {
    /// Song et al.'s defaults: VP and sub-VP β 0.1…20; VE σ 0.01…50.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "vp" => Ok(Self::Vp {
                beta_min: 0.1,
                beta_max: 20.0,
            }),
            "subvp" | "sub-vp" => Ok(Self::SubVp {
                beta_min: 0.1,
                beta_max: 20.0,
            }),
            "ve" => Ok(Self::Ve {
                sigma_min: 0.01,
                sigma_max: 50.0,
            }),
            other => Err(DiffuseError::config(format!(
                "unknown SDE `{other}`: use vp, subvp or ve"
            ))),
        }
    }

    /// The name [`Sde::from_name`] takes.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Vp { .. } => "vp",
            Self::SubVp { .. } => "subvp",
            Self::Ve { .. } => "ve",
        }
    }

    /// ∫₀ᵗ β(u) du of the VP-type processes.
    fn integrated_beta(beta_min: f64, beta_max: f64, t: f64) -> f64 {
        beta_min * t + 0.5 * (beta_max - beta_min) * t * t
    }

    /// (a(t), s(t)) of the marginal q(x_t | x₀) = N(a x₀, s² I).
    pub fn marginal(&self, t: f64) -> (f64, f64) {
        match *self {
            Self::Vp { beta_min, beta_max } => {
                let a = (-0.5 * Self::integrated_beta(beta_min, beta_max, t)).exp();
                (a, (1.0 - a * a).sqrt())
            }
            Self::SubVp { beta_min, beta_max } => {
                let a = (-0.5 * Self::integrated_beta(beta_min, beta_max, t)).exp();
                (a, 1.0 - a * a)
            }
            Self::Ve {
                sigma_min,
                sigma_max,
            } => (1.0, sigma_min * (sigma_max / sigma_min).powf(t)),
        }
    }

    /// f(t) of the drift f(t)·x, and g(t).
    pub fn drift_and_diffusion(&self, t: f64) -> (f64, f64) {
        match *self {
            Self::Vp { beta_min, beta_max } => {
                let beta = beta_min + t * (beta_max - beta_min);
                (-0.5 * beta, beta.sqrt())
            }
            Self::SubVp { beta_min, beta_max } => {
                let beta = beta_min + t * (beta_max - beta_min);
                let discount = 1.0 - (-2.0 * Self::integrated_beta(beta_min, beta_max, t)).exp();
                (-0.5 * beta, (beta * discount).sqrt())
            }
            Self::Ve {
                sigma_min,
                sigma_max,
            } => {
                let sigma = sigma_min * (sigma_max / sigma_min).powf(t);
                (0.0, sigma * (2.0 * (sigma_max / sigma_min).ln()).sqrt())
            }
        }
    }

    /// Where sampling stops: Song et al.'s ε (1e-3 for VP-type, 1e-5 for VE).
    pub fn end_time(&self) -> f64 {
        match self {
            Self::Ve { .. } => 1e-5,
            _ => 1e-3,
        }
    }

    /// The Langevin step's α: DDPM's α_i = 1 − β_i at the matching one of 1000 scales for VP,
    /// 1 otherwise (Song et al.'s code).
    fn langevin_alpha(&self, t: f64) -> f64 {
        match *self {
            Self::Vp { beta_min, beta_max } => {
                1.0 - (beta_min + t * (beta_max - beta_min)) / 1000.0
            }
            _ => 1.0,
        }
    }
}

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

/// The VP training step τ whose noise level σ_τ = √((1 − ᾱ_τ)/ᾱ_τ) is s/a, its ᾱ_τ, and the
/// scale √ᾱ_τ / a that takes x to that step's input. Below the schedule's first step (or past
/// its last) τ is clamped there, and the score is that step's.
fn snr_matching(
    schedule: &NoiseSchedule,
    schedule_sigmas: &[f64],
    (a, s): (f64, f64),
) -> (f64, f64, f64) {
    let timestep = sigma_to_t(s / a, schedule_sigmas);
    let alpha_bar = schedule.alpha_bar_at(timestep);
    (timestep, alpha_bar, alpha_bar.sqrt() / a)
}

/// The score ∇_x log p_t(x) at the marginal (a, s), from a VP-trained denoiser.
pub fn score<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    schedule: &NoiseSchedule,
    schedule_sigmas: &[f64],
    x: Tensor<D>,
    (a, s): (f64, f64),
    class_labels: Option<&[usize]>,
) -> Result<Tensor<D>> {
    let batch = x.dims()[0];
    let (timestep, alpha_bar, input_scale) = snr_matching(schedule, schedule_sigmas, (a, s));
    let x_vp = x.mul_scalar(input_scale);
    let output = denoiser.predict(x_vp.clone(), &vec![timestep; batch], class_labels)?;
    let (_, eps) = denoiser
        .prediction_type()
        .to_x0_and_eps(output, x_vp, alpha_bar);
    Ok(eps.div_scalar(-s))
}

/// [`score`] and the vector–Jacobian product wᵀ ∂(∇_x log p_t)/∂x for the cotangent `w`. ε̂ is
/// c_out·output + c_x·x_vp with scalar coefficients, so its VJP is the same map applied to the
/// output's VJP and w; x_vp = k x and score = −ε̂/s then contribute the factor −k/s.
pub fn score_and_vjp<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    schedule: &NoiseSchedule,
    schedule_sigmas: &[f64],
    x: Tensor<D>,
    (a, s): (f64, f64),
    class_labels: Option<&[usize]>,
    w: Tensor<D>,
) -> Result<(Tensor<D>, Tensor<D>)> {
    let batch = x.dims()[0];
    let (timestep, alpha_bar, input_scale) = snr_matching(schedule, schedule_sigmas, (a, s));
    let x_vp = x.mul_scalar(input_scale);
    let (output, output_vjp) = denoiser.predict_with_vjp(
        x_vp.clone(),
        &vec![timestep; batch],
        class_labels,
        w.clone(),
    )?;
    let prediction = denoiser.prediction_type();
    let (_, eps) = prediction.to_x0_and_eps(output, x_vp, alpha_bar);
    let (_, eps_vjp) = prediction.to_x0_and_eps(output_vjp, w, alpha_bar);
    Ok((eps.div_scalar(-s), eps_vjp.mul_scalar(-input_scale / s)))
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
                    x = langevin_step(x, grad, step_noise, snr, sde.langevin_alpha(t))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marginals_follow_from_the_drift_and_diffusion() {
        // For a point mass x₀, d(s²)/dt = 2 f s² + g² (the variance ODE of a linear SDE,
        // Särkkä & Solin Eq. 5.51) and d(log a)/dt = f.
        for sde in ["vp", "subvp", "ve"].map(|n| Sde::from_name(n).unwrap()) {
            for t in [0.1, 0.5, 0.9] {
                let h = 1e-6;
                let (a0, s0) = sde.marginal(t - h);
                let (a1, s1) = sde.marginal(t + h);
                let (f, g) = sde.drift_and_diffusion(t);
                let s = sde.marginal(t).1;
                let dvar = (s1 * s1 - s0 * s0) / (2.0 * h);
                let dlog_a = (a1.ln() - a0.ln()) / (2.0 * h);
                let var_rhs = 2.0 * f * s * s + g * g;
                assert!(
                    (dvar - var_rhs).abs() < 1e-5 * var_rhs.abs().max(1.0),
                    "{sde:?} t {t}"
                );
                assert!((dlog_a - f).abs() < 1e-6, "{sde:?} t {t}");
            }
        }
    }
}
