//! Reverse-process samplers: each turns a denoiser's prediction into p(x_prev | x_t).
//!
//! A step function computes its coefficients on the host in f64 and applies them to tensors; the
//! loop in [`sample`] feeds it timesteps, model outputs and seeded noise.

pub mod ddim;
pub mod ddpm;

use std::str::FromStr;

use burn::tensor::{DType, Device, Tensor};

use crate::denoiser::Denoiser;
use crate::error::{DiffuseError, Result};
use crate::forward::PredictionType;
use crate::noise::{NoiseSource, SeededNoise};
use crate::schedule::{NoiseSchedule, TimestepSpacing, inference_timesteps};
use crate::tensor_ops::{from_host_f64, to_host_f64};
pub use ddim::{DdimOptions, ddim_prev_timestep, ddim_step};
pub use ddpm::{DdpmOptions, DdpmVariance, ddpm_step};

/// What one reverse step produces.
#[derive(Debug, Clone)]
pub struct StepOutput<const D: usize> {
    /// x_prev, the input of the next step.
    pub prev_sample: Tensor<D>,
    /// x̂_0 as estimated at this step (after clipping).
    pub pred_original_sample: Tensor<D>,
}

/// x̂_0 clamped to [−r, r] when a range is given (diffusers' `clip_sample`).
fn clip_x0<const D: usize>(x0: Tensor<D>, range: Option<f64>) -> Tensor<D> {
    match range {
        Some(r) => x0.clamp(-r, r),
        None => x0,
    }
}

/// A sampler and its options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerKind {
    Ddpm(DdpmOptions),
    Ddim(DdimOptions),
}

/// What a sampler can be configured with; each sampler takes the settings that apply to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerSettings {
    /// DDIM's η; giving it to DDPM is an error.
    pub eta: Option<f64>,
    /// Clamp x̂_0 to [−r, r].
    pub clip_sample: Option<f64>,
    /// DDPM's reverse variance.
    pub variance: DdpmVariance,
    /// DDIM's ᾱ after the last step: 1 or ᾱ_0.
    pub set_alpha_to_one: bool,
}

impl Default for SamplerSettings {
    fn default() -> Self {
        Self {
            eta: None,
            clip_sample: None,
            variance: DdpmVariance::default(),
            set_alpha_to_one: true,
        }
    }
}

impl SamplerKind {
    /// The sampler named `name` ("ddpm" or "ddim") with `settings`.
    pub fn configured(name: &str, settings: &SamplerSettings) -> Result<Self> {
        if let Some(eta) = settings.eta.filter(|eta| !(eta.is_finite() && *eta >= 0.0)) {
            return Err(DiffuseError::config(format!(
                "eta (--eta) must be a non-negative number (got {eta})"
            )));
        }
        Ok(match name.parse::<Self>()? {
            Self::Ddpm(_) => {
                if settings.eta.is_some() {
                    return Err(DiffuseError::config(
                        "eta (--eta) applies to the ddim sampler only",
                    ));
                }
                Self::Ddpm(DdpmOptions {
                    variance: settings.variance,
                    clip_sample: settings.clip_sample,
                })
            }
            Self::Ddim(defaults) => Self::Ddim(DdimOptions {
                eta: settings.eta.unwrap_or(0.0),
                clip_sample: settings.clip_sample,
                set_alpha_to_one: settings.set_alpha_to_one,
                ..defaults
            }),
        })
    }

    /// Whether the step at timestep `t` draws noise: DDPM's at every t > 0, DDIM's when η > 0.
    pub fn needs_noise(&self, t: usize) -> bool {
        match self {
            Self::Ddpm(_) => t > 0,
            Self::Ddim(options) => options.eta > 0.0,
        }
    }

    /// One reverse step of this sampler from `t` to `prev_t` (`None`: past the first timestep).
    #[allow(clippy::too_many_arguments)]
    pub fn step<const D: usize>(
        &self,
        schedule: &NoiseSchedule,
        t: usize,
        prev_t: Option<usize>,
        prediction_type: PredictionType,
        model_output: Tensor<D>,
        sample: Tensor<D>,
        noise: Option<Tensor<D>>,
    ) -> StepOutput<D> {
        match self {
            Self::Ddpm(o) => ddpm_step(
                schedule,
                t,
                prev_t,
                prediction_type,
                o,
                model_output,
                sample,
                noise,
            ),
            Self::Ddim(o) => ddim_step(
                schedule,
                t,
                prev_t,
                prediction_type,
                o,
                model_output,
                sample,
                noise,
            ),
        }
    }
}

/// Sampler names accepted on the command line.
pub const SAMPLER_NAMES: &str = "ddpm, ddim";

impl FromStr for SamplerKind {
    type Err = DiffuseError;

