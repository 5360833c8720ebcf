//! The terms of the variational bound on −log p(x_0) (Ho et al. 2020, Eq. 5; Nichol & Dhariwal
//! 2021, §2.1 and their `_vb_terms_bpd`), as tensors in bits per dimension:
//!   L_T     = KL(q(x_T | x_0) ‖ N(0, I)),
//!   L_{t−1} = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)),
//!   L_0     = −log p_θ(x_0 | x_1) under a Gaussian discretised to the 256 levels of 8-bit data.
//! Timesteps are 0-based like diffusers': term t compares q(x_{t−1} | x_t, x_0) with the model at
//! t, and t = 0 is the decoder. The hybrid training loss differentiates them; `diffuse nll`
//! sums them over a data set.

use burn::tensor::Tensor;

use super::variance::{DdpmVariance, learned_range_log_variance};
use crate::error::{DiffuseError, Result};
use crate::process::forward::{Posterior, posterior_log_variance_clipped};
use crate::process::schedule::NoiseSchedule;
use crate::tensor_ops::per_sample;

/// KL(N(μ₁, e^{v₁}) ‖ N(μ₂, e^{v₂})) per element, in nats (improved DDPM's `normal_kl`).
pub fn normal_kl<const D: usize>(
    mean1: Tensor<D>,
    log_var1: Tensor<D>,
    mean2: Tensor<D>,
    log_var2: Tensor<D>,
) -> Tensor<D> {
    let mean_term = (mean1 - mean2).powi_scalar(2) * log_var2.clone().neg().exp();
    (log_var2.clone() - log_var1.clone() + (log_var1 - log_var2).exp() + mean_term)
        .sub_scalar(1.0)
        .mul_scalar(0.5)
}

/// Φ(x) by the tanh approximation the improved-DDPM decoder uses (Page 1977).
fn approx_standard_normal_cdf<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let cubic = x.clone() + x.powi_scalar(3).mul_scalar(0.044715);
    cubic
        .mul_scalar((2.0 / std::f64::consts::PI).sqrt())
        .tanh()
        .add_scalar(1.0)
        .mul_scalar(0.5)
}

/// log P(x) per element, x ∈ [−1, 1] on 8-bit levels, under N(mean, e^{2 log_scale})
/// discretised to bins of width 2/255 whose edge bins reach to ±∞ (Ho et al. 2020, Eq. 13).
pub fn discretized_gaussian_log_likelihood<const D: usize>(
    x: Tensor<D>,
    mean: Tensor<D>,
    log_scale: Tensor<D>,
) -> Tensor<D> {
    let inv_std = log_scale.neg().exp();
    let centred = x.clone() - mean;
    let cdf_plus =
        approx_standard_normal_cdf(inv_std.clone() * centred.clone().add_scalar(1.0 / 255.0));
    let cdf_min = approx_standard_normal_cdf(inv_std * centred.sub_scalar(1.0 / 255.0));
    let log_cdf_plus = cdf_plus.clone().clamp_min(1e-12).log();
    let log_one_minus_cdf_min = cdf_min.clone().neg().add_scalar(1.0).clamp_min(1e-12).log();
    let log_cdf_delta = (cdf_plus - cdf_min).clamp_min(1e-12).log();
    log_cdf_delta
        .mask_where(x.clone().greater_elem(0.999), log_one_minus_cdf_min)
        .mask_where(x.lower_elem(-0.999), log_cdf_plus)
}

/// The mean over each row's elements of `nats`, in bits: [B, …] → [B].
pub fn row_mean_bits<const D: usize>(nats: Tensor<D>) -> Tensor<1> {
    let batch = nats.dims()[0];
    nats.reshape([batch as i32, -1])
        .mean_dim(1)
        .reshape([batch])
        .div_scalar(std::f64::consts::LN_2)
}

/// log σ_t² of p_θ(x_{t−1} | x_t) for each row's timestep, broadcast over `like`: β̃_t (clipped
/// at t = 0), β_t (with β̃_1 at t = 0, improved DDPM's choice so the decoder keeps a sensible
/// width), or for a learned variance the interpolation of Eq. 15 between log β_t and the clipped
/// log β̃_t from the model's variance output.
pub fn model_log_variance<const D: usize>(
    schedule: &NoiseSchedule,
    timesteps: &[usize],
    variance: DdpmVariance,
    variance_output: Option<Tensor<D>>,
    like: &Tensor<D>,
) -> Result<Tensor<D>> {
    let alphas_cumprod = schedule.alphas_cumprod();
    let clipped: Vec<f64> = timesteps
        .iter()
        .map(|&t| posterior_log_variance_clipped(alphas_cumprod, t))
        .collect();
    let log_beta: Vec<f64> = timesteps
        .iter()
        .map(|&t| schedule.betas()[t].ln())
        .collect();
    match (variance, variance_output) {
        (DdpmVariance::LearnedRange, Some(v)) => {
            Ok(learned_range_log_variance(v, &log_beta, &clipped))
        }
        (DdpmVariance::LearnedRange, None) => Err(DiffuseError::config(
            "the learned_range variance needs a model that outputs its variance (2 × C output \
             channels)",
        )),
        (DdpmVariance::FixedSmall, _) => Ok(per_sample(&clipped, like)),
        (DdpmVariance::FixedLarge, _) => {
            let large: Vec<f64> = timesteps
                .iter()
                .zip(log_beta.iter().zip(&clipped))
                .map(|(&t, (&beta, &clipped))| if t == 0 { clipped } else { beta })
                .collect();
            Ok(per_sample(&large, like))
        }
    }
}

