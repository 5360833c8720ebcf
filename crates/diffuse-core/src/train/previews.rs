//! Pictures of a run: a DDIM sample grid of the EMA model (one row per class for a
//! class-conditional model), a scatter of samples over the data for 2-D vectors, and the loss
//! curve.

use std::path::Path;

use burn::tensor::{DType, Device};

use super::config::TrainConfig;
use super::metrics::MetricsLine;
use crate::data::{DataKind, Dataset};
use crate::error::{DiffuseError, Result};
use crate::io::HostTensor;
use crate::nn::autoencoder::AutoencoderKL;
use crate::nn::network::DenoisingNetwork;
use crate::pipeline::NetworkDenoiser;
use crate::plot::{ScatterLayer, image_grid_png, loss_curve_png, scatter_panels_png};
use crate::process::forward::PredictionType;
use crate::process::schedule::{NoiseSchedule, TimestepSpacing};
use crate::sampling::{
    GenerationConfig, Model, Recipe, SamplerKind, SamplerName, SamplerSettings, SamplingPlan,
    X0Limit,
};

/// Samples per class row of the class-conditional grid, and the grid size otherwise.
const GRID_COLUMNS: usize = 8;
const UNCONDITIONAL_GRID: usize = 64;
const VECTOR_SAMPLES: usize = 2000;

/// What a sample picture is drawn from: the network (the EMA weights) and the run it belongs to.
pub struct SamplePreview<'a> {
    pub network: &'a DenoisingNetwork,
    /// A latent run's autoencoder: samples are decoded before they are pictured.
    pub vae: Option<&'a AutoencoderKL>,
    pub prediction_type: PredictionType,
    pub schedule: &'a NoiseSchedule,
    pub dataset: &'a Dataset,
    /// `class_conditional`, `sample_steps` and `seed` are read from it.
    pub config: &'a TrainConfig,
    pub device: &'a Device,
}

impl SamplePreview<'_> {
    /// Samples the network with DDIM into a picture at `path`: one row per class for a
    /// class-conditional model, a scatter over the data for 2-D vectors. Returns false when the
    /// data cannot be pictured (vectors wider than 2).
    pub fn write(&self, path: &Path) -> Result<bool> {
        let [c, h, w] = self.dataset.sample_shape;
        let images = self.dataset.kind == DataKind::Images;
        if !images && c * h * w != 2 {
            return Ok(false);
        }
        let labels = self.grid_labels();
        let count = match (&labels, images) {
            (Some(l), _) => l.len(),
            (None, true) => UNCONDITIONAL_GRID,
            (None, false) => VECTOR_SAMPLES,
        };
        let samples = self.draw(count, labels)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| DiffuseError::io(dir, e))?;
        }
        if let Some(vae) = self.vae {
            let latents = HostTensor {
                shape: vec![count, c, h, w],
                values: samples.iter().map(|&v| v as f32).collect(),
            };
            let decoded = vae.decode_samples(&latents, count.min(256), self.device)?;
            let pixels: Vec<f64> = decoded.values.iter().map(|&v| f64::from(v)).collect();
            let [_, c, h, w]: [usize; 4] = decoded.shape.try_into().expect("decoded NCHW images");
            image_grid_png(path, &pixels, [count, c, h, w], GRID_COLUMNS)?;
        } else if images {
            image_grid_png(path, &samples, [count, c, h, w], GRID_COLUMNS)?;
        } else {
            self.write_scatter(path, &samples)?;
        }
        Ok(true)
    }

    /// The class of each sample: rows of [`GRID_COLUMNS`] per class for a class-conditional run,
    /// the null class for a network with a class table trained without labels, none otherwise.
    fn grid_labels(&self) -> Option<Vec<usize>> {
        match self.network.class_table_size() {
            Some(_) if self.config.class_conditional => Some(
                (0..self.dataset.num_classes())
                    .flat_map(|k| std::iter::repeat_n(k, GRID_COLUMNS))
                    .collect::<Vec<_>>(),
            ),
            Some(table) => Some(vec![table - 1; UNCONDITIONAL_GRID]),
            None => None,
        }
    }

    /// `count` DDIM samples of the network, x₀ clipped to [−1, 1] for images in pixel space.
    fn draw(&self, count: usize, labels: Option<Vec<usize>>) -> Result<Vec<f64>> {
        let [c, h, w] = self.dataset.sample_shape;
        let images = self.dataset.kind == DataKind::Images && self.vae.is_none();
        let sampler = SamplerKind::configured(
            SamplerName::Ddim,
            &SamplerSettings {
                x0_limit: if images {
                    X0Limit::Clip(1.0)
                } else {
                    X0Limit::None
                },
                ..SamplerSettings::default()
            },
        )?;
        let plan = SamplingPlan::new(
            sampler,
            self.schedule,
            self.config.sample_steps,
            TimestepSpacing::Leading,
            0,
        )?;
        let denoiser = NetworkDenoiser::new(self.network, self.prediction_type);
        let generation = GenerationConfig {
            count,
            batch_size: count.min(256),
            seed: self.config.seed,
            device: self.device.clone(),
            dtype: DType::F32,
            class_labels: labels,
            init_noise: None,
        };
        let model = Model {
            denoiser: &denoiser,
            schedule: self.schedule,
            classifier: None,
        };
        let drawn = Recipe::plan(plan).draw(&model, &[c, h, w], &generation, &mut ())?;
        Ok(drawn.samples)
    }

    /// 2-D samples (red) beside the first data points (grey), on the same axes.
    fn write_scatter(&self, path: &Path, samples: &[f64]) -> Result<()> {
        let data: Vec<f64> = self
            .dataset
            .values
            .iter()
            .take(2 * VECTOR_SAMPLES)
            .map(|&v| f64::from(v))
            .collect();
        let extent = data.iter().fold(1.0_f64, |m, v| m.max(v.abs())) * 1.2;
        scatter_panels_png(
            path,
            &[
                vec![ScatterLayer {
                    points: &data,
                    color: [120, 120, 120],
                }],
                vec![ScatterLayer {
                    points: samples,
                    color: [200, 30, 30],
                }],
            ],
            extent,
            400,
        )
    }
}

/// The mean loss of each logged interval against its step, as a picture at `path`.
pub fn write_loss_curve(path: &Path, lines: &[MetricsLine]) -> Result<()> {
    let points: Vec<(f64, f64)> = lines.iter().map(|m| (m.step as f64, m.loss_mean)).collect();
    loss_curve_png(path, &points)
}
