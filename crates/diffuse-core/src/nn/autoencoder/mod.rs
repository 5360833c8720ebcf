//! The KL-regularised autoencoder of latent diffusion (Rombach et al. 2022, §3 and Appendix G),
//! as diffusers' `AutoencoderKL` builds it: an encoder of residual blocks and stride-2
//! convolutions down to a diagonal Gaussian over a small latent, and a mirrored decoder back to
//! pixels, with self-attention in both middle blocks.

mod batched;
pub mod config;
mod tiling;

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::{Device, Tensor};

pub use config::AutoencoderKLConfig;

use crate::config::DiffusersConfig;
use crate::error::Result;
use crate::limits::{check_parameter_count, check_sample_values};
use crate::nn::conv2d;
use crate::nn::kernels::{self, Activation};
use crate::nn::unet::MidBlock;
use crate::nn::unet::layers::{Attention, Downsample2D, ResnetBlock2D, ResnetSettings, Upsample2D};
use crate::nn::weights::{KeyRenames, load_component, save_component};

/// diffusers' encoder and decoder blocks use this group-norm ε, not the config's.
const NORM_EPS: f64 = 1e-6;
/// log σ² is clamped to this range before use, as diffusers' `DiagonalGaussianDistribution`.
const LOGVAR_RANGE: (f64, f64) = (-30.0, 20.0);

/// Attention tensors of folders saved before diffusers 0.14 (`query`, `key`, `value`,
/// `proj_attn`), which `from_pretrained` still converts; Stable Diffusion's VAEs use them.
const DEPRECATED_ATTENTION_NAMES: KeyRenames = KeyRenames {
    load: &[
        (r"attentions\.(\d+)\.query\.", "attentions.$1.to_q."),
        (r"attentions\.(\d+)\.key\.", "attentions.$1.to_k."),
        (r"attentions\.(\d+)\.value\.", "attentions.$1.to_v."),
        (r"attentions\.(\d+)\.proj_attn\.", "attentions.$1.to_out.0."),
    ],
    save: &[],
};

/// diffusers' `DownEncoderBlock2D`: residual blocks without a timestep, then a stride-2
/// convolution unless it is the last level.
#[derive(Module, Debug)]
pub struct DownEncoderBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub downsamplers: Vec<Downsample2D>,
}

/// diffusers' `UpDecoderBlock2D`: residual blocks, then ×2 nearest upsampling and a convolution
/// unless it is the last level.
#[derive(Module, Debug)]
pub struct UpDecoderBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub upsamplers: Vec<Upsample2D>,
}

/// Images [B, C, H, W] → the Gaussian's moments [B, 2·latent_C, H/f, W/f].
#[derive(Module, Debug)]
pub struct Encoder {
    pub conv_in: Conv2d,
    pub down_blocks: Vec<DownEncoderBlock>,
    pub mid_block: MidBlock,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

/// Latents [B, latent_C, h, w] → images [B, C, h·f, w·f].
#[derive(Module, Debug)]
pub struct Decoder {
    pub conv_in: Conv2d,
    pub mid_block: MidBlock,
    pub up_blocks: Vec<UpDecoderBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

/// The approximate posterior q(z|x) = N(μ, diag σ²) the encoder outputs.
#[derive(Debug, Clone)]
pub struct DiagonalGaussian {
    pub mean: Tensor<4>,
    /// log σ², clamped to [−30, 20].
    pub logvar: Tensor<4>,
}

impl DiagonalGaussian {
    /// The most likely latent, μ (what `latent_dist.mode()` returns).
    pub fn mode(&self) -> Tensor<4> {
        self.mean.clone()
    }

    /// σ = exp(½ log σ²).
    pub fn std(&self) -> Tensor<4> {
        (self.logvar.clone() * 0.5).exp()
    }

    /// z = μ + σ·ε for unit-normal `noise` ε of the latent's shape (reparameterisation).
    pub fn sample(&self, noise: Tensor<4>) -> Tensor<4> {
        self.mean.clone() + self.std() * noise
    }

