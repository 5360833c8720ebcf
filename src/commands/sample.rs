//! `diffuse sample`: draw samples with a sampler, from an exact mixture denoiser or a pipeline folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::DType;
use clap::Args;
use diffuse_core::classifier::NoiseAwareClassifier;
use diffuse_core::denoiser::Denoiser;
use diffuse_core::forward::PredictionType;
use diffuse_core::gmm::{GaussianMixture, GmmDenoiser};
use diffuse_core::guidance::{
    CfgSettings, ClassGradient, ClassifierFreeGuidance, ClassifierGuidance,
};
use diffuse_core::io::{HostTensor, read_safetensors, write_safetensors};
use diffuse_core::pipeline::DiffusionPipeline;
use diffuse_core::pipeline::SamplerOverrides;
use diffuse_core::plot::image_grid_png;
use diffuse_core::sampler::{
    DdpmVariance, GenerationConfig, ParallelSettings, SamplerKind, SamplerSettings, SamplingPlan,
    X0Limit, generate, generate_parallel,
};
use diffuse_core::schedule::NoiseSchedule;

use super::{report_to, step_progress};
use crate::args::{DeviceArgs, ScheduleArgs};

#[derive(Args, Debug)]
pub struct SampleCommand {
    /// Mixture JSON {"weights":[..],"means":[[..],..],"stds":[[..],..]}: sample its exact denoiser.
    #[arg(
        long,
        value_name = "MIXTURE.json",
        required_unless_present = "pipeline",
        conflicts_with = "pipeline"
    )]
    gmm: Option<PathBuf>,
    /// A diffusers pipeline folder (model_index.json, unet/ or transformer/, scheduler/): sample its network. The
    /// schedule, prediction type and clipping come from its scheduler_config.json.
    #[arg(long, value_name = "DIR")]
    pipeline: Option<PathBuf>,
    /// Sampler: ddpm, ddim, dpmsolver++, dpmsolver++-sde, unipc, euler, euler-ancestral, heun or
    /// pndm. Default: ddim for --gmm, the folder's scheduler class for --pipeline.
    #[arg(long, visible_alias = "scheduler")]
    sampler: Option<String>,
    /// Karras et al.'s σ spacing (dpmsolver++, unipc, euler, heun).
    #[arg(long)]
    karras_sigmas: bool,
    /// Order of dpmsolver++ / unipc: 1, 2 or 3 (default 2, or the folder's solver_order).
    #[arg(long)]
    solver_order: Option<usize>,
    /// Dynamic thresholding of x0 (Imagen): clamp each sample to its PERCENTILE quantile of |x0|
    /// (at least 1, at most --sample-max-value) and rescale, e.g. 0.995.
    #[arg(long, value_name = "PERCENTILE")]
    dynamic_threshold: Option<f64>,
    /// Upper bound of the dynamic threshold.
    #[arg(long, default_value_t = 1.0, requires = "dynamic_threshold")]
    sample_max_value: f64,
    /// Classifier-free guidance weight w (1 = conditional model; needs a class-conditional
    /// pipeline trained with label dropout and --class-labels).
    #[arg(long, value_name = "W")]
    guidance_scale: Option<f64>,
    /// Guidance rescale φ in [0, 1] (Lin et al. 2023) against over-exposure at high w.
    #[arg(long, default_value_t = 0.0, requires = "guidance_scale")]
    guidance_rescale: f64,
    /// Apply guidance only for noise levels σ in [LO, HI] (Kynkäänniemi et al. 2024).
    #[arg(
        long,
        value_delimiter = ',',
        num_args = 2,
        value_name = "LO,HI",
        requires = "guidance_scale"
    )]
    guidance_interval: Option<Vec<f64>>,
    /// Classifier guidance (Dhariwal & Nichol 2021): a noise-aware classifier folder from
    /// `diffuse train-classifier`, trained with the pipeline's schedule; steers every sample
    /// towards its --class-labels class. Works for unconditional and conditional pipelines.
    #[arg(long, value_name = "DIR", conflicts_with = "gmm")]
    classifier: Option<PathBuf>,
    /// Scale s of classifier guidance: ε̂ − s·√(1−ᾱ_t)·∇ log p(y | x_t). 1 samples p(x | y);
    /// larger values trade diversity for class fidelity.
    #[arg(long, value_name = "S", default_value_t = 1.0, requires = "classifier")]
    classifier_scale: f64,
    /// ParaDiGMS: sample by Picard iteration over a window of steps (ddpm, ddim, dpmsolver++);
    /// same samples within --tol, fewer sequential network rounds.
    #[arg(long)]
    parallel: bool,
    /// Steps refined together per round with --parallel.
    #[arg(long, default_value_t = 16, requires = "parallel")]
    window: usize,
    /// Convergence tolerance of --parallel: the RMS change of a step's x per sample.
    #[arg(long, default_value_t = 1e-3, requires = "parallel")]
    tol: f64,
    /// Number of sampling steps N (at most the schedule's T).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// DDIM's η: 0 is deterministic, 1 has DDPM's variance. DDIM only.
    #[arg(long)]
    eta: Option<f64>,
    /// Timestep spacing: leading, trailing or linspace. Default: leading for --gmm, the folder's
    /// timestep_spacing for --pipeline.
    #[arg(long)]
    timestep_spacing: Option<diffuse_core::schedule::TimestepSpacing>,
    /// Offset added to leading-spaced timesteps (default: 0, or the folder's steps_offset).
    #[arg(long)]
    steps_offset: Option<usize>,
    /// Number of samples to draw.
    #[arg(long, default_value_t = 16)]
    n: usize,
    /// Seed; sample i's noise depends only on (seed, i), not on the batch size or device.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Samples per batch through the denoiser.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Class of every sample for a class-conditional pipeline, comma-separated (one per sample,
    /// or a single class for all).
    #[arg(long, value_delimiter = ',', value_name = "C1,C2,…")]
    class_labels: Option<Vec<usize>>,
    /// x_T from a safetensors file: one f32 tensor `noise` of shape [N, C, H, W] (or [N, D] for
    /// --gmm) of unit variance, e.g. the noise diffusers started from.
    #[arg(long, value_name = "FILE.safetensors")]
    init_noise: Option<PathBuf>,
    /// Write the samples as f32 tensor `samples` of shape [N, …] (final x0, before quantisation).
    #[arg(long, value_name = "FILE.safetensors")]
    out_tensor: Option<PathBuf>,
    /// Write image samples as a PNG grid (--pipeline only).
    #[arg(long, value_name = "GRID.png")]
    out: Option<PathBuf>,
    /// --gmm only: DDPM's reverse variance, fixed-small (β̃_t) or fixed-large (β_t).
    #[arg(long, default_value = "fixed-small", conflicts_with = "pipeline")]
    variance_type: DdpmVariance,
    /// --gmm only: what the exact denoiser reports: epsilon, sample or v_prediction.
    #[arg(long, default_value = "epsilon", conflicts_with = "pipeline")]
    prediction_type: PredictionType,
    /// --gmm only: clamp the predicted x0 to [-R, R] at every step.
    #[arg(long, conflicts_with = "pipeline")]
    clip_sample: bool,
    /// R for --clip-sample.
    #[arg(long, default_value_t = 1.0, conflicts_with = "pipeline")]
    clip_sample_range: f64,
    /// --gmm only: the forward process.
    #[command(flatten)]
    schedule: ScheduleArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

