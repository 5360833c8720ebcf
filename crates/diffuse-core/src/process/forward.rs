//! The forward process q(x_t | x_0), its posterior q(x_{t−1} | x_t, x_0), and the conversions between
//! what a network predicts (ε, x_0, v) and what a sampler needs.

use std::str::FromStr;

use burn::tensor::Tensor;

use crate::error::DiffuseError;
use crate::tensor_ops::per_sample;

/// What the network is trained to output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PredictionType {
    /// The added noise ε (Ho et al. 2020).
    #[default]
    Epsilon,
    /// The clean sample x_0 (diffusers' `sample`).
    Sample,
    /// v = √ᾱ ε − √(1−ᾱ) x_0 (Salimans & Ho 2022).
    VPrediction,
}

impl FromStr for PredictionType {
    type Err = DiffuseError;

    fn from_str(name: &str) -> Result<Self, DiffuseError> {
        match name {
            "epsilon" => Ok(Self::Epsilon),
            "sample" => Ok(Self::Sample),
            "v_prediction" | "v-prediction" | "v" => Ok(Self::VPrediction),
            other => Err(DiffuseError::UnknownName {
                kind: "prediction type",
                name: other.to_string(),
                expected: "epsilon, sample, v_prediction",
            }),
        }
    }
}

impl PredictionType {
    /// The name diffusers writes in `scheduler_config.json`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Epsilon => "epsilon",
            Self::Sample => "sample",
            Self::VPrediction => "v_prediction",
        }
    }

    /// (x̂_0, ε̂) from a model output at noise level ᾱ_t (DDIM Eq. 12; Salimans & Ho 2022, §4).
    pub fn to_x0_and_eps<const D: usize>(
        &self,
        model_output: Tensor<D>,
        x_t: Tensor<D>,
        alpha_bar: f64,
    ) -> (Tensor<D>, Tensor<D>) {
        let (a, s) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
        match self {
            Self::Epsilon => {
                let x0 = (x_t - model_output.clone().mul_scalar(s)).div_scalar(a);
                (x0, model_output)
            }
            Self::Sample => {
                let eps = eps_from_x0(model_output.clone(), x_t, alpha_bar);
                (model_output, eps)
            }
            Self::VPrediction => {
                let x0 = x_t.clone().mul_scalar(a) - model_output.clone().mul_scalar(s);
                let eps = model_output.mul_scalar(a) + x_t.mul_scalar(s);
                (x0, eps)
            }
        }
    }

    /// x̂_0 from a model output whose row i is at noise level `alpha_bars[i]` (DDIM Eq. 12 per
    /// row, for batches that mix timesteps as training draws them).
    pub fn x0_per_row<const D: usize>(
        &self,
        model_output: Tensor<D>,
        x_t: Tensor<D>,
        alpha_bars: &[f64],
    ) -> Tensor<D> {
        let (a, s) = signal_and_noise_scales(alpha_bars, &x_t);
        match self {
            Self::Epsilon => (x_t - model_output * s) / a,
            Self::Sample => model_output,
            Self::VPrediction => x_t * a - model_output * s,
        }
    }

    /// The training target for this parameterisation given x_0 and ε, one ᾱ per batch row.
    pub fn target<const D: usize>(
        &self,
        x0: Tensor<D>,
        noise: Tensor<D>,
        alpha_bars: &[f64],
    ) -> Tensor<D> {
        match self {
            Self::Epsilon => noise,
            Self::Sample => x0,
            Self::VPrediction => {
                let (a, s) = signal_and_noise_scales(alpha_bars, &x0);
                a * noise - s * x0
            }
        }
    }

    /// Expresses an x̂_0 estimate in this parameterisation (what an exact denoiser outputs).
    pub fn from_x0<const D: usize>(
        &self,
        x0: Tensor<D>,
        x_t: Tensor<D>,
        alpha_bar: f64,
    ) -> Tensor<D> {
        match self {
            Self::Sample => x0,
            Self::Epsilon => eps_from_x0(x0, x_t, alpha_bar),
            // v = √ᾱ ε − √(1−ᾱ) x_0 with ε = (x_t − √ᾱ x_0)/√(1−ᾱ) gives v = (√ᾱ x_t − x_0)/√(1−ᾱ).
            Self::VPrediction => {
                (x_t.mul_scalar(alpha_bar.sqrt()) - x0).div_scalar((1.0 - alpha_bar).sqrt())
            }
        }
    }
}

