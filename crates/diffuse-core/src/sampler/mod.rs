//! Reverse-process samplers: each turns a denoiser's prediction into p(x_prev | x_t).
//!
//! Every sampler follows diffusers' loop: x_T = `init_noise_sigma` · z, then per model evaluation
//! the input is scaled (σ-space samplers), the denoiser predicts, and the sampler's step moves x.
//! Step coefficients are computed on the host in f64 and applied to tensors; multistep samplers
//! keep their history in a [`SamplerRun`].

pub mod ddim;
pub mod ddpm;
pub mod dpm_solver;
pub mod euler;
pub mod grid;
pub mod paradigms;
pub mod pndm;
pub mod sde;
pub mod unipc;
pub mod x0_limit;

use burn::tensor::{DType, Device, Tensor};

use crate::denoiser::Denoiser;
use crate::error::{DiffuseError, Result};
use crate::forward::PredictionType;
use crate::noise::{NoiseSource, SeededNoise};
use crate::schedule::{NoiseSchedule, TimestepSpacing, inference_timesteps};
use crate::tensor_ops::{from_host_f64, to_host_f64};
pub use ddim::{DdimOptions, ddim_prev_timestep, ddim_step};
pub use ddpm::{
    DdpmOptions, DdpmVariance, ddpm_step, learned_range_log_variance, split_variance_output,
};
pub use dpm_solver::{DpmSolverOptions, SecondOrderRule, dpm_solver_update};
use euler::HeunPending;
pub use grid::{FinalSigma, SigmaSpacing};
pub use paradigms::{ParallelReport, ParallelSettings};
pub use pndm::PndmOptions;
use pndm::{PndmContext, PndmState};
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

/// Options of the σ-space samplers (Euler, Euler ancestral, Heun).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SigmaSamplerOptions {
    pub sigmas: SigmaSpacing,
    pub x0_limit: X0Limit,
}

/// A sampler and its options.
#[derive(Debug, Clone, PartialEq)]
pub enum SamplerKind {
    /// Ancestral sampling (Ho et al. 2020, Algorithm 2).
    Ddpm(DdpmOptions),
    /// DDIM (Song et al. 2021), η ≥ 0.
    Ddim(DdimOptions),
    /// DPM-Solver++ multistep, ODE or SDE (Lu et al. 2022b).
    DpmSolver(DpmSolverOptions),
    /// UniPC predictor–corrector (Zhao et al. 2023).
    UniPc(UniPcOptions),
    /// Euler on the probability-flow ODE in σ (Karras et al. 2022, Algorithm 1).
    Euler(SigmaSamplerOptions),
    /// Euler with ancestral noise (k-diffusion).
    EulerAncestral(SigmaSamplerOptions),
    /// Heun's second-order method (Karras et al. 2022, Algorithm 2).
    Heun(SigmaSamplerOptions),
    /// Pseudo numerical methods (Liu et al. 2022).
    Pndm(PndmOptions),
}

/// Sampler names accepted on the command line.
pub const SAMPLER_NAMES: &str =
    "ddpm, ddim, dpmsolver++, dpmsolver++-sde, unipc, euler, euler-ancestral, heun, pndm";

/// What a sampler can be configured with by name; each sampler takes the settings that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SamplerSettings {
    /// DDIM's η; giving it to another sampler is an error.
    pub eta: Option<f64>,
    /// Clipping or dynamic thresholding of x̂_0 (not for PNDM and Euler ancestral).
    pub x0_limit: X0Limit,
    /// DDPM's reverse variance.
    pub variance: DdpmVariance,
    /// DDIM's and PNDM's ᾱ after the last step: 1 or ᾱ_0 (defaults: DDIM 1, PNDM ᾱ_0).
    pub set_alpha_to_one: Option<bool>,
    /// Karras et al.'s σ spacing (dpmsolver++, unipc, euler, heun).
    pub karras_sigmas: bool,
    /// Order of dpmsolver++ (1–3) and unipc (1–3); default 2.
    pub solver_order: Option<usize>,
}

