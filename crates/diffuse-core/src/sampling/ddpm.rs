//! DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), matching diffusers' `DDPMScheduler.step`.

use burn::tensor::Tensor;

use super::x0_limit::X0Limit;
use super::{DiscreteStep, Evaluation, SamplerState, StepContext, StepOutput};
use crate::error::Result;
use crate::process::forward::Posterior;
use crate::process::variance::{DdpmVariance, learned_range_log_variance, split_variance_output};

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
