//! Reverse-process samplers: each turns a denoiser's prediction into p(x_prev | x_t).
//!
//! Every sampler follows diffusers' loop: x_T = `init_noise_sigma` · z, then per model evaluation
//! the input is scaled (σ-space samplers), the denoiser predicts, and the sampler's step moves x.
//! Step coefficients are computed on the host in f64 and applied to tensors. [`kind`] names every
//! sampler and its capabilities; a [`SamplingPlan`] fixes its model evaluations; each sampler
//! family keeps what it remembers between evaluations in its own [`SamplerState`].

pub mod ddim;
pub mod ddpm;
pub mod dpm_solver;
pub mod euler;
pub mod generate;
pub mod grid;
pub mod guidance;
pub mod kind;
pub mod multistep;
pub mod paradigms;
pub mod plan;
pub mod pndm;
pub mod recipe;
pub mod sde;
pub mod unipc;
pub mod x0_limit;

use burn::tensor::Tensor;

use crate::error::Result;
use crate::process::forward::PredictionType;
use crate::process::schedule::NoiseSchedule;
pub use ddim::{DdimOptions, ddim_prev_timestep, ddim_step};
pub use ddpm::{DdpmOptions, ddpm_step};
pub use dpm_solver::{DpmSolverOptions, SecondOrderRule, dpm_solver_update};
pub use generate::{GenerationConfig, generate, generate_parallel, sample};
pub use grid::{FinalSigma, SigmaSpacing};
pub use kind::{
    Capabilities, SAMPLER_NAMES, SamplerKind, SamplerName, SamplerSettings, SigmaSamplerOptions,
};
pub use paradigms::{ParallelReport, ParallelSettings};
pub use plan::SamplingPlan;
pub use pndm::PndmOptions;
pub use recipe::{Drawn, Method, Model, PipelineSamples, Progress, Recipe, SamplerChoice};
pub use unipc::{UniPcOptions, UniPcVariant};
pub use x0_limit::X0Limit;

/// What one DDPM or DDIM step produces.
#[derive(Debug, Clone)]
pub struct StepOutput<const D: usize> {
    /// x_prev, the input of the next step.
    pub prev_sample: Tensor<D>,
    /// x̂_0 as estimated at this step (after clipping).
    pub pred_original_sample: Tensor<D>,
}

/// The move of a DDPM or DDIM step: from timestep `t` to `prev_t` (`None` past the first
/// timestep) of `schedule`, for a model that predicts `prediction_type`.
#[derive(Debug, Clone, Copy)]
pub struct DiscreteStep<'a> {
    pub schedule: &'a NoiseSchedule,
    pub t: usize,
    pub prev_t: Option<usize>,
    pub prediction_type: PredictionType,
}

/// Everything a sampler's step reads besides its own state.
#[derive(Debug, Clone, Copy)]
pub struct StepContext<'a> {
    pub plan: &'a SamplingPlan,
    pub schedule: &'a NoiseSchedule,
    pub prediction_type: PredictionType,
}

impl StepContext<'_> {
    /// The DDPM/DDIM move of evaluation `index`.
    pub fn discrete_step(&self, index: usize) -> DiscreteStep<'_> {
        DiscreteStep {
            schedule: self.schedule,
            t: self.plan.timesteps[index] as usize,
            prev_t: self.plan.prev_timestep(index),
            prediction_type: self.prediction_type,
        }
    }
}

/// What one model evaluation hands its sampler.
#[derive(Debug, Clone)]
pub struct Evaluation<const D: usize> {
    /// The evaluation's place in the plan.
    pub index: usize,
    /// The x the model input came from.
    pub sample: Tensor<D>,
    pub model_output: Tensor<D>,
    /// Step noise, where the plan draws it.
    pub noise: Option<Tensor<D>>,
}

/// A sampler family's update rule and what it remembers between model evaluations (the x̂₀
/// history of the multistep solvers, Heun's pending correction, PNDM's ε history).
pub trait SamplerState<const D: usize> {
    /// Moves the evaluation's sample by one evaluation of the plan.
    fn step(&mut self, ctx: &StepContext<'_>, evaluation: Evaluation<D>) -> Result<Tensor<D>>;
}