impl SamplerKind {
    /// The sampler named `name` (one of [`SAMPLER_NAMES`]) with `settings`.
    pub fn configured(name: &str, settings: &SamplerSettings) -> Result<Self> {
        settings.x0_limit.validate()?;
        let reject = |what: &str, given: bool| {
            if given {
                Err(DiffuseError::config(format!(
                    "{what} does not apply to the {name} sampler"
                )))
            } else {
                Ok(())
            }
        };
        reject("eta (--eta)", settings.eta.is_some() && name != "ddim")?;
        reject(
            "--karras-sigmas",
            settings.karras_sigmas && !Self::takes_karras_sigmas(name),
        )?;
        let ordered = Self::takes_solver_order(name);
        reject(
            "--solver-order",
            settings.solver_order.is_some() && !ordered,
        )?;
        reject(
            "clipping/thresholding of x0",
            settings.x0_limit != X0Limit::None && !Self::takes_x0_limit(name),
        )?;
        reject(
            "set_alpha_to_one",
            settings.set_alpha_to_one.is_some() && !matches!(name, "ddim" | "pndm"),
        )?;
        let order = settings.solver_order.unwrap_or(2);
        if ordered && !(1..=3).contains(&order) {
            return Err(DiffuseError::config(format!(
                "the solver order must be 1, 2 or 3 (got {order})"
            )));
        }
        let sigmas = SigmaSpacing {
            karras: settings.karras_sigmas,
            ..SigmaSpacing::default()
        };
        let sigma_options = SigmaSamplerOptions {
            sigmas,
            x0_limit: settings.x0_limit,
        };
        Ok(match name {
            "ddpm" => Self::Ddpm(DdpmOptions {
                variance: settings.variance,
                x0_limit: settings.x0_limit,
            }),
            "ddim" => {
                let eta = settings.eta.unwrap_or(0.0);
                if !(eta.is_finite() && eta >= 0.0) {
                    return Err(DiffuseError::config(format!(
                        "eta (--eta) must be a non-negative number (got {eta})"
                    )));
                }
                Self::Ddim(DdimOptions {
                    eta,
                    x0_limit: settings.x0_limit,
                    set_alpha_to_one: settings.set_alpha_to_one.unwrap_or(true),
                    ..DdimOptions::default()
                })
            }
            "dpmsolver++" | "dpmsolver++-sde" => Self::DpmSolver(DpmSolverOptions {
                order,
                stochastic: name == "dpmsolver++-sde",
                x0_limit: settings.x0_limit,
                sigmas,
                ..DpmSolverOptions::default()
            }),
            "unipc" => Self::UniPc(UniPcOptions {
                order,
                x0_limit: settings.x0_limit,
                sigmas,
                ..UniPcOptions::default()
            }),
            "euler" => Self::Euler(sigma_options),
            "euler-ancestral" => Self::EulerAncestral(sigma_options),
            "heun" => Self::Heun(sigma_options),
            "pndm" => Self::Pndm(PndmOptions {
                set_alpha_to_one: settings.set_alpha_to_one.unwrap_or(false),
                ..PndmOptions::default()
            }),
            other => {
                return Err(DiffuseError::UnknownName {
                    kind: "sampler",
                    name: other.to_string(),
                    expected: SAMPLER_NAMES,
                });
            }
        })
    }

    /// Whether the sampler named `name` can space its σ as Karras et al. do.
    pub fn takes_karras_sigmas(name: &str) -> bool {
        matches!(
            name,
            "dpmsolver++" | "dpmsolver++-sde" | "unipc" | "euler" | "heun"
        )
    }

    /// Whether the sampler named `name` forms x̂₀ that can be clipped or thresholded (PNDM steps
    /// on ε directly; Euler ancestral, like diffusers', never clips).
    pub fn takes_x0_limit(name: &str) -> bool {
        !matches!(name, "pndm" | "euler-ancestral")
    }

    /// Whether the sampler named `name` has a solver order.
    pub fn takes_solver_order(name: &str) -> bool {
        matches!(name, "dpmsolver++" | "dpmsolver++-sde" | "unipc")
    }