impl SampleCommand {
    pub fn run(&self) -> Result<()> {
        if self.out_tensor.is_none() && self.out.is_none() {
            bail!("nothing to write: give --out-tensor FILE.safetensors and/or --out GRID.png");
        }
        match (&self.gmm, &self.pipeline) {
            (Some(gmm), _) => self.sample_mixture(gmm),
            (None, Some(dir)) => self.sample_pipeline(dir),
            (None, None) => bail!("give --gmm MIXTURE.json or --pipeline DIR"),
        }
    }

    fn config(&self, item_len: usize) -> Result<GenerationConfig> {
        let class_labels = match self.class_labels.as_deref() {
            Some([one]) => Some(vec![*one; self.n]),
            Some(labels) if labels.len() != self.n => {
                bail!(
                    "--class-labels gives {} labels for --n {}",
                    labels.len(),
                    self.n
                )
            }
            other => other.map(<[usize]>::to_vec),
        };
        let init_noise = match &self.init_noise {
            Some(path) => {
                let tensors = read_safetensors(path)?;
                let noise = tensors
                    .get("noise")
                    .with_context(|| format!("{}: no tensor named `noise`", path.display()))?;
                if noise.shape.first() != Some(&self.n) || noise.values.len() != self.n * item_len {
                    bail!(
                        "{}: tensor `noise` has shape {:?}; expected {} samples of {item_len} values",
                        path.display(),
                        noise.shape,
                        self.n
                    );
                }
                Some(noise.values.iter().map(|&v| v as f64).collect())
            }
            None => None,
        };
        Ok(GenerationConfig {
            count: self.n,
            batch_size: self.batch_size,
            seed: self.seed,
            device: self.device.build()?,
            dtype: DType::F32,
            class_labels,
            init_noise,
        })
    }

