//! `diffuse sample`: draw samples with a sampler, from an exact mixture denoiser or a pipeline folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use diffuse_core::gmm::{GaussianMixture, GmmDenoiser};
use diffuse_core::io::{HostTensor, read_safetensors, write_safetensors};
use diffuse_core::pipeline::DiffusionPipeline;
use diffuse_core::plot::image_grid_png;
use diffuse_core::process::forward::PredictionType;
use diffuse_core::process::variance::DdpmVariance;
use diffuse_core::sampling::{
    GenerationConfig, Model, SamplerKind, SamplerName, SamplerSettings, SamplingPlan, X0Limit,
};

use super::sampling::{SamplingArgs, class_labels_for, draw};
use crate::args::ScheduleArgs;

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
    /// Number of samples to draw.
    #[arg(long, default_value_t = 16)]
    n: usize,
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
    sampling: SamplingArgs,
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

    /// The generation settings for samples of `item_shape` (the network's, latent for a latent
    /// pipeline).
    fn config(&self, item_shape: &[usize]) -> Result<GenerationConfig> {
        let item_len: usize = item_shape.iter().product();
        let class_labels = class_labels_for(self.class_labels.as_deref(), self.n)?;
        let init_noise = match &self.init_noise {
            Some(path) => {
                let tensors = read_safetensors(path)?;
                let noise = tensors
                    .get("noise")
                    .with_context(|| format!("{}: no tensor named `noise`", path.display()))?;
                if noise.shape.first() != Some(&self.n) || noise.values.len() != self.n * item_len {
                    let expected: Vec<usize> = [self.n].iter().chain(item_shape).copied().collect();
                    bail!(
                        "{}: tensor `noise` has shape {:?}; expected {expected:?} (the number of \
                         samples, then the shape the model denoises)",
                        path.display(),
                        noise.shape,
                    );
                }
                Some(noise.values.iter().map(|&v| v as f64).collect())
            }
            None => None,
        };
        self.sampling
            .generation_config(self.n, class_labels, init_noise)
    }

    fn sample_mixture(&self, path: &Path) -> Result<()> {
        let mixture = GaussianMixture::load(path)?;
        let schedule = self.schedule.build()?;
        let clip = self
            .clip_sample
            .then_some(X0Limit::Clip(self.clip_sample_range));
        let recipe = self.sampling.recipe(|| {
            let sampler = SamplerKind::configured(
                self.sampling.sampler_name()?.unwrap_or(SamplerName::Ddim),
                &SamplerSettings {
                    eta: self.sampling.eta,
                    x0_limit: self.sampling.dynamic_limit().or(clip).unwrap_or_default(),
                    variance: self.variance_type,
                    karras_sigmas: self.sampling.karras_sigmas,
                    solver_order: self.sampling.solver_order,
                    ..SamplerSettings::default()
                },
            )?;
            Ok(SamplingPlan::new(
                sampler,
                &schedule,
                self.sampling.steps,
                self.sampling.timestep_spacing.unwrap_or_default(),
                self.sampling.steps_offset.unwrap_or(0),
            )?)
        })?;
        let dim = mixture.dim();
        let denoiser = GmmDenoiser::new(mixture, schedule.clone(), self.prediction_type);
        let config = self.config(&[dim])?;
        if self.sampling.classifier.is_some() {
            bail!("--classifier guides image pipelines; the mixture has no image classifier");
        }
        let model = Model {
            denoiser: &denoiser,
            schedule: &schedule,
            classifier: None,
        };
        let samples = draw(&recipe, &model, &[dim], &config)?;
        if self.out.is_some() {
            bail!("--out writes image grids; use --out-tensor for mixture samples");
        }
        self.write(&samples, &[self.n, dim], recipe.steps())
    }

    fn sample_pipeline(&self, dir: &Path) -> Result<()> {
        let device = self.sampling.device.build()?;
        let pipeline = DiffusionPipeline::load(dir, &device)
            .with_context(|| format!("loading pipeline {}", dir.display()))?;
        let shape = pipeline.network.sample_shape().unwrap_or_default();
        let config = self.config(&shape)?;
        let (samples, recipe) = self.sampling.sample_pipeline(&pipeline, &config)?;
        let [c, h, w] = samples.shape;
        let values = &samples.drawn.samples;
        if let Some(png) = &self.out {
            let columns = (self.n as f64).sqrt().ceil() as usize;
            image_grid_png(png, values, [self.n, c, h, w], columns)
                .with_context(|| format!("writing {}", png.display()))?;
            eprintln!("wrote a grid of {} samples to {}", self.n, png.display());
        }
        self.write(values, &[self.n, c, h, w], recipe.steps())
    }

    fn write(&self, samples: &[f64], shape: &[usize], steps: usize) -> Result<()> {
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
            steps,
            path.display()
        );
        Ok(())
    }
}