    /// The sampler's name as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ddpm(_) => "ddpm",
            Self::Ddim(_) => "ddim",
            Self::DpmSolver(o) if o.stochastic => "dpmsolver++-sde",
            Self::DpmSolver(_) => "dpmsolver++",
            Self::UniPc(_) => "unipc",
            Self::Euler(_) => "euler",
            Self::EulerAncestral(_) => "euler-ancestral",
            Self::Heun(_) => "heun",
            Self::Pndm(_) => "pndm",
        }
    }

    /// Whether the model is evaluated on x̃ = x_t/√ᾱ_t (σ-space samplers).
    fn in_sigma_space(&self) -> bool {
        matches!(
            self,
            Self::Euler(_) | Self::EulerAncestral(_) | Self::Heun(_)
        )
    }
}

/// A sampler bound to its model evaluations.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingPlan {
    pub sampler: SamplerKind,
    /// The training timestep of every model evaluation, noisiest first (fractional for some
    /// σ spacings; Heun and PNDM evaluate some timesteps more than once).
    pub timesteps: Vec<f64>,
    /// The σ grid of the σ-space and multistep samplers (one per evaluation plus the final σ);
    /// empty for DDPM, DDIM and PNDM, which step between timesteps.
    pub sigmas: Vec<f64>,
    /// x_T = init_noise_sigma · z.
    pub init_noise_sigma: f64,
    /// N as requested (diffusers' trailing spacing can yield one timestep more).
    pub num_inference_steps: usize,
    pub num_train_timesteps: usize,
    /// PNDM: how many leading evaluations are Runge–Kutta ones.
    prk_evaluations: usize,
}

impl SamplingPlan {
    /// Picks the model evaluations for N steps of `sampler` over `schedule` with `spacing`.
    pub fn new(
        sampler: SamplerKind,
        schedule: &NoiseSchedule,
        num_inference_steps: usize,
        spacing: TimestepSpacing,
        steps_offset: usize,
    ) -> Result<Self> {
        let num_train_timesteps = schedule.num_train_timesteps();
        let n = num_inference_steps;
        let (timesteps, sigmas, init_noise_sigma, prk_evaluations) = match &sampler {
            SamplerKind::Ddpm(_) | SamplerKind::Ddim(_) => {
                let t = inference_timesteps(num_train_timesteps, n, spacing, steps_offset)?;
                (t.into_iter().map(|t| t as f64).collect(), vec![], 1.0, 0)
            }
            SamplerKind::Pndm(options) => {
                let (t, prk) =
                    pndm::pndm_timesteps(options, num_train_timesteps, n, spacing, steps_offset)?;
                (t.into_iter().map(|t| t as f64).collect(), vec![], 1.0, prk)
            }
            SamplerKind::DpmSolver(DpmSolverOptions {
                sigmas: spacing_options,
                lambda_min_clipped,
                round_karras_timesteps,
                ..
            }) => {
                let last = grid::clipped_last_timestep(schedule, *lambda_min_clipped);
                let t =
                    grid::solver_timesteps(num_train_timesteps, last, n, spacing, steps_offset)?;
                let g = grid::solver_grid(schedule, t, spacing_options, *round_karras_timesteps);
                (g.timesteps, g.sigmas, 1.0, 0)
            }
            SamplerKind::UniPc(options) => {
                let t = grid::solver_timesteps(
                    num_train_timesteps,
                    num_train_timesteps,
                    n,
                    spacing,
                    steps_offset,
                )?;
                let g = grid::solver_grid(schedule, t, &options.sigmas, true);
                (g.timesteps, g.sigmas, 1.0, 0)
            }
            SamplerKind::Euler(options)
            | SamplerKind::EulerAncestral(options)
            | SamplerKind::Heun(options) => {
                let t =
                    grid::sigma_sampler_timesteps(num_train_timesteps, n, spacing, steps_offset)?;
                let mut g = grid::sigma_sampler_grid(schedule, t, &options.sigmas);
                if matches!(sampler, SamplerKind::Heun(_)) {
                    g = grid::heun_grid(g);
                }
                let init = grid::sigma_init_noise(&g.sigmas, spacing);
                (g.timesteps, g.sigmas, init, 0)
            }
        };
        Ok(Self {
            sampler,
            timesteps,
            sigmas,
            init_noise_sigma,
            num_inference_steps,
            num_train_timesteps,
            prk_evaluations,
        })
    }

