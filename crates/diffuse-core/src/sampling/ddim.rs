//! DDIM (Song et al. 2021), matching diffusers' `DDIMScheduler.step`.

use burn::tensor::Tensor;

use super::x0_limit::X0Limit;
use super::{DiscreteStep, Evaluation, SamplerState, StepContext, StepOutput};
use crate::error::Result;
use crate::process::forward::PredictionType;

/// Options of the DDIM sampler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdimOptions {
    /// η: 0 is the deterministic DDIM, 1 has DDPM's posterior variance (Eq. 16).
    pub eta: f64,
    /// Clipping or dynamic thresholding of x̂_0.
    pub x0_limit: X0Limit,
    /// ᾱ after the last step: 1 (`true`, diffusers' default) or ᾱ_0.
    pub set_alpha_to_one: bool,
    /// Recompute ε̂ from the clipped x̂_0 (diffusers' `use_clipped_model_output`).
    pub use_clipped_model_output: bool,
}

impl Default for DdimOptions {
    fn default() -> Self {
        Self {
            eta: 0.0,
            x0_limit: X0Limit::None,
            set_alpha_to_one: true,
            use_clipped_model_output: false,
        }
    }
}

/// diffusers' DDIM previous timestep t − ⌊T/N⌋ (for every spacing), `None` past the start.
pub fn ddim_prev_timestep(
    t: usize,
    num_train_timesteps: usize,
    num_inference_steps: usize,
) -> Option<usize> {
    t.checked_sub(num_train_timesteps / num_inference_steps)
}

/// σ_t(η) = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev) (DDIM Eq. 16).
fn ddim_sigma(eta: f64, alpha_bar_t: f64, alpha_bar_prev: f64) -> f64 {
    let variance =
        (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t) * (1.0 - alpha_bar_t / alpha_bar_prev);
    eta * variance.sqrt()
}

/// x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ²) ε̂ + σ z (DDIM Eq. 12). `noise` is used when η > 0.
pub fn ddim_step<const D: usize>(
    step: &DiscreteStep<'_>,
    options: &DdimOptions,
    model_output: Tensor<D>,
    sample: Tensor<D>,
    noise: Option<Tensor<D>>,
) -> Result<StepOutput<D>> {
    let (schedule, t, prev_t) = (step.schedule, step.t, step.prev_t);
    let alpha_bar_t = schedule.alpha_bar(t);
    let final_alpha_bar = if options.set_alpha_to_one {
        1.0
    } else {
        schedule.alpha_bar(0)
    };
    let alpha_bar_prev = prev_t.map_or(final_alpha_bar, |p| schedule.alpha_bar(p));
    let (x0, eps) = step
        .prediction_type
        .to_x0_and_eps(model_output, sample.clone(), alpha_bar_t);
    let x0 = options.x0_limit.apply(x0)?;
    let eps = if options.use_clipped_model_output {
        PredictionType::Epsilon.from_x0(x0.clone(), sample, alpha_bar_t)
    } else {
        eps
    };
    let sigma = ddim_sigma(options.eta, alpha_bar_t, alpha_bar_prev);
    // At ᾱ_t = 0 and η = 1 the radicand is 0 exactly; rounding must not turn it into NaN.
    let direction = eps.mul_scalar((1.0 - alpha_bar_prev - sigma * sigma).max(0.0).sqrt());
    let mean = x0.clone().mul_scalar(alpha_bar_prev.sqrt()) + direction;
    let prev_sample = match noise {
        Some(z) if options.eta > 0.0 => mean + z.mul_scalar(sigma),
        _ => mean,
    };
    Ok(StepOutput {
        prev_sample,
        pred_original_sample: x0,
    })
}

/// DDIM remembers nothing between steps: its state is its options.
impl<const D: usize> SamplerState<D> for DdimOptions {
    fn step(&mut self, ctx: &StepContext<'_>, e: Evaluation<D>) -> Result<Tensor<D>> {
        let step = ctx.discrete_step(e.index);
        Ok(ddim_step(&step, self, e.model_output, e.sample, e.noise)?.prev_sample)
    }
}
