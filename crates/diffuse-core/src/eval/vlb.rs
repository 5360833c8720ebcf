//! The variational bound on −log p(x_0) in bits per dimension (Ho et al. 2020, Eq. 5; Nichol &
//! Dhariwal 2021, §2.1 and their `calc_bpd_loop`): L = L_T + Σ_{t≥1} L_{t−1} + L_0 with
//!   L_T     = KL(q(x_T | x_0) ‖ N(0, I)),
//!   L_{t−1} = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)),
//!   L_0     = −log p_θ(x_0 | x_1) under a Gaussian discretised to the 256 levels of 8-bit data.
//! Timesteps here are 0-based like diffusers': term t compares q(x_{t−1} | x_t, x_0) with the
//! model at t, and t = 0 is the decoder. Per-element arithmetic runs on the host in f64.

use burn::tensor::{DType, Device};

use crate::denoiser::Denoiser;
use crate::error::{DiffuseError, Result};
use crate::forward::{Posterior, posterior_log_variance_clipped, q_sample};
use crate::noise::SeededNoise;
use crate::sampler::DdpmVariance;
use crate::schedule::NoiseSchedule;
use crate::tensor_ops::{from_host_f64, to_host_f64};

/// KL(N(μ₁, e^{v₁}) ‖ N(μ₂, e^{v₂})) of one coordinate, in nats (improved DDPM's `normal_kl`).
pub fn normal_kl(mean1: f64, log_var1: f64, mean2: f64, log_var2: f64) -> f64 {
    0.5 * (-1.0 + log_var2 - log_var1
        + (log_var1 - log_var2).exp()
        + (mean1 - mean2).powi(2) * (-log_var2).exp())
}

/// Φ(x) by the tanh approximation the improved-DDPM decoder uses (Page 1977).
fn approx_standard_normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
}

/// log P(x) of one coordinate x ∈ [−1, 1] of 8-bit data under N(mean, e^{2 log_scale})
/// discretised to bins of width 2/255, the edge bins reaching to ±∞ (Ho et al. 2020, Eq. 13).
pub fn discretized_gaussian_log_likelihood(x: f64, mean: f64, log_scale: f64) -> f64 {
    let inv_std = (-log_scale).exp();
    let centred = x - mean;
    let cdf_plus = approx_standard_normal_cdf(inv_std * (centred + 1.0 / 255.0));
    let cdf_min = approx_standard_normal_cdf(inv_std * (centred - 1.0 / 255.0));
    if x < -0.999 {
        cdf_plus.max(1e-12).ln()
    } else if x > 0.999 {
        (1.0 - cdf_min).max(1e-12).ln()
    } else {
        (cdf_plus - cdf_min).max(1e-12).ln()
    }
}

/// L_T of one sample in bits/dim: KL(N(√ᾱ_T x_0, 1 − ᾱ_T) ‖ N(0, 1)) averaged over coordinates.
pub fn prior_bits_per_dim(schedule: &NoiseSchedule, x0: &[f64]) -> f64 {
    let alpha_bar = schedule.alpha_bar(schedule.num_train_timesteps() - 1);
    let log_var = (1.0 - alpha_bar).ln();
    mean_bits(
        x0.iter()
            .map(|&x| normal_kl(alpha_bar.sqrt() * x, log_var, 0.0, 0.0)),
    )
}

/// log σ_t² of p_θ(x_{t−1} | x_t): β̃_t (clipped at t = 0), or β_t with β̃_1 at t = 0 (improved
/// DDPM's choice, so the decoder keeps a sensible width).
pub fn reverse_log_variance(schedule: &NoiseSchedule, t: usize, variance: DdpmVariance) -> f64 {
    let alphas_cumprod = schedule.alphas_cumprod();
    match (variance, t) {
        (DdpmVariance::FixedSmall, _) | (DdpmVariance::FixedLarge, 0) => {
            posterior_log_variance_clipped(alphas_cumprod, t)
        }
        (DdpmVariance::FixedLarge, _) => schedule.betas()[t].ln(),
    }
}

