//! The reverse-process variance σ_t² of p(x_{t−1} | x_t): DDPM's two fixed choices, or learned by
//! the model as improved DDPM's interpolation between them.

use std::str::FromStr;

use burn::tensor::Tensor;

use super::forward::Posterior;
use crate::error::{DiffuseError, Result};
use crate::tensor_ops::per_sample;

/// The reverse-step variance σ_t² (DDPM §3.2: both choices give similar results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DdpmVariance {
    /// σ² = β̃_t, the posterior variance: optimal for deterministic x_0.
    #[default]
    FixedSmall,
    /// σ² = β_t: optimal for x_0 ~ N(0, I).
    FixedLarge,
    /// Learned by the model (Nichol & Dhariwal 2021, Eq. 15): its second C output channels v give
    /// log σ² = frac·log β_t + (1 − frac)·log β̃_t with frac = (v + 1)/2 (diffusers'
    /// `learned_range`).
    LearnedRange,
}

impl FromStr for DdpmVariance {
    type Err = DiffuseError;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "fixed-small" | "fixed_small" => Ok(Self::FixedSmall),
            "fixed-large" | "fixed_large" => Ok(Self::FixedLarge),
            "learned-range" | "learned_range" => Ok(Self::LearnedRange),
            other => Err(DiffuseError::UnknownName {
                kind: "variance type",
                name: other.to_string(),
                expected: "fixed-small, fixed-large, learned-range",
            }),
        }
    }
}

impl DdpmVariance {
    /// The name diffusers writes in `scheduler_config.json`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::FixedSmall => "fixed_small",
            Self::FixedLarge => "fixed_large",
            Self::LearnedRange => "learned_range",
        }
    }

    /// Whether the model supplies σ² through extra output channels.
    pub fn is_learned(&self) -> bool {
        matches!(self, Self::LearnedRange)
    }

    /// σ_t of a fixed variance; `None` when it is learned.
    pub fn fixed_std(&self, posterior: &Posterior) -> Option<f64> {
        match self {
            Self::FixedSmall => Some(posterior.variance.sqrt()),
            Self::FixedLarge => Some(posterior.beta.sqrt()),
            Self::LearnedRange => None,
        }
    }
}

/// log σ² = frac·log β_t + (1 − frac)·log β̃_t, frac = (v + 1)/2 (improved DDPM Eq. 15), from the
/// model's variance output v and, per batch row, the logs of the two fixed choices.
pub fn learned_range_log_variance<const D: usize>(
    variance_output: Tensor<D>,
    log_beta: &[f64],
    log_posterior_variance: &[f64],
) -> Tensor<D> {
    let max_log = per_sample(log_beta, &variance_output);
    let min_log = per_sample(log_posterior_variance, &variance_output);
    let frac = variance_output.add_scalar(1.0).div_scalar(2.0);
    frac * (max_log - min_log.clone()) + min_log
}

/// Splits a learned-variance model output [B, 2C, …] into the prediction and the variance output.
pub fn split_variance_output<const D: usize>(
    model_output: Tensor<D>,
    channels: usize,
) -> Result<(Tensor<D>, Tensor<D>)> {
    let out_channels = model_output.dims()[1];
    if out_channels != 2 * channels {
        return Err(DiffuseError::config(format!(
            "a learned variance needs a model with 2 × {channels} output channels (prediction and \
             variance); this one has {out_channels}"
        )));
    }
    let variance = model_output.clone().narrow(1, channels, channels);
    Ok((model_output.narrow(1, 0, channels), variance))
}