    /// KL(q(z|x) ‖ N(0, I)) = ½ Σ (μ² + σ² − 1 − log σ²) per image, [B].
    pub fn kl(&self) -> Tensor<1> {
        let terms = self.mean.clone().powi_scalar(2) + self.logvar.clone().exp()
            - 1.0
            - self.logvar.clone();
        let [batch, ..] = terms.dims();
        terms
            .reshape([batch as i32, -1])
            .sum_dim(1)
            .reshape([batch])
            * 0.5
    }
}

/// diffusers' `AutoencoderKL`.
#[derive(Module, Debug)]
pub struct AutoencoderKL {
    pub encoder: Encoder,
    pub decoder: Decoder,
    pub quant_conv: Option<Conv2d>,
    pub post_quant_conv: Option<Conv2d>,
    #[module(skip)]
    config: AutoencoderKLConfig,
}

/// Builds the layers of a validated config, as diffusers' `Encoder` and `Decoder` do.
struct Layers<'a> {
    config: &'a AutoencoderKLConfig,
    device: &'a Device,
}

impl Layers<'_> {
    fn resnet(&self, in_channels: usize, out_channels: usize) -> ResnetBlock2D {
        let settings = ResnetSettings {
            temb_channels: None,
            groups: self.config.norm_num_groups,
            eps: NORM_EPS,
            scale_shift: false,
            output_scale_factor: 1.0,
        };
        ResnetBlock2D::new(in_channels, out_channels, &settings, self.device)
    }

    fn norm(&self, channels: usize) -> GroupNorm {
        GroupNormConfig::new(self.config.norm_num_groups, channels)
            .with_epsilon(NORM_EPS)
            .init(self.device)
    }

    fn is_last(&self, level: usize) -> bool {
        level + 1 == self.config.block_out_channels.len()
    }

    /// Resnet, one-head attention (optional), resnet at the deepest width.
    fn mid_block(&self) -> MidBlock {
        let c = self.config;
        let width = *c
            .block_out_channels
            .last()
            .expect("validated: at least one level");
        let attention = || {
            let groups = Some(c.norm_num_groups);
            Attention::new(width, width, groups, NORM_EPS, 1.0, self.device)
        };
        MidBlock {
            resnets: vec![self.resnet(width, width), self.resnet(width, width)],
            attentions: c
                .mid_block_add_attention
                .then(attention)
                .into_iter()
                .collect(),
        }
    }

    fn encoder(&self) -> Encoder {
        let c = self.config;
        let widths = &c.block_out_channels;
        let down_blocks = (0..widths.len())
            .map(|level| {
                let input = widths[level.saturating_sub(1)];
                let out = widths[level];
                DownEncoderBlock {
                    resnets: (0..c.layers_per_block)
                        .map(|j| self.resnet(if j == 0 { input } else { out }, out))
                        .collect(),
                    // diffusers pads right and bottom by one before an unpadded stride-2 conv.
                    downsamplers: (!self.is_last(level))
                        .then(|| Downsample2D::new(out, 0, self.device))
                        .into_iter()
                        .collect(),
                }
            })
            .collect();
        let deepest = widths[widths.len() - 1];
        Encoder {
            conv_in: conv2d([c.in_channels, widths[0]], 3, 1, 1, self.device),
            down_blocks,
            mid_block: self.mid_block(),
            conv_norm_out: self.norm(deepest),
            conv_out: conv2d([deepest, 2 * c.latent_channels], 3, 1, 1, self.device),
        }
    }

    fn decoder(&self) -> Decoder {
        let c = self.config;
        let reversed: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
        let up_blocks = (0..reversed.len())
            .map(|level| {
                let input = reversed[level.saturating_sub(1)];
                let out = reversed[level];
                UpDecoderBlock {
                    resnets: (0..=c.layers_per_block)
                        .map(|j| self.resnet(if j == 0 { input } else { out }, out))
                        .collect(),
                    upsamplers: (!self.is_last(level))
                        .then(|| Upsample2D::new(out, self.device))
                        .into_iter()
                        .collect(),
                }
            })
            .collect();
        let first = c.block_out_channels[0];
        Decoder {
            conv_in: conv2d([c.latent_channels, reversed[0]], 3, 1, 1, self.device),
            mid_block: self.mid_block(),
            up_blocks,
            conv_norm_out: self.norm(first),
            conv_out: conv2d([first, c.out_channels], 3, 1, 1, self.device),
        }
    }
}

impl Encoder {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = kernels::conv2d(&self.conv_in, x);
        for block in &self.down_blocks {
            for resnet in &block.resnets {
                h = resnet.forward(h, None);
            }
            for down in &block.downsamplers {
                h = down.forward(h);
            }
        }
        let h = self.mid_block.forward(h, None);
        let h = kernels::group_norm(&self.conv_norm_out, h, Activation::Silu);
        kernels::conv2d(&self.conv_out, h)
    }
}