/// Term t of the bound for one sample in bits/dim, given x_0, x_t and the model's x̂_0 (already
/// clipped if the sampler clips): the decoder NLL at t = 0, otherwise the posterior KL.
pub fn vlb_term_bits_per_dim(
    schedule: &NoiseSchedule,
    t: usize,
    variance: DdpmVariance,
    x0: &[f64],
    x_t: &[f64],
    x0_predicted: &[f64],
) -> f64 {
    let posterior = Posterior::at_training_step(schedule.alphas_cumprod(), t);
    let mean = |x0: f64, x_t: f64| posterior.x0_coef * x0 + posterior.xt_coef * x_t;
    let model_log_var = reverse_log_variance(schedule, t, variance);
    let coordinates = x0.iter().zip(x_t).zip(x0_predicted);
    if t == 0 {
        mean_bits(coordinates.map(|((&x0, &x_t), &pred)| {
            -discretized_gaussian_log_likelihood(x0, mean(pred, x_t), 0.5 * model_log_var)
        }))
    } else {
        let true_log_var = posterior_log_variance_clipped(schedule.alphas_cumprod(), t);
        mean_bits(coordinates.map(|((&x0, &x_t), &pred)| {
            normal_kl(mean(x0, x_t), true_log_var, mean(pred, x_t), model_log_var)
        }))
    }
}

/// Mean of per-coordinate nats, in bits.
fn mean_bits(nats: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = nats.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / count.max(1) as f64 / std::f64::consts::LN_2
}

/// Which terms L_{t} (t = 1..T−1) to evaluate: all of them, or K evenly spaced ones whose mean
/// stands in for the rest (a stratified estimate of the sum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlbTimesteps {
    All,
    Evenly(usize),
}

/// The bound of a data set, averaged over its samples, in bits/dim.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VlbReport {
    pub bits_per_dim: f64,
    /// L_T.
    pub prior_bits_per_dim: f64,
    /// L_0.
    pub decoder_bits_per_dim: f64,
    /// Σ_{t=1}^{T−1} L_t (estimated from `terms_evaluated` of them unless all were).
    pub diffusion_bits_per_dim: f64,
    pub terms_evaluated: usize,
    pub samples: usize,
}

/// How to evaluate the bound.
#[derive(Debug, Clone)]
pub struct VlbSettings {
    /// The reverse-process variance σ_t² the model samples with.
    pub variance: DdpmVariance,
    pub timesteps: VlbTimesteps,
    /// Draws each sample's x_t noise, per term.
    pub seed: u64,
    pub device: Device,
}

