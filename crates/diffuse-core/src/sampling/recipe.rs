//! A sampling recipe: everything that decides how samples are drawn — the method (a plan, run
//! sequentially or by ParaDiGMS, or a continuous-time SDE) and the guidance stacked on the model —
//! with one [`Recipe::draw`] that the CLI, the quality benchmark and the trainer's sample grids
//! all call.

use super::generate::{GenerationConfig, generate, generate_parallel};
use super::kind::SamplerName;
use super::paradigms::{ParallelReport, ParallelSettings};
use super::plan::SamplingPlan;
use super::sde::{SdeSettings, generate_sde};
use crate::classifier::NoiseAwareClassifier;
use crate::denoiser::Denoiser;
use crate::error::{DiffuseError, Result};
use crate::io::HostTensor;
use crate::nn::autoencoder::AutoencoderKL;
use crate::pipeline::{DiffusionPipeline, SamplerOverrides, SchedulerConfig};
use crate::process::schedule::{NoiseSchedule, TimestepSpacing};
use crate::sampling::guidance::{
    CfgSettings, ClassGradient, ClassifierFreeGuidance, ClassifierGuidance,
};

/// How samples are drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// Along a discrete plan: sequentially, or by Picard iteration over windows of steps.
    Plan {
        plan: SamplingPlan,
        parallel: Option<ParallelSettings>,
    },
    /// By integrating an SDE in continuous time (Song et al. 2021).
    Sde(SdeSettings),
}

/// A sampler over a pipeline's scheduler config, as a user picks it: by default the folder's own
/// scheduler with its options, its timestep spacing and offset.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerChoice {
    pub name: Option<SamplerName>,
    pub overrides: SamplerOverrides,
    pub steps: usize,
    pub spacing: Option<TimestepSpacing>,
    pub steps_offset: Option<usize>,
}

impl SamplerChoice {
    /// The plan of this choice over `scheduler`'s forward process.
    pub fn plan(&self, scheduler: &SchedulerConfig) -> Result<SamplingPlan> {
        let sampler = scheduler.sampler(self.name, &self.overrides)?;
        let spacing = match self.spacing {
            Some(spacing) => spacing,
            None => scheduler.spacing()?,
        };
        let offset = self.steps_offset.unwrap_or(scheduler.steps_offset);
        SamplingPlan::new(sampler, &scheduler.schedule()?, self.steps, spacing, offset)
    }
}

/// The method and the guidance stacked on the model: classifier-free guidance first, then
/// classifier guidance on top of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    pub method: Method,
    pub cfg: Option<CfgSettings>,
    /// The scale s of classifier guidance, used when [`Model::classifier`] is given.
    pub classifier_scale: f64,
}

/// What a recipe samples: a denoiser over its forward process, and the classifier that guides it.
#[derive(Clone, Copy)]
pub struct Model<'a, const D: usize> {
    pub denoiser: &'a dyn Denoiser<D>,
    pub schedule: &'a NoiseSchedule,
    pub classifier: Option<&'a dyn ClassGradient<D>>,
}

/// Where a draw reports its progress: model evaluations done (sequential sampling) or Picard
/// rounds and converged steps (parallel sampling), out of `total`.
pub trait Progress {
    fn evaluations(&mut self, _done: usize, _total: usize) {}
    fn rounds(&mut self, _rounds: usize, _converged: usize, _total: usize) {}
}

impl Progress for () {}

/// Samples on the host, row-major [count, item_shape…], and what a parallel run cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawn {
    pub samples: Vec<f64>,
    pub parallel: Option<ParallelReport>,
}

/// Samples drawn from a pipeline folder.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSamples {
    pub drawn: Drawn,
    /// [C, H, W] of one sample.
    pub shape: [usize; 3],
}

impl Recipe {
    /// Plain sequential sampling along `plan`, unguided.
    pub fn plan(plan: SamplingPlan) -> Self {
        Self {
            method: Method::Plan {
                plan,
                parallel: None,
            },
            cfg: None,
            classifier_scale: 1.0,
        }
    }

    /// Model evaluations along the plan, or SDE steps.
    pub fn steps(&self) -> usize {
        match &self.method {
            Method::Plan { plan, .. } => plan.evaluations(),
            Method::Sde(settings) => settings.steps,
        }
    }

    /// The sampler, as reports name it: `ddim`, or `vp-pc` for an SDE.
    pub fn sampler_label(&self) -> String {
        match &self.method {
            Method::Plan { plan, .. } => plan.sampler.name().to_string(),
            Method::Sde(s) => format!("{}-{}", s.sde.name(), s.sampler.name()),
        }
    }

