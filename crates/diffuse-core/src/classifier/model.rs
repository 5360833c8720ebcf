//! The network: the encoder half of a diffusion U-Net (Dhariwal & Nichol 2021, §4: "the
//! downsampling trunk of the UNet model"), ending in global average pooling and a linear head.
//! Every residual block sees the timestep through FiLM on its second GroupNorm, so one network
//! classifies x_t at any noise level, clean images (t = 0) included.

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::config::ClassifierConfig;
use crate::config::parse_config_json;
use crate::error::{DiffuseError, Result};
use crate::io::write_atomically;
use crate::limits::check_parameter_count;
use crate::nn::conv2d;
use crate::nn::embedding::{TimestepMlp, timestep_embedding};
use crate::nn::kernels::{self, Activation};
use crate::nn::unet::layers::{Downsample2D, ResnetBlock2D, ResnetSettings};
use crate::nn::weights::{KeyRenames, load_diffusers_weights_from_bytes, save_diffusers_weights};

/// The files of a classifier folder.
pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// One resolution level: residual blocks, then a stride-2 convolution unless it is the last.
#[derive(Module, Debug)]
pub struct Level {
    pub resnets: Vec<ResnetBlock2D>,
    pub downsample: Option<Downsample2D>,
}

/// p(y | x_t, t) for images x_t of the forward process in its config.
#[derive(Module, Debug)]
pub struct NoiseAwareClassifier {
    pub conv_in: Conv2d,
    pub time_embedding: TimestepMlp,
    pub levels: Vec<Level>,
    pub norm_out: GroupNorm,
    pub head: Linear,
    #[module(skip)]
    config: ClassifierConfig,
}

impl NoiseAwareClassifier {
    /// A randomly initialised network for `config` (validated first).
    pub fn new(config: &ClassifierConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let widths = &config.block_out_channels;
        // diffusers' U-Net convention: sinusoidal features as wide as the first level, lifted
        // to four times that by the timestep MLP.
        let temb_dim = 4 * widths[0];
        let settings = ResnetSettings {
            temb_channels: Some(temb_dim),
            groups: config.norm_num_groups,
            eps: 1e-5,
            scale_shift: true,
            output_scale_factor: 1.0,
        };
        let mut levels = Vec::with_capacity(widths.len());
        let mut width_in = widths[0];
        for (i, &width) in widths.iter().enumerate() {
            let resnets = (0..config.layers_per_block)
                .map(|j| {
                    let input = if j == 0 { width_in } else { width };
                    ResnetBlock2D::new(input, width, &settings, device)
                })
                .collect();
            let downsample = (i + 1 < widths.len()).then(|| Downsample2D::new(width, 1, device));
            levels.push(Level {
                resnets,
                downsample,
            });
            width_in = width;
        }
        let classifier = Self {
            conv_in: conv2d(
                [config.in_channels, widths[0]],
                3,
                config.stem_stride,
                1,
                device,
            ),
            time_embedding: TimestepMlp::new(widths[0], temb_dim, device),
            levels,
            norm_out: GroupNormConfig::new(config.norm_num_groups, config.feature_dim())
                .init(device),
            head: LinearConfig::new(config.feature_dim(), config.num_classes).init(device),
            config: config.clone(),
        };
        // Counted before burn's lazy initialisation allocates the weights.
        check_parameter_count("classifier", classifier.num_params())?;
        Ok(classifier)
    }

    pub fn config(&self) -> &ClassifierConfig {
        &self.config
    }

    /// Logits [B, K] of p(y | x_t, t) for images `x_t` [B, C, H, W], one timestep per row.
    pub fn forward(&self, x_t: Tensor<4>, timesteps: &[f64]) -> Result<Tensor<2>> {
        Ok(self.logits_of(self.features(x_t, timesteps)?))
    }

    /// Logits [B, K] from penultimate features [B, F], for callers that need both.
    pub fn logits_of(&self, features: Tensor<2>) -> Tensor<2> {
        self.head.forward(features)
    }

