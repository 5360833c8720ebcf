//! How to draw samples: the sampler, guidance and parallel-sampling flags shared by `diffuse
//! sample` and `diffuse eval`, and the drawing itself.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::DType;
use clap::Args;
use diffuse_core::classifier::NoiseAwareClassifier;
use diffuse_core::denoiser::Denoiser;
use diffuse_core::guidance::{
    CfgSettings, ClassGradient, ClassifierFreeGuidance, ClassifierGuidance,
};
use diffuse_core::pipeline::{DiffusionPipeline, SamplerOverrides};
use diffuse_core::sampler::sde::{Sde, SdeSampler, SdeSettings, generate_sde};
use diffuse_core::sampler::{
    GenerationConfig, ParallelSettings, SamplingPlan, X0Limit, generate, generate_parallel,
};
use diffuse_core::schedule::NoiseSchedule;

use super::{progress_bar, report_to};
use crate::args::DeviceArgs;

#[derive(Args, Debug)]
pub struct SamplingArgs {
    /// Sampler: ddpm, ddim, dpmsolver++, dpmsolver++-sde, unipc, euler, euler-ancestral, heun or
    /// pndm. Default: ddim for --gmm, the folder's scheduler class for --pipeline.
    #[arg(long, visible_alias = "scheduler")]
    pub sampler: Option<String>,
    /// Karras et al.'s σ spacing (dpmsolver++, unipc, euler, heun).
    #[arg(long)]
    pub karras_sigmas: bool,
    /// Order of dpmsolver++ / unipc: 1, 2 or 3 (default 2, or the folder's solver_order).
    #[arg(long)]
    pub solver_order: Option<usize>,
    /// Dynamic thresholding of x0 (Imagen): clamp each sample to its PERCENTILE quantile of |x0|
    /// (at least 1, at most --sample-max-value) and rescale, e.g. 0.995.
    #[arg(long, value_name = "PERCENTILE")]
    pub dynamic_threshold: Option<f64>,
    /// Upper bound of the dynamic threshold.
    #[arg(long, default_value_t = 1.0, requires = "dynamic_threshold")]
    pub sample_max_value: f64,
    /// Classifier-free guidance weight w (1 = conditional model; needs a class-conditional
    /// pipeline trained with label dropout and --class-labels).
    #[arg(long, value_name = "W")]
    pub guidance_scale: Option<f64>,
    /// Guidance rescale φ in [0, 1] (Lin et al. 2023) against over-exposure at high w.
    #[arg(long, default_value_t = 0.0, requires = "guidance_scale")]
    pub guidance_rescale: f64,
    /// Apply guidance only for noise levels σ in [LO, HI] (Kynkäänniemi et al. 2024).
    #[arg(
        long,
        value_delimiter = ',',
        num_args = 2,
        value_name = "LO,HI",
        requires = "guidance_scale"
    )]
    pub guidance_interval: Option<Vec<f64>>,
    /// Classifier guidance (Dhariwal & Nichol 2021): a noise-aware classifier folder from
    /// `diffuse train-classifier`, trained with the pipeline's schedule; steers every sample
    /// towards its --class-labels class. Works for unconditional and conditional pipelines.
    #[arg(long, value_name = "DIR")]
    pub classifier: Option<PathBuf>,
    /// Scale s of classifier guidance: ε̂ − s·√(1−ᾱ_t)·∇ log p(y | x_t). 1 samples p(x | y);
    /// larger values trade diversity for class fidelity.
    #[arg(long, value_name = "S", default_value_t = 1.0, requires = "classifier")]
    pub classifier_scale: f64,
    /// ParaDiGMS: sample by Picard iteration over a window of steps (ddpm, ddim, dpmsolver++);
    /// same samples within --tol, fewer sequential network rounds.
    #[arg(long)]
    pub parallel: bool,
    /// Steps refined together per round with --parallel.
    #[arg(long, default_value_t = 16, requires = "parallel")]
    pub window: usize,
    /// Convergence tolerance of --parallel: the RMS change of a step's x per sample.
    #[arg(long, default_value_t = 1e-3, requires = "parallel")]
    pub tol: f64,
    /// Number of sampling steps N (at most the schedule's T, except with --sde).
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Sample in continuous time instead (Song et al. 2021): the vp, subvp or ve SDE driven by
    /// the model's score (a VP-trained model serves all three), --steps steps from t = 1.
    #[arg(long, value_name = "SDE", conflicts_with_all = ["sampler", "parallel"])]
    pub sde: Option<String>,
    /// With --sde: pc (reverse Euler–Maruyama predictor + Langevin corrector) or ode (the
    /// probability-flow ODE by Heun's method).
    #[arg(long, default_value = "pc", requires = "sde")]
    pub sde_sampler: String,
    /// Langevin corrector steps per pc step (0: plain Euler–Maruyama).
    #[arg(long, default_value_t = 1, requires = "sde")]
    pub corrector_steps: usize,
    /// Signal-to-noise ratio r of the corrector's step size 2α(r‖z‖/‖∇ log p‖)².
    #[arg(long, default_value_t = 0.16, requires = "sde")]
    pub snr: f64,
    /// DDIM's η: 0 is deterministic, 1 has DDPM's variance. DDIM only.
    #[arg(long)]
    pub eta: Option<f64>,
    /// Timestep spacing: leading, trailing or linspace. Default: leading for --gmm, the folder's
    /// timestep_spacing for --pipeline.
    #[arg(long)]
    pub timestep_spacing: Option<diffuse_core::schedule::TimestepSpacing>,
    /// Offset added to leading-spaced timesteps (default: 0, or the folder's steps_offset).
    #[arg(long)]
    pub steps_offset: Option<usize>,
    /// Seed; sample i's noise depends only on (seed, i), not on the batch size or device.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples per batch through the denoiser.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `--class-labels` for `count` samples: one label per sample, or a single label for all.