    fn sample_mixture(&self, path: &Path) -> Result<()> {
        let mixture = GaussianMixture::load(path)?;
        let schedule = self.schedule.build()?;
        let clip = self
            .clip_sample
            .then_some(X0Limit::Clip(self.clip_sample_range));
        let sampler = SamplerKind::configured(
            self.sampler.as_deref().unwrap_or("ddim"),
            &SamplerSettings {
                eta: self.eta,
                x0_limit: self.dynamic_limit().or(clip).unwrap_or_default(),
                variance: self.variance_type,
                karras_sigmas: self.karras_sigmas,
                solver_order: self.solver_order,
                ..SamplerSettings::default()
            },
        )?;
        let plan = SamplingPlan::new(
            sampler,
            &schedule,
            self.steps,
            self.timestep_spacing.unwrap_or_default(),
            self.steps_offset.unwrap_or(0),
        )?;
        let dim = mixture.dim();
        let denoiser = GmmDenoiser::new(mixture, schedule.clone(), self.prediction_type);
        let config = self.config(dim)?;
        let samples = self.draw(&denoiser, None, &schedule, &plan, &[dim], &config)?;
        if self.out.is_some() {
            bail!("--out writes image grids; use --out-tensor for mixture samples");
        }
        self.write(&samples, &[self.n, dim], &plan)
    }

    fn sample_pipeline(&self, dir: &Path) -> Result<()> {
        let config_device = self.device.build()?;
        let pipeline = DiffusionPipeline::load(dir, &config_device)
            .with_context(|| format!("loading pipeline {}", dir.display()))?;
        let scheduler = &pipeline.scheduler;
        let schedule = scheduler.schedule()?;
        let plan = SamplingPlan::new(
            scheduler.sampler(
                self.sampler.as_deref(),
                &SamplerOverrides {
                    eta: self.eta,
                    karras_sigmas: self.karras_sigmas.then_some(true),
                    solver_order: self.solver_order,
                    x0_limit: self.dynamic_limit(),
                },
            )?,
            &schedule,
            self.steps,
            match self.timestep_spacing {
                Some(spacing) => spacing,
                None => scheduler.spacing()?,
            },
            self.steps_offset.unwrap_or(scheduler.steps_offset),
        )?;
        let shape = pipeline
            .network
            .sample_shape()
            .context("the network config has no sample_size, so the image size is unknown")?;
        let [_, h, w] = shape;
        let config = self.config(shape.iter().product())?;
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
        let samples = self.draw(
            &denoiser,
            classifier.as_ref().map(|c| c as &dyn ClassGradient<4>),
            &schedule,
            &plan,
            &shape,
            &config,
        )?;
        if let Some(png) = &self.out {
            let columns = (self.n as f64).sqrt().ceil() as usize;
            image_grid_png(png, &samples, [self.n, shape[0], h, w], columns)
                .with_context(|| format!("writing {}", png.display()))?;
            eprintln!("wrote a grid of {} samples to {}", self.n, png.display());
        }
        self.write(&samples, &[self.n, shape[0], h, w], &plan)
    }

    fn dynamic_limit(&self) -> Option<X0Limit> {
        self.dynamic_threshold.map(|ratio| X0Limit::Dynamic {
            ratio,
            max_value: self.sample_max_value,
        })
    }

    /// Generates with the chosen guidance, sequentially or by parallel (Picard) sampling.
    fn draw<const D: usize>(
        &self,
        denoiser: &dyn Denoiser<D>,
        classifier: Option<&dyn ClassGradient<D>>,
        schedule: &NoiseSchedule,
        plan: &SamplingPlan,
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
        let bar = step_progress("sampling");
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

    fn write(&self, samples: &[f64], shape: &[usize], plan: &SamplingPlan) -> Result<()> {
        let Some(path) = &self.out_tensor else {
            return Ok(());
        };
        let tensor = HostTensor {
            shape: shape.to_vec(),
            values: samples.iter().map(|&v| v as f32).collect(),
        };
        write_safetensors(path, &[("samples", &tensor)])
            .with_context(|| format!("writing samples to {}", path.display()))?;
        eprintln!(
            "wrote {} samples of shape {:?} ({} steps) to {}",
            self.n,
            &shape[1..],
            plan.timesteps.len(),
            path.display()
        );
        Ok(())
    }
}
