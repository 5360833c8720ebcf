//! The σ-space samplers of Karras et al. 2022 (EDM) and k-diffusion: Euler, Euler ancestral and
//! Heun, matching diffusers' `EulerDiscreteScheduler`, `EulerAncestralDiscreteScheduler` and
//! `HeunDiscreteScheduler`.
//!
//! They move x̃ = x_t/√ᾱ_t = x_0 + σ ε along the probability-flow ODE dx̃/dσ = (x̃ − D(x̃; σ))/σ
//! (EDM Eq. 3 with σ(t) = t); the network sees x̃/√(σ² + 1) = x_t.

use burn::tensor::Tensor;

use super::kind::SigmaSamplerOptions;
use super::{Evaluation, SamplerState, StepContext};
use crate::error::Result;
use crate::process::forward::PredictionType;

/// x̂_0 = D(x̃; σ) from a network output for input x̃/√(σ² + 1).
pub fn sigma_x0<const D: usize>(
    prediction_type: PredictionType,
    model_output: Tensor<D>,
    sample: Tensor<D>,
    sigma: f64,
) -> Tensor<D> {
    match prediction_type {
        PredictionType::Epsilon => sample - model_output.mul_scalar(sigma),
        PredictionType::Sample => model_output,
        // x_0 = α x_t − σ_vp v with x_t = x̃ α, α = 1/√(σ² + 1), σ_vp = σ α.
        PredictionType::VPrediction => {
            model_output.mul_scalar(-sigma / (sigma * sigma + 1.0).sqrt())
                + sample.div_scalar(sigma * sigma + 1.0)
        }
    }
}

/// The ODE's slope d = (x̃ − x̂_0)/σ (EDM Algorithm 1, line 4).
pub fn ode_derivative<const D: usize>(sample: Tensor<D>, x0: Tensor<D>, sigma: f64) -> Tensor<D> {
    (sample - x0).div_scalar(sigma)
}

/// Euler step from σ to σ_next (EDM Algorithm 1 without churn): x̃ + (σ_next − σ) d.
pub fn euler_step<const D: usize>(
    sample: Tensor<D>,
    x0: Tensor<D>,
    sigma: f64,
    sigma_next: f64,
) -> Tensor<D> {
    let d = ode_derivative(sample.clone(), x0, sigma);
    sample + d.mul_scalar(sigma_next - sigma)
}

/// The ancestral split of a step σ → σ_next into a deterministic step to σ_down and fresh noise of
/// scale σ_up, with σ_down² + σ_up² = σ_next² (k-diffusion's `get_ancestral_step`, η = 1).
pub fn ancestral_sigmas(sigma: f64, sigma_next: f64) -> (f64, f64) {
    let up = (sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next)
        / (sigma * sigma))
        .max(0.0)
        .sqrt();
    let down = (sigma_next * sigma_next - up * up).max(0.0).sqrt();
    (down, up)
}

/// Euler ancestral: an Euler step to σ_down, then σ_up z.
pub fn euler_ancestral_step<const D: usize>(
    sample: Tensor<D>,
    x0: Tensor<D>,
    sigma: f64,
    sigma_next: f64,
    noise: Tensor<D>,
) -> Tensor<D> {
    let (down, up) = ancestral_sigmas(sigma, sigma_next);
    euler_step(sample, x0, sigma, down) + noise.mul_scalar(up)
}

/// What Heun keeps between its two evaluations of one step.
#[derive(Debug, Clone)]
pub struct HeunPending<const D: usize> {
    /// x̃ at σ, where the step started.
    pub sample: Tensor<D>,
    /// The slope at σ.
    pub derivative: Tensor<D>,
    /// σ_next − σ.
    pub dt: f64,
}

/// Heun's first evaluation (EDM Algorithm 2, lines 5–7): the Euler predictor, and what the
/// correction needs.
pub fn heun_predict<const D: usize>(
    sample: Tensor<D>,
    x0: Tensor<D>,
    sigma: f64,
    sigma_next: f64,
) -> (Tensor<D>, HeunPending<D>) {
    let derivative = ode_derivative(sample.clone(), x0, sigma);
    let dt = sigma_next - sigma;
    let predicted = sample.clone() + derivative.clone().mul_scalar(dt);
    (
        predicted,
        HeunPending {
            sample,
            derivative,
            dt,
        },
    )
}

/// Heun's correction (EDM Algorithm 2, line 8): the trapezoidal rule with the slope at the
/// predicted point x̃' (σ_next > 0).
pub fn heun_correct<const D: usize>(
    pending: HeunPending<D>,
    predicted: Tensor<D>,
    x0: Tensor<D>,
    sigma_next: f64,
) -> Tensor<D> {
    let slope = ode_derivative(predicted, x0, sigma_next);
    let mean_slope = (pending.derivative + slope).mul_scalar(0.5);
    pending.sample + mean_slope.mul_scalar(pending.dt)
}

/// x̂_0 of an evaluation at `sigmas[index]`, limited as the options say, with σ and the next σ.
fn limited_x0<const D: usize>(
    options: &SigmaSamplerOptions,
    ctx: &StepContext<'_>,
    e: &Evaluation<D>,
) -> Result<(Tensor<D>, f64, f64)> {
    let (sigma, sigma_next) = (ctx.plan.sigmas[e.index], ctx.plan.sigmas[e.index + 1]);
    let x0 = sigma_x0(
        ctx.prediction_type,
        e.model_output.clone(),
        e.sample.clone(),
        sigma,
    );
    Ok((options.x0_limit.apply(x0)?, sigma, sigma_next))
}

/// Euler and Euler ancestral remember nothing between steps.
#[derive(Debug, Clone)]
pub struct EulerState {
    options: SigmaSamplerOptions,
    ancestral: bool,
}

impl EulerState {
    pub fn new(options: SigmaSamplerOptions, ancestral: bool) -> Self {
        Self { options, ancestral }
    }
}

impl<const D: usize> SamplerState<D> for EulerState {
    fn step(&mut self, ctx: &StepContext<'_>, e: Evaluation<D>) -> Result<Tensor<D>> {
        let (x0, sigma, sigma_next) = limited_x0(&self.options, ctx, &e)?;
        Ok(if self.ancestral {
            let z = e
                .noise
                .expect("the plan draws noise for every Euler ancestral step");
            euler_ancestral_step(e.sample, x0, sigma, sigma_next, z)
        } else {
            euler_step(e.sample, x0, sigma, sigma_next)
        })
    }
}

/// Heun's state: between the two evaluations of a step, what the correction needs.
#[derive(Debug, Clone)]
pub struct HeunState<const D: usize> {
    options: SigmaSamplerOptions,
    pending: Option<HeunPending<D>>,
}

impl<const D: usize> HeunState<D> {
    pub fn new(options: SigmaSamplerOptions) -> Self {
        Self {
            options,
            pending: None,
        }
    }
}

impl<const D: usize> SamplerState<D> for HeunState<D> {
    /// An Euler predictor, then (at the repeated σ) the trapezoidal correction.
    fn step(&mut self, ctx: &StepContext<'_>, e: Evaluation<D>) -> Result<Tensor<D>> {
        let (x0, sigma, sigma_next) = limited_x0(&self.options, ctx, &e)?;
        Ok(match self.pending.take() {
            None => {
                let (predicted, pending) = heun_predict(e.sample, x0, sigma, sigma_next);
                self.pending = Some(pending);
                predicted
            }
            Some(pending) => heun_correct(pending, e.sample, x0, sigma),
        })
    }
}