    /// How many times the model is evaluated (NFE) per sample.
    pub fn evaluations(&self) -> usize {
        self.timesteps.len()
    }

    /// The DDPM/DDIM timestep that follows evaluation `index`, `None` past the first timestep.
    pub fn prev_timestep(&self, index: usize) -> Option<usize> {
        let t = self.timesteps[index] as usize;
        match self.sampler {
            // diffusers' DDPM walks its own timestep list.
            SamplerKind::Ddpm(_) => self.timesteps.get(index + 1).map(|&t| t as usize),
            _ => ddim_prev_timestep(t, self.num_train_timesteps, self.num_inference_steps),
        }
    }

    /// The factor the model input is scaled by at evaluation `index`: 1/√(σ² + 1) for the
    /// σ-space samplers (so the network sees x_t), 1 otherwise.
    pub fn input_scale(&self, index: usize) -> f64 {
        if self.sampler.in_sigma_space() {
            1.0 / (self.sigmas[index].powi(2) + 1.0).sqrt()
        } else {
            1.0
        }
    }

    /// Whether evaluation `index` draws step noise.
    pub fn needs_noise(&self, index: usize) -> bool {
        match &self.sampler {
            SamplerKind::Ddpm(_) => self.timesteps[index] > 0.0,
            SamplerKind::Ddim(o) => o.eta > 0.0,
            SamplerKind::DpmSolver(o) => o.stochastic,
            SamplerKind::EulerAncestral(_) => true,
            _ => false,
        }
    }
}

/// x̂_0 from a model output at k-diffusion noise level σ on the VP sample x_t (ᾱ = 1/(σ² + 1)).
fn vp_x0<const D: usize>(
    prediction_type: PredictionType,
    model_output: Tensor<D>,
    sample: Tensor<D>,
    sigma: f64,
) -> Tensor<D> {
    let alpha_bar = 1.0 / (sigma * sigma + 1.0);
    prediction_type
        .to_x0_and_eps(model_output, sample, alpha_bar)
        .0
}

/// A sampler in progress: the plan plus what multistep samplers remember between evaluations.
pub struct SamplerRun<'a, const D: usize> {
    plan: &'a SamplingPlan,
    schedule: &'a NoiseSchedule,
    prediction_type: PredictionType,
    /// x̂_0 of the latest evaluations, most recent last (DPM-Solver++, UniPC).
    x0_history: Vec<Tensor<D>>,
    /// UniPC: the sample its last predictor step started from, and that step's order.
    last_sample: Option<Tensor<D>>,
    last_order: usize,
    heun: Option<HeunPending<D>>,
    pndm: PndmState<D>,
}

impl<'a, const D: usize> SamplerRun<'a, D> {
    pub fn new(
        plan: &'a SamplingPlan,
        schedule: &'a NoiseSchedule,
        prediction_type: PredictionType,
    ) -> Self {
        Self {
            plan,
            schedule,
            prediction_type,
            x0_history: Vec::new(),
            last_sample: None,
            last_order: 1,
            heun: None,
            pndm: PndmState::default(),
        }
    }

    fn remember(&mut self, x0: Tensor<D>, keep: usize) {
        self.x0_history.push(x0);
        let excess = self.x0_history.len().saturating_sub(keep);
        self.x0_history.drain(..excess);
    }