/// Term t of the bound per row in bits/dim, row i at `timesteps[i]`, given x_0, x_t, the model's
/// x̂_0 (clipped if the sampler clips) and its log σ²: the decoder NLL at t = 0, otherwise the
/// posterior KL.
pub fn vlb_terms_bits<const D: usize>(
    schedule: &NoiseSchedule,
    timesteps: &[usize],
    x0: Tensor<D>,
    x_t: Tensor<D>,
    x0_predicted: Tensor<D>,
    model_log_variance: Tensor<D>,
) -> Tensor<1> {
    let alphas_cumprod = schedule.alphas_cumprod();
    let posteriors: Vec<Posterior> = timesteps
        .iter()
        .map(|&t| Posterior::at_training_step(alphas_cumprod, t))
        .collect();
    let coef =
        |f: fn(&Posterior) -> f64| per_sample(&posteriors.iter().map(f).collect::<Vec<_>>(), &x0);
    let (x0_coef, xt_coef) = (coef(|p| p.x0_coef), coef(|p| p.xt_coef));
    let mean = |x0: Tensor<D>| x0 * x0_coef.clone() + x_t.clone() * xt_coef.clone();
    let true_log_variance: Vec<f64> = timesteps
        .iter()
        .map(|&t| posterior_log_variance_clipped(alphas_cumprod, t))
        .collect();
    let model_mean = mean(x0_predicted);
    let kl = normal_kl(
        mean(x0.clone()),
        per_sample(&true_log_variance, &x0),
        model_mean.clone(),
        model_log_variance.clone(),
    );
    let decoder_nll =
        discretized_gaussian_log_likelihood(x0, model_mean, model_log_variance.mul_scalar(0.5))
            .neg();
    let is_decoder: Vec<f64> = timesteps.iter().map(|&t| f64::from(t == 0)).collect();
    let is_decoder = per_sample(&is_decoder, &kl);
    let terms = kl.clone() + (decoder_nll - kl) * is_decoder;
    row_mean_bits(terms)
}

/// L_T per row in bits/dim: KL(N(√ᾱ_T x_0, 1 − ᾱ_T) ‖ N(0, 1)).
pub fn prior_bits_per_dim<const D: usize>(schedule: &NoiseSchedule, x0: Tensor<D>) -> Tensor<1> {
    let alpha_bar = schedule.alpha_bar(schedule.num_train_timesteps() - 1);
    let zeros = x0.zeros_like();
    let log_var = zeros.clone().add_scalar((1.0 - alpha_bar).ln());
    row_mean_bits(normal_kl(
        x0.mul_scalar(alpha_bar.sqrt()),
        log_var,
        zeros.clone(),
        zeros,
    ))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{DType, Device};

    use super::*;
    use crate::process::schedule::BetaSchedule;
    use crate::tensor_ops::{from_host_f64, to_host_f64};

    fn schedule() -> NoiseSchedule {
        let linear = BetaSchedule::Linear {
            beta_start: 1e-4,
            beta_end: 0.02,
        };
        NoiseSchedule::new(&linear, 1000, false).unwrap()
    }

    fn term(t: usize, variance: DdpmVariance, x0: &[f64], x_t: &[f64]) -> f64 {
        let s = schedule();
        let row =
            |v: &[f64]| from_host_f64(v.to_vec(), [1, v.len()], &Device::default(), DType::F64);
        let log_variance = model_log_variance(&s, &[t], variance, None, &row(x0)).unwrap();
        let bits = vlb_terms_bits(&s, &[t], row(x0), row(x_t), row(x0), log_variance);
        to_host_f64(bits).unwrap()[0]
    }

    #[test]
    fn a_perfect_prediction_with_the_posterior_variance_costs_nothing() {
        // With x̂_0 = x_0 the means agree, so only a variance mismatch is left in the KL.
        let (x0, x_t) = ([0.5, -0.25, 1.0], [0.1, 0.3, -0.2]);
        let kl = term(500, DdpmVariance::FixedSmall, &x0, &x_t);
        assert!(kl.abs() < 1e-12, "{kl}");
        let large = term(500, DdpmVariance::FixedLarge, &x0, &x_t);
        assert!(large > 0.0, "β_t > β̃_t costs a little: {large}");
    }

    #[test]
    fn the_decoder_puts_almost_all_mass_on_the_right_level_when_narrow() {
        // At t = 0 the reverse std is √β̃_1 ≈ 0.01 < half a bin (1/255): the right bin holds
        // most of the mass, so the NLL is below one bit per coordinate.
        let x0 = [0.0, 1.0, -1.0];
        let nll = term(0, DdpmVariance::FixedSmall, &x0, &x0);
        assert!(nll > 0.0 && nll < 1.0, "{nll}");
    }

    #[test]
    fn a_learned_variance_without_its_output_is_an_error() {
        let x = from_host_f64(vec![0.0; 2], [1, 2], &Device::default(), DType::F32);
        let err = model_log_variance(&schedule(), &[3], DdpmVariance::LearnedRange, None, &x);
        assert!(err.unwrap_err().to_string().contains("2 × C"));
    }
}
