//! DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), matching diffusers' `DDPMScheduler.step`.

use std::str::FromStr;

use burn::tensor::Tensor;

use super::StepOutput;
use super::x0_limit::X0Limit;
use crate::error::DiffuseError;
use crate::error::Result;
use crate::forward::{Posterior, PredictionType};
use crate::schedule::NoiseSchedule;

/// The reverse-step variance σ_t² (DDPM §3.2: both choices give similar results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DdpmVariance {
    /// σ² = β̃_t, the posterior variance: optimal for deterministic x_0.
    #[default]
    FixedSmall,
    /// σ² = β_t: optimal for x_0 ~ N(0, I).
    FixedLarge,
}

impl FromStr for DdpmVariance {
    type Err = DiffuseError;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "fixed-small" | "fixed_small" => Ok(Self::FixedSmall),
            "fixed-large" | "fixed_large" => Ok(Self::FixedLarge),
            other => Err(DiffuseError::UnknownName {
                kind: "variance type",
                name: other.to_string(),
                expected: "fixed-small, fixed-large",
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
        }
    }

    fn std(&self, posterior: &Posterior) -> f64 {
        match self {
            Self::FixedSmall => posterior.variance.sqrt(),
            Self::FixedLarge => posterior.beta.sqrt(),
        }
    }
}

/// Options of the DDPM sampler.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DdpmOptions {
    pub variance: DdpmVariance,
    /// Clipping or dynamic thresholding of x̂_0.
    pub x0_limit: X0Limit,
}

/// One ancestral step x_t → x_prev: x̂_0 from the model, the posterior mean of Eq. 7, plus σ_t z
/// (Algorithm 2, line 4). `prev_t` is `None` at the last step, where ᾱ_prev = 1; `noise` is only
/// used when t > 0, as in diffusers.
#[allow(clippy::too_many_arguments)]
pub fn ddpm_step<const D: usize>(
    schedule: &NoiseSchedule,
    t: usize,
    prev_t: Option<usize>,
    prediction_type: PredictionType,
    options: &DdpmOptions,
    model_output: Tensor<D>,
    sample: Tensor<D>,
    noise: Option<Tensor<D>>,
) -> Result<StepOutput<D>> {
    let alpha_bar_t = schedule.alpha_bar(t);
    let alpha_bar_prev = prev_t.map_or(1.0, |p| schedule.alpha_bar(p));
    let (x0, _) = prediction_type.to_x0_and_eps(model_output, sample.clone(), alpha_bar_t);
    let x0 = options.x0_limit.apply(x0)?;
    let posterior = Posterior::new(alpha_bar_t, alpha_bar_prev);
    let mean = posterior.mean(x0.clone(), sample);
    let prev_sample = match noise {
        Some(z) if t > 0 => mean + z.mul_scalar(options.variance.std(&posterior)),
        _ => mean,
    };
    Ok(StepOutput {
        prev_sample,
        pred_original_sample: x0,
    })
}