    /// Moves `sample` (the x this evaluation's model input came from) by one evaluation, given the
    /// model's output; draws step noise from `noise` where the sampler needs it.
    pub fn step(
        &mut self,
        index: usize,
        model_output: Tensor<D>,
        sample: Tensor<D>,
        noise: &mut impl NoiseSource,
    ) -> Result<Tensor<D>> {
        let plan = self.plan;
        let z = plan.needs_noise(index).then(|| noise.next_like(&sample));
        let pt = self.prediction_type;
        let sigmas = &plan.sigmas;
        Ok(match &plan.sampler {
            SamplerKind::Ddpm(_) | SamplerKind::Ddim(_) => {
                explicit_step(plan, self.schedule, pt, index, sample, model_output, &[], z)?
            }
            SamplerKind::DpmSolver(o) => {
                let x0 = solver_x0(
                    pt,
                    &o.x0_limit,
                    model_output.clone(),
                    sample.clone(),
                    sigmas[index],
                )?;
                self.remember(x0, o.order);
                let history = &self.x0_history;
                explicit_step(
                    plan,
                    self.schedule,
                    pt,
                    index,
                    sample,
                    model_output,
                    history,
                    z,
                )?
            }
            SamplerKind::UniPc(o) => {
                let x0 = solver_x0(pt, &o.x0_limit, model_output, sample.clone(), sigmas[index])?;
                let corrected = match self.last_sample.take() {
                    Some(last) if index > 0 && !o.disable_corrector.contains(&(index - 1)) => {
                        unipc::unipc_correct(
                            o.variant,
                            sigmas,
                            index,
                            self.last_order,
                            last,
                            x0.clone(),
                            &self.x0_history,
                        )
                    }
                    _ => sample,
                };
                self.remember(x0, o.order);
                let order = o.order_at(index, plan.timesteps.len());
                self.last_order = order;
                self.last_sample = Some(corrected.clone());
                unipc::unipc_predict(o.variant, sigmas, index, order, corrected, &self.x0_history)
            }
            SamplerKind::Euler(o) | SamplerKind::EulerAncestral(o) | SamplerKind::Heun(o) => {
                let (sigma, sigma_next) = (sigmas[index], sigmas[index + 1]);
                let x0 =
                    o.x0_limit
                        .apply(euler::sigma_x0(pt, model_output, sample.clone(), sigma))?;
                match (&plan.sampler, self.heun.take()) {
                    (SamplerKind::Euler(_), _) => euler::euler_step(sample, x0, sigma, sigma_next),
                    (SamplerKind::EulerAncestral(_), _) => {
                        let z = z.expect("Euler ancestral always draws noise");
                        euler::euler_ancestral_step(sample, x0, sigma, sigma_next, z)
                    }
                    // Heun: an Euler predictor, then (at the repeated σ) the trapezoidal correction.
                    (_, None) => {
                        let (predicted, pending) =
                            euler::heun_predict(sample, x0, sigma, sigma_next);
                        self.heun = Some(pending);
                        predicted
                    }
                    (_, Some(pending)) => euler::heun_correct(pending, sample, x0, sigma),
                }
            }
            SamplerKind::Pndm(o) => {
                let ctx = PndmContext {
                    schedule: self.schedule,
                    options: o,
                    prediction_type: pt,
                    timesteps: &plan.timesteps,
                    prk_len: plan.prk_evaluations,
                    num_inference_steps: plan.num_inference_steps,
                };
                self.pndm
                    .step(&ctx, plan.timesteps[index] as i64, model_output, sample)
            }
        })
    }
}

/// x̂_0 as DPM-Solver++ and UniPC form it: from the model output at σ on the VP sample, limited.
fn solver_x0<const D: usize>(
    prediction_type: PredictionType,
    limit: &X0Limit,
    model_output: Tensor<D>,
    sample: Tensor<D>,
    sigma: f64,
) -> Result<Tensor<D>> {
    limit.apply(vp_x0(prediction_type, model_output, sample, sigma))
}