    /// The penultimate features [B, F]: the last level's activations averaged over the image.
    /// At t = 0 they are the feature space of a plain classifier of clean images.
    pub fn features(&self, x: Tensor<4>, timesteps: &[f64]) -> Result<Tensor<2>> {
        self.check_input(&x.dims(), timesteps)?;
        let [batch, _, _, _] = x.dims();
        let embedding = timestep_embedding(
            timesteps,
            self.config.block_out_channels[0],
            true,
            0.0,
            &x.device(),
            x.dtype(),
        );
        let temb = self.time_embedding.forward(embedding);
        let mut h = kernels::conv2d(&self.conv_in, x);
        for level in &self.levels {
            for resnet in &level.resnets {
                h = resnet.forward(h, Some(&temb));
            }
            if let Some(down) = &level.downsample {
                h = down.forward(h);
            }
        }
        let h = kernels::group_norm(&self.norm_out, h, Activation::Silu);
        let width = self.config.feature_dim();
        Ok(h.reshape([batch as i32, width as i32, -1])
            .mean_dim(2)
            .reshape([batch, width]))
    }

    fn check_input(&self, dims: &[usize; 4], timesteps: &[f64]) -> Result<()> {
        let c = &self.config;
        let [batch, channels, height, width] = *dims;
        if [channels, height, width] != [c.in_channels, c.sample_size, c.sample_size] {
            return Err(DiffuseError::config(format!(
                "the classifier takes [B, {}, {size}, {size}] images; got [{batch}, {channels}, \
                 {height}, {width}]",
                c.in_channels,
                size = c.sample_size
            )));
        }
        if timesteps.len() != batch {
            return Err(DiffuseError::config(format!(
                "{} timesteps for a batch of {batch}",
                timesteps.len()
            )));
        }
        let last = (c.schedule.num_train_timesteps - 1) as f64;
        if let Some(bad) = timesteps.iter().find(|t| !(0.0..=last).contains(*t)) {
            return Err(DiffuseError::config(format!(
                "timestep {bad} is outside the classifier's range 0..={last}"
            )));
        }
        Ok(())
    }

    /// Writes `dir/config.json` and `dir/model.safetensors` (PyTorch layout), each atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| DiffuseError::io(dir, e))?;
        let json = serde_json::to_string_pretty(&self.config).expect("a config always serialises");
        write_atomically(&dir.join(CONFIG_FILE), json.as_bytes())?;
        save_diffusers_weights(self, &dir.join(WEIGHTS_FILE), &KeyRenames::NONE)
    }

    /// Reads a folder written by [`NoiseAwareClassifier::save`].
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        if !dir.is_dir() {
            return Err(DiffuseError::bad_file(
                dir,
                "no such classifier folder (expected config.json and model.safetensors in it)",
            ));
        }
        let config_path = dir.join(CONFIG_FILE);
        let config_json =
            std::fs::read_to_string(&config_path).map_err(|e| DiffuseError::io(&config_path, e))?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let weights =
            std::fs::read(&weights_path).map_err(|e| DiffuseError::io(&weights_path, e))?;
        Self::from_bytes(&config_json, weights, dir, device)
    }

    /// A classifier from the contents of its two files (e.g. embedded in a binary); `dir` names
    /// them in errors.
    pub fn from_bytes(
        config_json: &str,
        weights: Vec<u8>,
        dir: &Path,
        device: &Device,
    ) -> Result<Self> {
        let config_path = dir.join(CONFIG_FILE);
        let config: ClassifierConfig = parse_config_json(config_json, "classifier")
            .map_err(|e| DiffuseError::bad_file(&config_path, e.to_string()))?;
        config
            .validate()
            .map_err(|e| DiffuseError::bad_file(&config_path, e.to_string()))?;
        let mut model = Self::new(&config, device)?;
        load_diffusers_weights_from_bytes(
            &mut model,
            weights,
            &dir.join(WEIGHTS_FILE),
            &KeyRenames::NONE,
        )?;
        Ok(model)
    }
}