    /// Draws `config.count` samples of shape `item_shape` from `model` with this recipe.
    pub fn draw<const D: usize>(
        &self,
        model: &Model<'_, D>,
        item_shape: &[usize],
        config: &GenerationConfig,
        progress: &mut dyn Progress,
    ) -> Result<Drawn> {
        let needs_labels = |what: &str| {
            if config.class_labels.is_none() {
                return Err(DiffuseError::config(format!(
                    "{what} needs class labels (the classes to guide towards)"
                )));
            }
            Ok(())
        };
        let schedule = model.schedule;
        let cfg_guided;
        let mut denoiser = model.denoiser;
        if let Some(settings) = self.cfg {
            needs_labels("classifier-free guidance")?;
            let null_class = denoiser.null_class();
            cfg_guided = ClassifierFreeGuidance::new(denoiser, schedule, null_class, settings)?;
            denoiser = &cfg_guided;
        }
        let classifier_guided;
        if let Some(classifier) = model.classifier {
            needs_labels("classifier guidance")?;
            let scale = self.classifier_scale;
            classifier_guided = ClassifierGuidance::new(denoiser, classifier, schedule, scale)?;
            denoiser = &classifier_guided;
        }
        let guided = Model { denoiser, ..*model };
        self.run_method(&guided, item_shape, config, progress)
    }

    fn run_method<const D: usize>(
        &self,
        model: &Model<'_, D>,
        item_shape: &[usize],
        config: &GenerationConfig,
        progress: &mut dyn Progress,
    ) -> Result<Drawn> {
        let (denoiser, schedule) = (model.denoiser, model.schedule);
        Ok(match &self.method {
            Method::Sde(settings) => Drawn {
                samples: generate_sde(denoiser, schedule, settings, item_shape, config)?,
                parallel: None,
            },
            Method::Plan {
                plan,
                parallel: None,
            } => {
                let mut on_step = |done, total| progress.evaluations(done, total);
                let samples = generate(denoiser, schedule, plan, item_shape, config, &mut on_step)?;
                Drawn {
                    samples,
                    parallel: None,
                }
            }
            Method::Plan {
                plan,
                parallel: Some(settings),
            } => {
                let total = plan.evaluations();
                let mut on_round = |rounds, converged| progress.rounds(rounds, converged, total);
                let (samples, report) = generate_parallel(
                    denoiser,
                    schedule,
                    plan,
                    item_shape,
                    config,
                    settings,
                    &mut on_round,
                )?;
                Drawn {
                    samples,
                    parallel: Some(report),
                }
            }
        })
    }

    /// Draws from a pipeline folder's network with its scheduler's forward process, guided by
    /// `classifier` when given (which must have been trained for the pipeline's image size and
    /// forward process).
    pub fn draw_pipeline(
        &self,
        pipeline: &DiffusionPipeline,
        classifier: Option<&NoiseAwareClassifier>,
        config: &GenerationConfig,
        progress: &mut dyn Progress,
    ) -> Result<PipelineSamples> {
        let shape = pipeline.network.sample_shape().ok_or_else(|| {
            DiffuseError::config(
                "the network config has no sample_size, so the image size is unknown",
            )
        })?;
        let schedule = pipeline.scheduler.schedule()?;
        if let Some(classifier) = classifier {
            classifier.config().ensure_guides(shape, &schedule)?;
        }
        let denoiser = pipeline.denoiser()?;
        let model = Model {
            denoiser: &denoiser,
            schedule: &schedule,
            classifier: classifier.map(|c| c as &dyn ClassGradient<4>),
        };
        let drawn = self.draw(&model, &shape, config, progress)?;
        match &pipeline.vae {
            None => Ok(PipelineSamples { drawn, shape }),
            Some(vae) => decoded(vae, drawn, shape, config),
        }
    }
}

/// A latent pipeline's samples as images: each latent taken out of the diffusion model's space
/// and decoded, `config.batch_size` at a time (the raw decoder output, as `vae.decode(latents /
/// scaling_factor).sample`).
fn decoded(
    vae: &AutoencoderKL,
    drawn: Drawn,
    [c, h, w]: [usize; 3],
    config: &GenerationConfig,
) -> Result<PipelineSamples> {
    let latents = HostTensor {
        shape: vec![drawn.samples.len() / (c * h * w), c, h, w],
        values: drawn.samples.iter().map(|&v| v as f32).collect(),
    };
    let images = vae.decode_samples(&latents, config.batch_size, &config.device)?;
    let shape = [images.shape[1], images.shape[2], images.shape[3]];
    Ok(PipelineSamples {
        drawn: Drawn {
            samples: images.values.into_iter().map(f64::from).collect(),
            parallel: drawn.parallel,
        },
        shape,
    })
}
