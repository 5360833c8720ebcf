//! `diffuse sample`: draw samples with a sampler.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::DType;
use clap::Args;
use diffuse_core::forward::PredictionType;
use diffuse_core::gmm::{GaussianMixture, GmmDenoiser};
use diffuse_core::io::{HostTensor, write_safetensors};
use diffuse_core::sampler::{
    DdimOptions, DdpmOptions, DdpmVariance, GenerationConfig, SamplerKind, SamplingPlan, generate,
};

use super::{report_to, step_progress};
use crate::args::{DeviceArgs, ScheduleArgs, SpacingArgs};

#[derive(Args, Debug)]
pub struct SampleCommand {
    /// Mixture JSON {"weights":[..],"means":[[..],..],"stds":[[..],..]}: sample with its exact denoiser.
    #[arg(long, value_name = "MIXTURE.json")]
    gmm: PathBuf,
    /// Sampler: ddpm (ancestral) or ddim.
    #[arg(long, default_value = "ddim")]
    sampler: String,
    /// Number of sampling steps N (at most the schedule's T).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// DDIM's η: 0 is deterministic, 1 has DDPM's variance. DDIM only.
    #[arg(long)]
    eta: Option<f64>,
    /// DDPM's reverse variance: fixed-small (β̃_t) or fixed-large (β_t). DDPM only.
    #[arg(long, default_value = "fixed-small")]
    variance_type: DdpmVariance,
    /// What the denoiser predicts: epsilon, sample or v_prediction.
    #[arg(long, default_value = "epsilon")]
    prediction_type: PredictionType,
    /// Clamp the predicted x0 to [-R, R] at every step (for image data; off for mixtures).
    #[arg(long)]
    clip_sample: bool,
    /// R for --clip-sample.
    #[arg(long, default_value_t = 1.0)]
    clip_sample_range: f64,
    /// Number of samples to draw.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Seed; sample i's noise depends only on (seed, i), not on the batch size or device.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Samples per batch.
    #[arg(long, default_value_t = 4096)]
    batch_size: usize,
    /// Write the samples to this safetensors file, as f32 tensor `samples` of shape [N, D].
    #[arg(long, value_name = "FILE.safetensors")]
    out_tensor: PathBuf,
    #[command(flatten)]
    schedule: ScheduleArgs,
    #[command(flatten)]
    spacing: SpacingArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

impl SampleCommand {
    fn sampler(&self) -> Result<SamplerKind> {
        let clip_sample = self.clip_sample.then_some(self.clip_sample_range);
        Ok(match self.sampler.parse::<SamplerKind>()? {
            SamplerKind::Ddpm(_) => {
                if self.eta.is_some() {
                    bail!("--eta applies to the ddim sampler only");
                }
                SamplerKind::Ddpm(DdpmOptions {
                    variance: self.variance_type,
                    clip_sample,
                })
            }
            SamplerKind::Ddim(defaults) => {
                let eta = self.eta.unwrap_or(defaults.eta);
                if !(eta.is_finite() && eta >= 0.0) {
                    bail!("--eta must be a non-negative number (got {eta})");
                }
                SamplerKind::Ddim(DdimOptions {
                    eta,
                    clip_sample,
                    ..defaults
                })
            }
        })
    }

    pub fn run(&self) -> Result<()> {
        let mixture = GaussianMixture::load(&self.gmm)?;
        let schedule = self.schedule.build()?;
        let plan = SamplingPlan::new(
            self.sampler()?,
            &schedule,
            self.steps,
            self.spacing.timestep_spacing,
            self.spacing.steps_offset,
        )?;
        let dim = mixture.dim();
        let denoiser = GmmDenoiser::new(mixture, schedule.clone(), self.prediction_type);
        let config = GenerationConfig {
            count: self.n,
            batch_size: self.batch_size,
            seed: self.seed,
            device: self.device.build()?,
            dtype: DType::F32,
        };
        let bar = step_progress(&self.sampler);
        let samples = generate(
            &denoiser,
            &schedule,
            &plan,
            &[dim],
            &config,
            &mut report_to(&bar),
        )?;
        bar.finish_and_clear();
        let tensor = HostTensor {
            shape: vec![self.n, dim],
            values: samples.iter().map(|&v| v as f32).collect(),
        };
        write_safetensors(&self.out_tensor, &[("samples", &tensor)])
            .with_context(|| format!("writing samples to {}", self.out_tensor.display()))?;
        eprintln!(
            "wrote {} samples of dimension {dim} ({} {} steps) to {}",
            self.n,
            self.sampler,
            plan.timesteps.len(),
            self.out_tensor.display()
        );
        Ok(())
    }
}
