//! DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), matching diffusers' `DDPMScheduler.step`.

use std::str::FromStr;

use burn::tensor::Tensor;

use super::x0_limit::X0Limit;
use super::{DiscreteStep, Evaluation, SamplerState, StepContext, StepOutput};
use crate::error::DiffuseError;
use crate::error::Result;
use crate::forward::Posterior;
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
    fn fixed_std(&self, posterior: &Posterior) -> Option<f64> {
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

/// Options of the DDPM sampler.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DdpmOptions {
    pub variance: DdpmVariance,
    /// Clipping or dynamic thresholding of x̂_0.
    pub x0_limit: X0Limit,
}

/// One ancestral step x_t → x_prev: x̂_0 from the model, the posterior mean of Eq. 7, plus σ_t z
/// (Algorithm 2, line 4). `prev_t` is `None` at the last step, where ᾱ_prev = 1; `noise` is only
/// used when t > 0, as in diffusers. With a learned variance `model_output` holds 2C channels,
/// the prediction then the variance output, as diffusers' `DDPMScheduler.step` takes it.
pub fn ddpm_step<const D: usize>(
    step: &DiscreteStep<'_>,
    options: &DdpmOptions,
    model_output: Tensor<D>,
    sample: Tensor<D>,
    noise: Option<Tensor<D>>,
) -> Result<StepOutput<D>> {
    let (schedule, t, prev_t) = (step.schedule, step.t, step.prev_t);
    let alpha_bar_t = schedule.alpha_bar(t);
    let alpha_bar_prev = prev_t.map_or(1.0, |p| schedule.alpha_bar(p));
    let (model_output, variance_output) = if options.variance.is_learned() {
        let (prediction, variance) = split_variance_output(model_output, sample.dims()[1])?;
        (prediction, Some(variance))
    } else {
        (model_output, None)
    };
    let (x0, _) = step
        .prediction_type
        .to_x0_and_eps(model_output, sample.clone(), alpha_bar_t);
    let x0 = options.x0_limit.apply(x0)?;
    let posterior = Posterior::new(alpha_bar_t, alpha_bar_prev);
    let mean = posterior.mean(x0.clone(), sample);
    let prev_sample = match (
        noise,
        options.variance.fixed_std(&posterior),
        variance_output,
    ) {
        (Some(z), Some(std), _) if t > 0 => mean + z.mul_scalar(std),
        (Some(z), None, Some(v)) if t > 0 => {
            let rows = v.dims()[0];
            let log_variance = learned_range_log_variance(
                v,
                &vec![posterior.beta.ln(); rows],
                &vec![posterior.variance.ln(); rows],
            );
            mean + z * log_variance.mul_scalar(0.5).exp()
        }
        _ => mean,
    };
    Ok(StepOutput {
        prev_sample,
        pred_original_sample: x0,
    })
}

/// DDPM remembers nothing between steps: its state is its options.
impl<const D: usize> SamplerState<D> for DdpmOptions {
    fn step(&mut self, ctx: &StepContext<'_>, e: Evaluation<D>) -> Result<Tensor<D>> {
        let step = ctx.discrete_step(e.index);
        Ok(ddpm_step(&step, self, e.model_output, e.sample, e.noise)?.prev_sample)
    }
}