/// One step of the samplers whose update is a pure function of x, the model output and the x̂_0
/// history (DDPM, DDIM, DPM-Solver++): the sequential loop and ParaDiGMS's Picard rounds share it.
#[allow(clippy::too_many_arguments)]
fn explicit_step<const D: usize>(
    plan: &SamplingPlan,
    schedule: &NoiseSchedule,
    prediction_type: PredictionType,
    index: usize,
    x: Tensor<D>,
    model_output: Tensor<D>,
    x0_history: &[Tensor<D>],
    noise: Option<Tensor<D>>,
) -> Result<Tensor<D>> {
    let t = plan.timesteps[index] as usize;
    let prev = plan.prev_timestep(index);
    let pt = prediction_type;
    Ok(match &plan.sampler {
        SamplerKind::Ddpm(o) => {
            ddpm_step(schedule, t, prev, pt, o, model_output, x, noise)?.prev_sample
        }
        SamplerKind::Ddim(o) => {
            ddim_step(schedule, t, prev, pt, o, model_output, x, noise)?.prev_sample
        }
        SamplerKind::DpmSolver(o) => {
            let order = o.order_at(index, plan.timesteps.len());
            dpm_solver_update(o, &plan.sigmas, index, order, x, x0_history, noise)
        }
        other => unreachable!("{} keeps state between steps", other.name()),
    })
}

/// The model output a step of `plan` takes: with a learned DDPM variance, the prediction and the
/// variance output concatenated on the channel axis (the layout diffusers' step splits).
fn step_model_output<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    plan: &SamplingPlan,
    input: Tensor<D>,
    timesteps: &[f64],
    class_labels: Option<&[usize]>,
) -> Result<Tensor<D>> {
    if !matches!(&plan.sampler, SamplerKind::Ddpm(o) if o.variance.is_learned()) {
        return denoiser.predict(input, timesteps, class_labels);
    }
    match denoiser.predict_with_variance(input, timesteps, class_labels)? {
        (prediction, Some(variance)) => Ok(Tensor::cat(vec![prediction, variance], 1)),
        (_, None) => Err(DiffuseError::config(
            "variance_type learned_range needs a model that outputs its variance (2 × C output \
             channels); this model's variance is fixed: use fixed_small or fixed_large",
        )),
    }
}

fn check_plan(plan: &SamplingPlan, schedule: &NoiseSchedule) -> Result<()> {
    if plan.num_train_timesteps != schedule.num_train_timesteps() {
        return Err(DiffuseError::config(format!(
            "the sampling plan was made for {} training timesteps, the schedule has {}",
            plan.num_train_timesteps,
            schedule.num_train_timesteps()
        )));
    }
    Ok(())
}

/// Runs the reverse process from unit-normal noise `z` (x_T = init_noise_sigma · z) along
/// `plan`, conditioned on `class_labels` (one per row) when given, drawing step noise from
/// `noise`; `on_step(done, total)` is called after every model evaluation (progress bars).
pub fn sample<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    schedule: &NoiseSchedule,
    plan: &SamplingPlan,
    z: Tensor<D>,
    class_labels: Option<&[usize]>,
    noise: &mut impl NoiseSource,
    on_step: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<D>> {
    check_plan(plan, schedule)?;
    let batch = z.dims()[0];
    let mut run = SamplerRun::new(plan, schedule, denoiser.prediction_type());
    let mut x = z.mul_scalar(plan.init_noise_sigma);
    let total = plan.timesteps.len();
    for (index, &t) in plan.timesteps.iter().enumerate() {
        let input = x.clone().mul_scalar(plan.input_scale(index));
        let model_output = step_model_output(denoiser, plan, input, &vec![t; batch], class_labels)?;
        x = run.step(index, model_output, x, noise)?;
        on_step(index + 1, total);
    }
    Ok(x)
}

/// Where and how [`generate`] draws its samples.
#[derive(Debug, Clone)]
pub struct GenerationConfig {
    /// How many samples in all.
    pub count: usize,
    /// How many go through the denoiser at once; results do not depend on it.
    pub batch_size: usize,
    /// Sample i draws its noise from stream i of this seed.
    pub seed: u64,
    pub device: Device,
    pub dtype: DType,
    /// Class label of every sample, for class-conditional models.
    pub class_labels: Option<Vec<usize>>,
    /// Unit-normal z of every sample (row-major [count, item_shape…]; x_T = init_noise_sigma · z)
    /// instead of seeded draws, e.g. to reproduce another implementation's run; step noise still
    /// comes from the seed.
    pub init_noise: Option<Vec<f64>>,
}