pub fn class_labels_for(labels: Option<&[usize]>, count: usize) -> Result<Option<Vec<usize>>> {
    match labels {
        Some([one]) => Ok(Some(vec![*one; count])),
        Some(labels) if labels.len() != count => bail!(
            "--class-labels gives {} labels for {count} samples",
            labels.len()
        ),
        other => Ok(other.map(<[usize]>::to_vec)),
    }
}

/// How samples are drawn: along a discrete sampling plan, or by integrating an SDE in
/// continuous time (--sde).
pub enum Method {
    Plan(SamplingPlan),
    Sde(SdeSettings),
}

impl Method {
    /// Model evaluations along the plan, or SDE steps.
    pub fn steps(&self) -> usize {
        match self {
            Self::Plan(plan) => plan.timesteps.len(),
            Self::Sde(settings) => settings.steps,
        }
    }
}

/// Samples drawn from a pipeline folder.
pub struct PipelineSamples {
    /// N × C·H·W values.
    pub values: Vec<f64>,
    /// [C, H, W] of one sample.
    pub shape: [usize; 3],
    pub steps: usize,
    /// The sampler that drew them.
    pub sampler: String,
}

impl SamplingArgs {
    /// What to generate: `count` samples (optionally of `class_labels`, from `init_noise`).
    pub fn generation_config(
        &self,
        count: usize,
        class_labels: Option<Vec<usize>>,
        init_noise: Option<Vec<f64>>,
    ) -> Result<GenerationConfig> {
        Ok(GenerationConfig {
            count,
            batch_size: self.batch_size,
            seed: self.seed,
            device: self.device.build()?,
            dtype: DType::F32,
            class_labels,
            init_noise,
        })
    }

    /// Draws `config.count` samples from `pipeline` (loaded from `dir`) with the folder's
    /// scheduler, or the one these flags name.
    pub fn sample_pipeline(
        &self,
        pipeline: &DiffusionPipeline,
        config: &GenerationConfig,
    ) -> Result<PipelineSamples> {
        let scheduler = &pipeline.scheduler;
        let schedule = scheduler.schedule()?;
        let method = self.method(|| {
            let sampler = scheduler.sampler(
                self.sampler.as_deref(),
                &SamplerOverrides {
                    eta: self.eta,
                    karras_sigmas: self.karras_sigmas.then_some(true),
                    solver_order: self.solver_order,
                    x0_limit: self.dynamic_limit(),
                },
            )?;
            let spacing = match self.timestep_spacing {
                Some(spacing) => spacing,
                None => scheduler.spacing()?,
            };
            let offset = self.steps_offset.unwrap_or(scheduler.steps_offset);
            Ok(SamplingPlan::new(
                sampler, &schedule, self.steps, spacing, offset,
            )?)
        })?;
        let shape = pipeline
            .network
            .sample_shape()
            .context("the network config has no sample_size, so the image size is unknown")?;
        let denoiser = pipeline.denoiser()?;
        let classifier = match &self.classifier {
            Some(dir) => {
                let classifier = NoiseAwareClassifier::load(dir, &config.device)
                    .with_context(|| format!("loading classifier {}", dir.display()))?;
                classifier
                    .config()
                    .ensure_guides(shape, &schedule)
                    .with_context(|| format!("classifier {}", dir.display()))?;
                Some(classifier)
            }
            None => None,
        };
        let values = self.draw(
            &denoiser,
            classifier.as_ref().map(|c| c as &dyn ClassGradient<4>),
            &schedule,
            &method,
            &shape,
            config,
        )?;
        Ok(PipelineSamples {
            values,
            shape,
            steps: method.steps(),
            sampler: match &method {
                Method::Plan(plan) => plan.sampler.name().to_string(),
                Method::Sde(settings) => {
                    format!("{}-{}", settings.sde.name(), settings.sampler.name())
                }
            },
        })
    }