impl Decoder {
    fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let h = kernels::conv2d(&self.conv_in, z);
        let mut h = self.mid_block.forward(h, None);
        for block in &self.up_blocks {
            for resnet in &block.resnets {
                h = resnet.forward(h, None);
            }
            for up in &block.upsamplers {
                h = up.forward(h);
            }
        }
        let h = kernels::group_norm(&self.conv_norm_out, h, Activation::Silu);
        kernels::conv2d(&self.conv_out, h)
    }
}

impl AutoencoderKL {
    /// A randomly initialised autoencoder for `config` (validated first), within the limits of
    /// [`crate::limits`]: one image of at most `MAX_SAMPLE_VALUES` values and at most
    /// `MAX_PARAMETERS` parameters, counted before any weight is allocated.
    pub fn new(config: &AutoencoderKLConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let what = AutoencoderKLConfig::CLASS_NAME;
        check_sample_values(what, config.in_channels, config.sample_size.hw())?;
        let layers = Layers { config, device };
        let moments = 2 * config.latent_channels;
        let latent = config.latent_channels;
        let model = Self {
            encoder: layers.encoder(),
            decoder: layers.decoder(),
            quant_conv: config
                .use_quant_conv
                .then(|| conv2d([moments, moments], 1, 1, 0, device)),
            post_quant_conv: config
                .use_post_quant_conv
                .then(|| conv2d([latent, latent], 1, 1, 0, device)),
            config: config.clone(),
        };
        check_parameter_count(what, model.num_params())?;
        Ok(model)
    }

    pub fn config(&self) -> &AutoencoderKLConfig {
        &self.config
    }

    /// q(z|x) for images [B, C, H, W] in [−1, 1].
    pub fn encode(&self, images: Tensor<4>) -> DiagonalGaussian {
        self.posterior(self.moments(images))
    }

    /// The encoder's output [B, 2·latent_C, h, w] after the quant conv: μ and log σ² stacked.
    fn moments(&self, images: Tensor<4>) -> Tensor<4> {
        let moments = self.encoder.forward(images);
        match &self.quant_conv {
            Some(conv) => kernels::conv2d(conv, moments),
            None => moments,
        }
    }

    /// The Gaussian whose μ and log σ² are stacked along the channels of `moments`.
    fn posterior(&self, moments: Tensor<4>) -> DiagonalGaussian {
        let latent = self.config.latent_channels;
        DiagonalGaussian {
            mean: moments.clone().narrow(1, 0, latent),
            logvar: moments
                .narrow(1, latent, latent)
                .clamp(LOGVAR_RANGE.0, LOGVAR_RANGE.1),
        }
    }

    /// The decoder's raw output for latents [B, latent_C, h, w] (unscaled, as `decode` takes
    /// them in diffusers).
    pub fn decode(&self, latents: Tensor<4>) -> Tensor<4> {
        let latents = match &self.post_quant_conv {
            Some(conv) => kernels::conv2d(conv, latents),
            None => latents,
        };
        self.decoder.forward(latents)
    }

    /// Latents as a diffusion model sees them: (z − shift_factor) · scaling_factor (LDM §4.3.2;
    /// the shift is SD3's).
    pub fn to_diffusion_space(&self, latents: Tensor<4>) -> Tensor<4> {
        let shift = self.config.shift_factor.unwrap_or(0.0);
        (latents - shift) * self.config.scaling()
    }

    /// The inverse of [`AutoencoderKL::to_diffusion_space`]: what the decoder takes.
    pub fn from_diffusion_space(&self, latents: Tensor<4>) -> Tensor<4> {
        latents / self.config.scaling() + self.config.shift_factor.unwrap_or(0.0)
    }

    /// The same autoencoder with `scaling_factor` set (LDM's 1/std of a data set's latents).
    pub fn with_scaling_factor(mut self, scaling_factor: f64) -> Self {
        self.config.scaling_factor = Some(scaling_factor);
        self
    }

    /// Reads a diffusers `vae/` component folder (f16 and bf16 weights are widened to f32).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        load_component(
            dir,
            AutoencoderKLConfig::from_json,
            |config| Self::new(config, device),
            &DEPRECATED_ATTENTION_NAMES,
        )
    }

    /// Writes the component folder diffusers' `AutoencoderKL.from_pretrained` reads.
    pub fn save(&self, dir: &Path) -> Result<()> {
        save_component(self, dir, &self.config.to_json(), &KeyRenames::NONE)
    }
}