/// The variational bound of `x0` (rows of `shape`, values in [−1, 1] on 8-bit levels) under
/// `denoiser`; x̂_0 is clipped to [−1, 1] as improved DDPM's `calc_bpd_loop` does.
/// `on_term(done, total)` reports progress.
pub fn variational_bound<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    schedule: &NoiseSchedule,
    x0: &[f64],
    shape: [usize; D],
    class_labels: Option<&[usize]>,
    settings: &VlbSettings,
    on_term: &mut dyn FnMut(usize, usize),
) -> Result<VlbReport> {
    let VlbSettings {
        variance,
        timesteps,
        seed,
        ref device,
    } = *settings;
    let batch = shape[0];
    let numel: usize = shape[1..].iter().product();
    if batch == 0 || x0.len() != batch * numel {
        return Err(DiffuseError::config(format!(
            "{} values do not form the {batch} samples of shape {:?}",
            x0.len(),
            &shape[1..]
        )));
    }
    let last = schedule.num_train_timesteps() - 1;
    let mut inner: Vec<usize> = match timesteps {
        VlbTimesteps::All => (1..=last).collect(),
        VlbTimesteps::Evenly(k) if k >= 1 => (0..k)
            .map(|i| 1 + ((i as f64 + 0.5) * last as f64 / k as f64) as usize)
            .map(|t| t.min(last))
            .collect(),
        VlbTimesteps::Evenly(_) => {
            return Err(DiffuseError::config("evaluate at least one VLB term"));
        }
    };
    inner.dedup();
    let x0_tensor = from_host_f64(x0.to_vec(), shape, device, DType::F32);
    let rows = |values: &[f64], i: usize| values[i * numel..(i + 1) * numel].to_vec();
    let mut term_means = Vec::with_capacity(inner.len() + 1);
    let all_terms: Vec<usize> = std::iter::once(0).chain(inner.iter().copied()).collect();
    for (done, &t) in all_terms.iter().enumerate() {
        let noise = SeededNoise::new(seed ^ (t as u64).wrapping_mul(0x9e37_79b9), 0..batch).next(
            shape,
            device,
            DType::F32,
        );
        let alpha_bar = schedule.alpha_bar(t);
        let x_t = q_sample(x0_tensor.clone(), noise, &vec![alpha_bar; batch]);
        let output = denoiser.predict(x_t.clone(), &vec![t as f64; batch], class_labels)?;
        let (x0_pred, _) = denoiser
            .prediction_type()
            .to_x0_and_eps(output, x_t.clone(), alpha_bar);
        let x0_pred = to_host_f64(x0_pred.clamp(-1.0, 1.0))?;
        let x_t = to_host_f64(x_t)?;
        let mean = (0..batch)
            .map(|i| {
                vlb_term_bits_per_dim(
                    schedule,
                    t,
                    variance,
                    &rows(x0, i),
                    &rows(&x_t, i),
                    &rows(&x0_pred, i),
                )
            })
            .sum::<f64>()
            / batch as f64;
        term_means.push(mean);
        on_term(done + 1, all_terms.len());
    }
    let prior = (0..batch)
        .map(|i| prior_bits_per_dim(schedule, &rows(x0, i)))
        .sum::<f64>()
        / batch as f64;
    let decoder = term_means[0];
    let inner_mean = term_means[1..].iter().sum::<f64>() / inner.len() as f64;
    let diffusion = inner_mean * last as f64;
    Ok(VlbReport {
        bits_per_dim: prior + decoder + diffusion,
        prior_bits_per_dim: prior,
        decoder_bits_per_dim: decoder,
        diffusion_bits_per_dim: diffusion,
        terms_evaluated: all_terms.len(),
        samples: batch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::BetaSchedule;

    fn schedule() -> NoiseSchedule {
        let linear = BetaSchedule::Linear {
            beta_start: 1e-4,
            beta_end: 0.02,
        };
        NoiseSchedule::new(&linear, 1000, false).unwrap()
    }

    #[test]
    fn a_perfect_prediction_with_the_posterior_variance_costs_nothing() {
        // With x̂_0 = x_0 the means agree, so only a variance mismatch is left in the KL.
        let s = schedule();
        let x0 = [0.5, -0.25, 1.0];
        let x_t = [0.1, 0.3, -0.2];
        let kl = vlb_term_bits_per_dim(&s, 500, DdpmVariance::FixedSmall, &x0, &x_t, &x0);
        assert!(kl.abs() < 1e-12, "{kl}");
        let large = vlb_term_bits_per_dim(&s, 500, DdpmVariance::FixedLarge, &x0, &x_t, &x0);
        assert!(large > 0.0, "β_t > β̃_t costs a little: {large}");
    }

    #[test]
    fn the_decoder_puts_almost_all_mass_on_the_right_level_when_narrow() {
        // At t = 0 the reverse std is √β̃_1 ≈ 0.01 < half a bin (1/255): the right bin holds
        // most of the mass, so the NLL is below one bit per coordinate.
        let s = schedule();
        let x0 = [0.0, 1.0, -1.0];
        let nll = vlb_term_bits_per_dim(&s, 0, DdpmVariance::FixedSmall, &x0, &x0, &x0);
        assert!(nll > 0.0 && nll < 1.0, "{nll}");
    }
}