    /// The sampler with default options.
    fn from_str(name: &str) -> Result<Self> {
        match name {
            "ddpm" => Ok(Self::Ddpm(DdpmOptions::default())),
            "ddim" => Ok(Self::Ddim(DdimOptions::default())),
            other => Err(DiffuseError::UnknownName {
                kind: "sampler",
                name: other.to_string(),
                expected: SAMPLER_NAMES,
            }),
        }
    }
}

/// A sampler bound to its timesteps.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingPlan {
    pub sampler: SamplerKind,
    /// Inference timesteps, noisiest first.
    pub timesteps: Vec<usize>,
    /// N as requested (diffusers' trailing spacing can yield one timestep more).
    pub num_inference_steps: usize,
    pub num_train_timesteps: usize,
}

impl SamplingPlan {
    /// Picks N timesteps from `schedule` with `spacing` for `sampler`.
    pub fn new(
        sampler: SamplerKind,
        schedule: &NoiseSchedule,
        num_inference_steps: usize,
        spacing: TimestepSpacing,
        steps_offset: usize,
    ) -> Result<Self> {
        let num_train_timesteps = schedule.num_train_timesteps();
        let timesteps = inference_timesteps(
            num_train_timesteps,
            num_inference_steps,
            spacing,
            steps_offset,
        )?;
        Ok(Self {
            sampler,
            timesteps,
            num_inference_steps,
            num_train_timesteps,
        })
    }

    /// The timestep that follows step `index`, as the sampler defines it.
    pub fn prev_timestep(&self, index: usize) -> Option<usize> {
        match self.sampler {
            // diffusers' DDPM walks its own timestep list.
            SamplerKind::Ddpm(_) => self.timesteps.get(index + 1).copied(),
            SamplerKind::Ddim(_) => ddim_prev_timestep(
                self.timesteps[index],
                self.num_train_timesteps,
                self.num_inference_steps,
            ),
        }
    }
}

/// Runs the reverse process from `x_t` (x_T, already scaled) along `plan`, conditioned on
/// `class_labels` (one per row) when given, drawing step noise from `noise`; `on_step(done, total)`
/// is called after every step (progress bars).
pub fn sample<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    schedule: &NoiseSchedule,
    plan: &SamplingPlan,
    x_t: Tensor<D>,
    class_labels: Option<&[usize]>,
    noise: &mut impl NoiseSource,
    on_step: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<D>> {
    if plan.num_train_timesteps != schedule.num_train_timesteps() {
        return Err(DiffuseError::config(format!(
            "the sampling plan was made for {} training timesteps, the schedule has {}",
            plan.num_train_timesteps,
            schedule.num_train_timesteps()
        )));
    }
    let batch = x_t.dims()[0];
    let prediction_type = denoiser.prediction_type();
    let mut x = x_t;
    let total = plan.timesteps.len();
    for (index, &t) in plan.timesteps.iter().enumerate() {
        let model_output = denoiser.predict(x.clone(), &vec![t as f64; batch], class_labels)?;
        let prev_t = plan.prev_timestep(index);
        let z = plan.sampler.needs_noise(t).then(|| noise.next_like(&x));
        let step = plan
            .sampler
            .step(schedule, t, prev_t, prediction_type, model_output, x, z);
        x = step.prev_sample;
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
    /// x_T for every sample (row-major [count, item_shape…]) instead of seeded draws, e.g. to
    /// reproduce another implementation's run; step noise still comes from the seed.
    pub init_noise: Option<Vec<f64>>,
}

/// Draws `config.count` samples of shape `item_shape` (one sample, no batch dimension) in
/// batches, each starting from x_T ~ N(0, I) (init_noise_sigma = 1 for DDPM and DDIM). Returns the
/// samples on the host, row-major [count, item_shape…]. `on_step(done, total)` counts steps over
/// all batches.
pub fn generate<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    schedule: &NoiseSchedule,
    plan: &SamplingPlan,
    item_shape: &[usize],
    config: &GenerationConfig,
    on_step: &mut dyn FnMut(usize, usize),
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
    let total = batches * plan.timesteps.len();
    let mut samples = Vec::new();
    for batch in 0..batches {
        let start = batch * config.batch_size;
        let end = (start + config.batch_size).min(config.count);
        let mut shape = [end - start; D];
        shape[1..].copy_from_slice(item_shape);
        let mut noise = SeededNoise::new(config.seed, start..end);
        let x_t = match &config.init_noise {
            Some(init) => from_host_f64(
                init[start * item_len..end * item_len].to_vec(),
                shape,
                &config.device,
                config.dtype,
            ),
            None => noise.next(shape, &config.device, config.dtype),
        };
        let labels = config.class_labels.as_ref().map(|l| &l[start..end]);
        let done_before = batch * plan.timesteps.len();
        let mut report = |done: usize, _: usize| on_step(done_before + done, total);
        let x0 = sample(
            denoiser,
            schedule,
            plan,
            x_t,
            labels,
            &mut noise,
            &mut report,
        )?;
        samples.extend(to_host_f64(x0)?);
    }
    Ok(samples)
}