/// ε = (x_t − √ᾱ x_0)/√(1−ᾱ), inverting DDPM Eq. 4.
fn eps_from_x0<const D: usize>(x0: Tensor<D>, x_t: Tensor<D>, alpha_bar: f64) -> Tensor<D> {
    (x_t - x0.mul_scalar(alpha_bar.sqrt())).div_scalar((1.0 - alpha_bar).sqrt())
}

/// The score ∇ log q(x_t) = −ε/√(1−ᾱ_t) (Song et al. 2021, Eq. 3 with a Gaussian kernel).
pub fn score_from_eps<const D: usize>(eps: Tensor<D>, alpha_bar: f64) -> Tensor<D> {
    eps.div_scalar(-(1.0 - alpha_bar).sqrt())
}

/// ε from a score: ε = −√(1−ᾱ_t) ∇ log q(x_t).
pub fn eps_from_score<const D: usize>(score: Tensor<D>, alpha_bar: f64) -> Tensor<D> {
    score.mul_scalar(-(1.0 - alpha_bar).sqrt())
}

/// (√ᾱ, √(1−ᾱ)) per batch row, shaped to broadcast over `like`.
fn signal_and_noise_scales<const D: usize>(
    alpha_bars: &[f64],
    like: &Tensor<D>,
) -> (Tensor<D>, Tensor<D>) {
    let signal: Vec<f64> = alpha_bars.iter().map(|a| a.sqrt()).collect();
    let noise: Vec<f64> = alpha_bars.iter().map(|a| (1.0 - a).sqrt()).collect();
    (per_sample(&signal, like), per_sample(&noise, like))
}

/// DDPM Eq. 4: x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε, one ᾱ per batch row.
pub fn q_sample<const D: usize>(x0: Tensor<D>, noise: Tensor<D>, alpha_bars: &[f64]) -> Tensor<D> {
    let (a, s) = signal_and_noise_scales(alpha_bars, &x0);
    a * x0 + s * noise
}

/// The Gaussian q(x_prev | x_t, x_0) between two noise levels ᾱ_t < ᾱ_prev (DDPM Eq. 6–7, with
/// β_t generalised to 1 − ᾱ_t/ᾱ_prev so it also holds between respaced timesteps).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Posterior {
    /// Coefficient of x_0 in the mean μ̃: √ᾱ_prev β_t / (1 − ᾱ_t).
    pub x0_coef: f64,
    /// Coefficient of x_t in the mean μ̃: √α_t (1 − ᾱ_prev) / (1 − ᾱ_t).
    pub xt_coef: f64,
    /// β̃_t = (1 − ᾱ_prev)/(1 − ᾱ_t) β_t, the "fixed small" variance, clamped at 1e-20 as diffusers does.
    pub variance: f64,
    /// β_t = 1 − ᾱ_t/ᾱ_prev, the "fixed large" variance.
    pub beta: f64,
}

impl Posterior {
    /// DDPM Eq. 7 between ᾱ_t and ᾱ_prev.
    pub fn new(alpha_bar_t: f64, alpha_bar_prev: f64) -> Self {
        let alpha = alpha_bar_t / alpha_bar_prev;
        let beta = 1.0 - alpha;
        let (one_minus_t, one_minus_prev) = (1.0 - alpha_bar_t, 1.0 - alpha_bar_prev);
        Self {
            x0_coef: alpha_bar_prev.sqrt() * beta / one_minus_t,
            xt_coef: alpha.sqrt() * one_minus_prev / one_minus_t,
            variance: (one_minus_prev / one_minus_t * beta).max(1e-20),
            beta,
        }
    }

    /// Between consecutive training timesteps t and t − 1 (ᾱ before the first step is 1).
    pub fn at_training_step(alphas_cumprod: &[f64], t: usize) -> Self {
        let prev = if t == 0 { 1.0 } else { alphas_cumprod[t - 1] };
        Self::new(alphas_cumprod[t], prev)
    }

