//! How to draw samples: the sampler, guidance and parallel-sampling flags shared by `diffuse
//! sample` and `diffuse eval`, and the drawing itself.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::DType;
use clap::Args;
use diffuse_core::classifier::NoiseAwareClassifier;
use diffuse_core::pipeline::{DiffusionPipeline, SamplerOverrides};
use diffuse_core::process::sde::Sde;
use diffuse_core::sampling::guidance::CfgSettings;
use diffuse_core::sampling::sde::{SdeSampler, SdeSettings};
use diffuse_core::sampling::{
    Drawn, GenerationConfig, Method, Model, ParallelSettings, PipelineSamples, Progress, Recipe,
    SamplerChoice, SamplerName, SamplingPlan, X0Limit,
};
use indicatif::ProgressBar;

use super::progress_bar;
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
    pub timestep_spacing: Option<diffuse_core::process::schedule::TimestepSpacing>,
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

    /// The sampler --sampler names, if any.
    pub fn sampler_name(&self) -> Result<Option<SamplerName>> {
        Ok(self.sampler.as_deref().map(str::parse).transpose()?)
    }

    /// The sampler these flags pick over a pipeline's scheduler config.
    pub fn sampler_choice(&self) -> Result<SamplerChoice> {
        Ok(SamplerChoice {
            name: self.sampler_name()?,
            overrides: SamplerOverrides {
                eta: self.eta,
                karras_sigmas: self.karras_sigmas.then_some(true),
                solver_order: self.solver_order,
                x0_limit: self.dynamic_limit(),
            },
            steps: self.steps,
            spacing: self.timestep_spacing,
            steps_offset: self.steps_offset,
        })
    }

    /// The recipe these flags describe: --sde's continuous-time sampler when asked for,
    /// otherwise the plan `make_plan` builds (run by ParaDiGMS with --parallel), with the
    /// guidance flags.
    pub fn recipe(&self, make_plan: impl FnOnce() -> Result<SamplingPlan>) -> Result<Recipe> {
        let method = match self.sde_settings()? {
            Some(settings) => Method::Sde(settings),
            None => Method::Plan {
                plan: make_plan()?,
                parallel: self.parallel.then_some(ParallelSettings {
                    window: self.window,
                    tolerance: self.tol,
                }),
            },
        };
        Ok(Recipe {
            method,
            cfg: self.guidance_scale.map(|scale| CfgSettings {
                scale,
                rescale: self.guidance_rescale,
                interval: self.guidance_interval.as_ref().map(|v| (v[0], v[1])),
            }),
            classifier_scale: self.classifier_scale,
        })
    }

    /// Draws `config.count` samples from `pipeline` with the folder's scheduler, or the one these
    /// flags name, guided by --classifier when given.
    pub fn sample_pipeline(
        &self,
        pipeline: &DiffusionPipeline,
        config: &GenerationConfig,
    ) -> Result<(PipelineSamples, Recipe)> {
        let recipe = self.recipe(|| Ok(self.sampler_choice()?.plan(&pipeline.scheduler)?))?;
        let classifier = match &self.classifier {
            Some(dir) => Some(
                NoiseAwareClassifier::load(dir, &config.device)
                    .with_context(|| format!("loading classifier {}", dir.display()))?,
            ),
            None => None,
        };
        let mut bar = SamplingBar::new();
        let samples = recipe.draw_pipeline(pipeline, classifier.as_ref(), config, &mut bar);
        let samples = match &self.classifier {
            Some(dir) => samples.with_context(|| format!("classifier {}", dir.display()))?,
            None => samples?,
        };
        bar.finish(&samples.drawn);
        Ok((samples, recipe))
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
}

/// The progress bar of a draw, and its closing report.
pub struct SamplingBar(ProgressBar);

impl SamplingBar {
    pub fn new() -> Self {
        Self(progress_bar("sampling", "steps"))
    }

    /// Clears the bar; says what parallel sampling saved.
    pub fn finish(&self, drawn: &Drawn) {
        self.0.finish_and_clear();
        if let Some(report) = &drawn.parallel {
            eprintln!(
                "parallel sampling: {} sequential rounds instead of {} ({} model evaluations per \
                 sample instead of {})",
                report.rounds,
                report.sequential_evaluations,
                report.evaluations,
                report.sequential_evaluations
            );
        }
    }
}

impl Progress for SamplingBar {
    fn evaluations(&mut self, done: usize, total: usize) {
        self.0.set_length(total as u64);
        self.0.set_position(done as u64);
    }

    fn rounds(&mut self, rounds: usize, converged: usize, total: usize) {
        self.0.set_length(total as u64);
        self.0.set_position(converged as u64);
        self.0.set_message(format!("round {rounds}"));
    }
}

/// Draws with `recipe` from `model` under a progress bar.
pub fn draw<const D: usize>(
    recipe: &Recipe,
    model: &Model<'_, D>,
    item_shape: &[usize],
    config: &GenerationConfig,
) -> Result<Vec<f64>> {
    let mut bar = SamplingBar::new();
    let drawn = recipe.draw(model, item_shape, config, &mut bar)?;
    bar.finish(&drawn);
    Ok(drawn.samples)
}