    /// --sde's continuous-time sampler when asked for, otherwise the plan `make_plan` builds.
    pub fn method(&self, make_plan: impl FnOnce() -> Result<SamplingPlan>) -> Result<Method> {
        Ok(match self.sde_settings()? {
            Some(settings) => Method::Sde(settings),
            None => Method::Plan(make_plan()?),
        })
    }

    /// The continuous-time sampler of --sde, when asked for.
    fn sde_settings(&self) -> Result<Option<SdeSettings>> {
        let Some(name) = &self.sde else {
            return Ok(None);
        };
        let sampler = match self.sde_sampler.as_str() {
            "pc" => SdeSampler::PredictorCorrector {
                corrector_steps: self.corrector_steps,
                snr: self.snr,
            },
            "ode" => SdeSampler::ProbabilityFlow,
            other => bail!("--sde-sampler must be pc or ode, not `{other}`"),
        };
        Ok(Some(SdeSettings {
            sde: Sde::from_name(name)?,
            sampler,
            steps: self.steps,
        }))
    }

    /// Imagen's dynamic thresholding, when asked for.
    pub fn dynamic_limit(&self) -> Option<X0Limit> {
        self.dynamic_threshold.map(|ratio| X0Limit::Dynamic {
            ratio,
            max_value: self.sample_max_value,
        })
    }

    /// Generates with the chosen guidance, by `method`: along a plan sequentially or by parallel
    /// (Picard) sampling, or by integrating an SDE.
    pub fn draw<const D: usize>(
        &self,
        denoiser: &dyn Denoiser<D>,
        classifier: Option<&dyn ClassGradient<D>>,
        schedule: &NoiseSchedule,
        method: &Method,
        shape: &[usize],
        config: &GenerationConfig,
    ) -> Result<Vec<f64>> {
        let guided;
        let denoiser: &dyn Denoiser<D> = match self.guidance_scale {
            Some(scale) => {
                if config.class_labels.is_none() {
                    bail!("--guidance-scale needs --class-labels (the classes to guide towards)");
                }
                let settings = CfgSettings {
                    scale,
                    rescale: self.guidance_rescale,
                    interval: self.guidance_interval.as_ref().map(|v| (v[0], v[1])),
                };
                guided = ClassifierFreeGuidance::new(
                    denoiser,
                    schedule,
                    denoiser.null_class(),
                    settings,
                )?;
                &guided
            }
            None => denoiser,
        };
        let classifier_guided;
        let denoiser: &dyn Denoiser<D> = match classifier {
            Some(classifier) => {
                if config.class_labels.is_none() {
                    bail!("--classifier needs --class-labels (the classes to guide towards)");
                }
                classifier_guided =
                    ClassifierGuidance::new(denoiser, classifier, schedule, self.classifier_scale)?;
                &classifier_guided
            }
            None => denoiser,
        };
        let plan = match method {
            Method::Plan(plan) => plan,
            Method::Sde(settings) => {
                return Ok(generate_sde(denoiser, schedule, settings, shape, config)?);
            }
        };
        let bar = progress_bar("sampling", "steps");
        let samples = if self.parallel {
            let settings = ParallelSettings {
                window: self.window,
                tolerance: self.tol,
            };
            let mut on_round = |round: usize, converged: usize| {
                bar.set_length(plan.evaluations() as u64);
                bar.set_position(converged as u64);
                bar.set_message(format!("round {round}"));
            };
            let (samples, report) = generate_parallel(
                denoiser,
                schedule,
                plan,
                shape,
                config,
                &settings,
                &mut on_round,
            )?;
            bar.finish_and_clear();
            eprintln!(
                "parallel sampling: {} sequential rounds instead of {} ({} model evaluations per \
                 sample instead of {})",
                report.rounds,
                report.sequential_evaluations,
                report.evaluations,
                report.sequential_evaluations
            );
            samples
        } else {
            let samples = generate(
                denoiser,
                schedule,
                plan,
                shape,
                config,
                &mut report_to(&bar),
            )?;
            bar.finish_and_clear();
            samples
        };
        Ok(samples)
    }
}