/// Draws `config.count` samples of shape `item_shape` (one sample, no batch dimension) in
/// batches, each from its own seeded x_T. Returns the samples on the host, row-major
/// [count, item_shape…]. `on_step(done, total)` counts model evaluations over all batches.
pub fn generate<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    schedule: &NoiseSchedule,
    plan: &SamplingPlan,
    item_shape: &[usize],
    config: &GenerationConfig,
    on_step: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>> {
    let total = config.count.div_ceil(config.batch_size.max(1)) * plan.timesteps.len();
    let mut done_before = 0;
    in_batches(item_shape, config, &mut |z, labels, noise| {
        let mut report = |done: usize, _: usize| on_step(done_before + done, total);
        let x0 = sample(denoiser, schedule, plan, z, labels, noise, &mut report)?;
        done_before += plan.timesteps.len();
        Ok(x0)
    })
}

/// [`generate`] with ParaDiGMS (Picard iteration over a sliding window of steps): the same samples
/// within the tolerance, in fewer sequential rounds of (larger) model batches. `on_round(rounds,
/// steps converged)` reports progress per batch.
pub fn generate_parallel<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    schedule: &NoiseSchedule,
    plan: &SamplingPlan,
    item_shape: &[usize],
    config: &GenerationConfig,
    settings: &ParallelSettings,
    on_round: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<f64>, ParallelReport)> {
    let mut total = ParallelReport::default();
    let samples = in_batches(item_shape, config, &mut |z, labels, noise| {
        let (x0, report) = paradigms::sample_parallel(
            denoiser, schedule, plan, z, labels, noise, settings, on_round,
        )?;
        total.absorb(&report);
        Ok(x0)
    })?;
    Ok((samples, total))
}

/// Samples one batch from its z, class labels and noise streams.
type BatchSampler<'a, const D: usize> =
    dyn FnMut(Tensor<D>, Option<&[usize]>, &mut SeededNoise) -> Result<Tensor<D>> + 'a;

/// The batch loop shared by [`generate`] and [`generate_parallel`]: checks the config, draws (or
/// takes) each batch's z and noise streams, runs `sample_batch`, and collects the results.
pub(crate) fn in_batches<const D: usize>(
    item_shape: &[usize],
    config: &GenerationConfig,
    sample_batch: &mut BatchSampler<'_, D>,
) -> Result<Vec<f64>> {
    if item_shape.len() + 1 != D {
        return Err(DiffuseError::config(format!(
            "a sample shape of rank {} does not fit tensors of rank {D}",
            item_shape.len()
        )));
    }
    if config.count == 0 || config.batch_size == 0 {
        return Err(DiffuseError::config(
            "the sample count and the batch size must be at least 1",
        ));
    }
    let item_len: usize = item_shape.iter().product();
    if let Some(labels) = config
        .class_labels
        .as_ref()
        .filter(|l| l.len() != config.count)
    {
        return Err(DiffuseError::config(format!(
            "{} class labels for {} samples",
            labels.len(),
            config.count
        )));
    }
    if let Some(init) = config
        .init_noise
        .as_ref()
        .filter(|init| init.len() != config.count * item_len)
    {
        return Err(DiffuseError::config(format!(
            "the initial noise holds {} values; {} samples of shape {item_shape:?} need {}",
            init.len(),
            config.count,
            config.count * item_len
        )));
    }
    let batches = config.count.div_ceil(config.batch_size);
    let mut samples = Vec::with_capacity(config.count * item_len);
    for batch in 0..batches {
        let start = batch * config.batch_size;
        let end = (start + config.batch_size).min(config.count);
        let mut shape = [end - start; D];
        shape[1..].copy_from_slice(item_shape);
        let mut noise = SeededNoise::new(config.seed, start..end);
        let z = match &config.init_noise {
            Some(init) => from_host_f64(
                init[start * item_len..end * item_len].to_vec(),
                shape,
                &config.device,
                config.dtype,
            ),
            None => noise.next(shape, &config.device, config.dtype),
        };
        let labels = config.class_labels.as_ref().map(|l| &l[start..end]);
        samples.extend(to_host_f64(sample_batch(z, labels, &mut noise)?)?);
    }
    Ok(samples)
}