    /// μ̃(x_t, x_0) = x0_coef·x_0 + xt_coef·x_t.
    pub fn mean<const D: usize>(&self, x0: Tensor<D>, x_t: Tensor<D>) -> Tensor<D> {
        x0.mul_scalar(self.x0_coef) + x_t.mul_scalar(self.xt_coef)
    }
}

/// log β̃_t with β̃_0 replaced by β̃_1, so the log stays finite at t = 0 (improved DDPM's
/// `posterior_log_variance_clipped`), on consecutive training timesteps.
pub fn posterior_log_variance_clipped(alphas_cumprod: &[f64], t: usize) -> f64 {
    let variance_at = |t: usize| Posterior::at_training_step(alphas_cumprod, t).variance;
    let t = if t == 0 && alphas_cumprod.len() > 1 {
        1
    } else {
        t
    };
    variance_at(t).ln()
}

#[cfg(test)]
mod tests {
    use burn::tensor::{DType, Device};

    use super::*;
    use crate::tensor_ops::{from_host_f64, relative_max_error, to_host_f64};

    fn tensor(values: &[f64]) -> Tensor<2> {
        from_host_f64(values.to_vec(), [2, 2], &Device::flex(), DType::F64)
    }

    #[test]
    fn every_parameterisation_round_trips_through_q_sample() {
        let (x0, eps) = ([0.5, -1.0, 2.0, 0.1], [-0.3, 1.2, 0.7, -2.0]);
        let alpha_bar = 0.37;
        let x_t = q_sample(tensor(&x0), tensor(&eps), &[alpha_bar, alpha_bar]);
        for kind in [
            PredictionType::Epsilon,
            PredictionType::Sample,
            PredictionType::VPrediction,
        ] {
            let target = kind.target(tensor(&x0), tensor(&eps), &[alpha_bar, alpha_bar]);
            let from_x0 = kind.from_x0(tensor(&x0), x_t.clone(), alpha_bar);
            let (target_host, from_x0_host) = (
                to_host_f64(target.clone()).unwrap(),
                to_host_f64(from_x0).unwrap(),
            );
            assert!(
                relative_max_error(&from_x0_host, &target_host) < 1e-12,
                "{kind:?}"
            );
            let (x0_hat, eps_hat) = kind.to_x0_and_eps(target, x_t.clone(), alpha_bar);
            assert!(
                relative_max_error(&to_host_f64(x0_hat).unwrap(), &x0) < 1e-12,
                "{kind:?}"
            );
            assert!(
                relative_max_error(&to_host_f64(eps_hat).unwrap(), &eps) < 1e-12,
                "{kind:?}"
            );
        }
        let score = score_from_eps(tensor(&eps), alpha_bar);
        let back = to_host_f64(eps_from_score(score, alpha_bar)).unwrap();
        assert!(relative_max_error(&back, &eps) < 1e-12);
    }

    #[test]
    fn posterior_matches_ddpm_equation_7_on_consecutive_steps() {
        let (betas, t) = ([1e-4, 2e-3, 0.03, 0.05], 2);
        let alphas_cumprod: Vec<f64> = betas
            .iter()
            .scan(1.0, |a, b| {
                *a *= 1.0 - b;
                Some(*a)
            })
            .collect();
        let p = Posterior::new(alphas_cumprod[t], alphas_cumprod[t - 1]);
        let (ab, ab_prev, beta) = (alphas_cumprod[t], alphas_cumprod[t - 1], betas[t]);
        assert!((p.beta - beta).abs() < 1e-15);
        assert!((p.variance - (1.0 - ab_prev) / (1.0 - ab) * beta).abs() < 1e-15);
        assert!((p.x0_coef - ab_prev.sqrt() * beta / (1.0 - ab)).abs() < 1e-15);
        assert!((p.xt_coef - (1.0 - beta).sqrt() * (1.0 - ab_prev) / (1.0 - ab)).abs() < 1e-15);
        let clipped = posterior_log_variance_clipped(&alphas_cumprod, 0);
        assert_eq!(clipped, posterior_log_variance_clipped(&alphas_cumprod, 1));
        assert!(clipped.is_finite());
    }
}
