//! The variational bound on −log p(x_0) of a data set in bits per dimension (Ho et al. 2020,
//! Eq. 5; Nichol & Dhariwal 2021, their `calc_bpd_loop`): L = L_T + Σ_{t≥1} L_{t−1} + L_0, each
//! term from [`crate::process::bound`], averaged over the samples.

use burn::tensor::{DType, Device, Tensor};

use crate::denoiser::Denoiser;
use crate::error::{DiffuseError, Result};
use crate::noise::SeededNoise;
use crate::process::bound::{model_log_variance, prior_bits_per_dim, vlb_terms_bits};
use crate::process::forward::q_sample;
use crate::process::schedule::NoiseSchedule;
use crate::process::variance::DdpmVariance;
use crate::tensor_ops::{from_host_f64, to_host_f64};

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

impl VlbTimesteps {
    /// The inner terms t ∈ 1..T−1 to evaluate.
    fn inner_terms(self, num_train_timesteps: usize) -> Result<Vec<usize>> {
        let last = num_train_timesteps - 1;
        let mut inner: Vec<usize> = match self {
            Self::All => (1..=last).collect(),
            Self::Evenly(k) if k >= 1 => (0..k)
                .map(|i| 1 + ((i as f64 + 0.5) * last as f64 / k as f64) as usize)
                .map(|t| t.min(last))
                .collect(),
            Self::Evenly(_) => {
                return Err(DiffuseError::config("evaluate at least one VLB term"));
            }
        };
        inner.dedup();
        Ok(inner)
    }
}

/// Term t of the bound per sample, in bits/dim: L_0 (the decoder) at t = 0, else L_t — the KL of
/// the posterior q(x_{t−1} | x_t, x_0) from the model's p(x_{t−1} | x_t) at a seeded x_t.
fn term_bits<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    schedule: &NoiseSchedule,
    x0: &Tensor<D>,
    class_labels: Option<&[usize]>,
    settings: &VlbSettings,
    t: usize,
) -> Result<Tensor<1>> {
    let shape = x0.dims();
    let batch = shape[0];
    let stream = settings.seed ^ (t as u64).wrapping_mul(0x9e37_79b9);
    let noise = SeededNoise::new(stream, 0..batch).next(shape, &settings.device, DType::F32);
    let alpha_bar = schedule.alpha_bar(t);
    let x_t = q_sample(x0.clone(), noise, &vec![alpha_bar; batch]);
    let (output, variance_output) =
        denoiser.predict_with_variance(x_t.clone(), &vec![t as f64; batch], class_labels)?;
    let (x0_pred, _) = denoiser
        .prediction_type()
        .to_x0_and_eps(output, x_t.clone(), alpha_bar);
    let timesteps = vec![t; batch];
    let log_variance = model_log_variance(
        schedule,
        &timesteps,
        settings.variance,
        variance_output,
        &x_t,
    )?;
    Ok(vlb_terms_bits(
        schedule,
        &timesteps,
        x0.clone(),
        x_t,
        x0_pred.clamp(-1.0, 1.0),
        log_variance,
    ))
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
    let inner = settings
        .timesteps
        .inner_terms(schedule.num_train_timesteps())?;
    let x0_tensor = from_host_f64(x0.to_vec(), shape, &settings.device, DType::F32);
    let mean = |bits: Tensor<1>| -> Result<f64> {
        Ok(to_host_f64(bits)?.iter().sum::<f64>() / batch as f64)
    };
    let all_terms: Vec<usize> = std::iter::once(0).chain(inner.iter().copied()).collect();
    let mut term_means = Vec::with_capacity(all_terms.len());
    for (done, &t) in all_terms.iter().enumerate() {
        let bits = term_bits(denoiser, schedule, &x0_tensor, class_labels, settings, t)?;
        term_means.push(mean(bits)?);
        on_term(done + 1, all_terms.len());
    }
    let prior = mean(prior_bits_per_dim(schedule, x0_tensor))?;
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
