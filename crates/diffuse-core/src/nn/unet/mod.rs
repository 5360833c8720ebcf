//! The U-Net of DDPM (Ho et al. 2020, Appendix B), as diffusers' `UNet2DModel` builds it: a
//! timestep embedding injected into every residual block, self-attention at chosen resolutions,
//! and skip connections from each down level to its up level.

pub mod config;
pub mod layers;

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig};
use burn::tensor::{Device, Tensor};

pub use config::{SampleSize, UNet2DConfig};
use layers::{Attention, Downsample2D, ResnetBlock2D, ResnetSettings, Upsample2D};

use crate::config::DiffusersConfig;
use crate::error::{DiffuseError, Result};
use crate::nn::conv2d;
use crate::nn::embedding::{TimestepMlp, class_embeddings, timestep_embedding};
use crate::nn::kernels::{self, Activation};
use crate::nn::network::{Architecture, DataFit};

/// One resolution level on the way down: residual blocks, optional attention after each, and a
/// strided convolution unless it is the last level (diffusers' `DownBlock2D` / `AttnDownBlock2D`).
#[derive(Module, Debug)]
pub struct DownBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Attention>,
    pub downsamplers: Vec<Downsample2D>,
}

impl DownBlock {
    /// Runs the level, pushing every intermediate state for the up path's skip connections.
    fn forward(&self, mut h: Tensor<4>, temb: &Tensor<2>, skips: &mut Vec<Tensor<4>>) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            h = resnet.forward(h, Some(temb));
            if let Some(attention) = self.attentions.get(i) {
                h = attention.forward(h);
            }
            skips.push(h.clone());
        }
        for down in &self.downsamplers {
            h = down.forward(h);
            skips.push(h.clone());
        }
        h
    }
}

/// The bottleneck: resnet, (attention, resnet)… (diffusers' `UNetMidBlock2D`).
#[derive(Module, Debug)]
pub struct MidBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Attention>,
}

impl MidBlock {
    pub fn forward(&self, h: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let mut h = self.resnets[0].forward(h, temb);
        for (i, resnet) in self.resnets[1..].iter().enumerate() {
            if let Some(attention) = self.attentions.get(i) {
                h = attention.forward(h);
            }
            h = resnet.forward(h, temb);
        }
        h
    }
}

/// One resolution level on the way up: each residual block first concatenates a skip connection
/// (diffusers' `UpBlock2D` / `AttnUpBlock2D`).
#[derive(Module, Debug)]
pub struct UpBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Attention>,
    pub upsamplers: Vec<Upsample2D>,
}

impl UpBlock {
    fn forward(&self, mut h: Tensor<4>, temb: &Tensor<2>, skips: &mut Vec<Tensor<4>>) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("every up resnet has a skip connection");
            h = resnet.forward(Tensor::cat(vec![h, skip], 1), Some(temb));
            if let Some(attention) = self.attentions.get(i) {
                h = attention.forward(h);
            }
        }
        for up in &self.upsamplers {
            h = up.forward(h);
        }
        h
    }
}

/// Builds the blocks of a U-Net for a validated config, level by level, as diffusers does.
struct LayerBuilder<'a> {
    config: &'a UNet2DConfig,
    settings: ResnetSettings,
    device: &'a Device,
}

impl<'a> LayerBuilder<'a> {
    fn new(config: &'a UNet2DConfig, device: &'a Device) -> Self {
        let settings = ResnetSettings {
            temb_channels: Some(config.time_embed_dim()),
            groups: config.norm_num_groups,
            eps: config.norm_eps,
            scale_shift: config.resnet_time_scale_shift == "scale_shift",
            output_scale_factor: 1.0,
        };
        Self {
            config,
            settings,
            device,
        }
    }

    fn levels(&self) -> usize {
        self.config.block_out_channels.len()
    }

    fn resnet(&self, in_channels: usize, out_channels: usize) -> ResnetBlock2D {
        ResnetBlock2D::new(in_channels, out_channels, &self.settings, self.device)
    }

    fn attention(&self, width: usize, groups: Option<usize>, rescale: f64) -> Attention {
        let c = self.config;
        let head_dim = c.attention_head_dim.unwrap_or(width);
        Attention::new(width, head_dim, groups, c.norm_eps, rescale, self.device)
    }

    /// `count` attention layers of `width` for an attention block, none for a plain one.
    fn block_attentions(&self, with_attention: bool, count: usize, width: usize) -> Vec<Attention> {
        if !with_attention {
            return Vec::new();
        }
        (0..count)
            .map(|_| self.attention(width, Some(self.config.norm_num_groups), 1.0))
            .collect()
    }

    fn down_blocks(&self) -> Vec<DownBlock> {
        (0..self.levels())
            .map(|level| self.down_block(level))
            .collect()
    }

    /// Level `level` of the way down: from the previous level's width to its own.
    fn down_block(&self, level: usize) -> DownBlock {
        let c = self.config;
        let input = c.block_out_channels[level.saturating_sub(1)];
        let out = c.block_out_channels[level];
        let resnets = (0..c.layers_per_block)
            .map(|j| self.resnet(if j == 0 { input } else { out }, out))
            .collect();
        let with_attention = c.down_block_types[level] == "AttnDownBlock2D";
        let attentions = self.block_attentions(with_attention, c.layers_per_block, out);
        let downsamplers = (level + 1 < self.levels())
            .then(|| Downsample2D::new(out, c.downsample_padding, self.device))
            .into_iter()
            .collect();
        DownBlock {
            resnets,
            attentions,
            downsamplers,
        }
    }

    /// The bottleneck at the deepest width, when the config has one.
    fn mid_block(&self) -> Option<MidBlock> {
        let c = self.config;
        c.mid_block_type.as_ref()?;
        let deepest = c.block_out_channels[self.levels() - 1];
        let settings = ResnetSettings {
            output_scale_factor: c.mid_block_scale_factor,
            ..self.settings
        };
        // diffusers drops the attention's group norm in the middle block with scale_shift.
        let groups = c
            .attn_norm_num_groups
            .or((!self.settings.scale_shift).then_some(c.norm_num_groups));
        Some(MidBlock {
            resnets: (0..2)
                .map(|_| ResnetBlock2D::new(deepest, deepest, &settings, self.device))
                .collect(),
            attentions: if c.add_attention {
                vec![self.attention(deepest, groups, c.mid_block_scale_factor)]
            } else {
                Vec::new()
            },
        })
    }

    fn up_blocks(&self) -> Vec<UpBlock> {
        (0..self.levels())
            .map(|level| self.up_block(level))
            .collect()
    }

    /// Level `level` of the way up (0 is the deepest): each resnet takes the previous output
    /// and a skip connection, the last one the skip from the level below on the way down.
    fn up_block(&self, level: usize) -> UpBlock {
        let c = self.config;
        let reversed: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
        let prev = reversed[level.saturating_sub(1)];
        let out = reversed[level];
        let input = reversed[(level + 1).min(self.levels() - 1)];
        let layers = c.layers_per_block + 1;
        let resnets = (0..layers)
            .map(|j| {
                let skip = if j == layers - 1 { input } else { out };
                let from = if j == 0 { prev } else { out };
                self.resnet(from + skip, out)
            })
            .collect();
        let with_attention = c.up_block_types[level] == "AttnUpBlock2D";
        let attentions = self.block_attentions(with_attention, layers, out);
        let upsamplers = (level + 1 < self.levels())
            .then(|| Upsample2D::new(out, self.device))
            .into_iter()
            .collect();
        UpBlock {
            resnets,
            attentions,
            upsamplers,
        }
    }
}

/// diffusers' `UNet2DModel` (positional timestep embedding, optional class embedding table).
#[derive(Module, Debug)]
pub struct UNet2DModel {
    pub conv_in: Conv2d,
    pub time_embedding: TimestepMlp,
    pub class_embedding: Option<Embedding>,
    pub down_blocks: Vec<DownBlock>,
    pub mid_block: Option<MidBlock>,
    pub up_blocks: Vec<UpBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
    #[module(skip)]
    config: UNet2DConfig,
}

impl Architecture for UNet2DModel {
    type Config = UNet2DConfig;
    const COMPONENT: &'static str = "unet";
    const LIBRARY: &'static str = "diffusers";
    const CLASS_NAME: &'static str = UNet2DConfig::CLASS_NAME;
    const PIPELINES: &'static [&'static str] = &["DDPMPipeline", "DDIMPipeline"];

    fn pipeline_class(scheduler_class: &str) -> &'static str {
        match scheduler_class {
            "DDIMScheduler" => "DDIMPipeline",
            _ => "DDPMPipeline",
        }
    }

    fn parse_config(text: &str) -> Result<UNet2DConfig> {
        UNet2DConfig::from_json(text)
    }

    fn config_json(config: &UNet2DConfig) -> String {
        config.to_json()
    }

    fn new(config: &UNet2DConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let c = config;
        let channels = &c.block_out_channels;
        let temb_dim = c.time_embed_dim();
        let layers = LayerBuilder::new(c, device);
        let down_blocks = layers.down_blocks();
        let mid_block = layers.mid_block();
        let up_blocks = layers.up_blocks();
        Ok(Self {
            conv_in: conv2d([c.in_channels, channels[0]], 3, 1, 1, device),
            time_embedding: TimestepMlp::new(channels[0], temb_dim, device),
            class_embedding: c
                .num_class_embeds
                .map(|n| EmbeddingConfig::new(n, temb_dim).init(device)),
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: GroupNormConfig::new(c.norm_num_groups, channels[0])
                .with_epsilon(c.norm_eps)
                .init(device),
            conv_out: conv2d([channels[0], c.out_channels], 3, 1, 1, device),
            config: config.clone(),
        })
    }

    fn config(&self) -> &UNet2DConfig {
        &self.config
    }

    fn forward_nchw(
        &self,
        x_t: Tensor<4>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
    ) -> Result<Tensor<4>> {
        self.forward(x_t, timesteps, class_labels)
    }

    fn sample_channels(config: &UNet2DConfig) -> usize {
        config.in_channels
    }

    fn sample_size(config: &UNet2DConfig) -> Option<[usize; 2]> {
        config.sample_size.map(|s| s.hw())
    }

    fn class_table_size(config: &UNet2DConfig) -> Option<usize> {
        config.num_class_embeds
    }

    fn fit(config: &mut UNet2DConfig, data: &DataFit) -> Result<()> {
        config.fit(data)
    }
}

impl UNet2DModel {
    /// The network output for `sample` [B, C, H, W] at `timesteps` (one per row), with class labels
    /// when the network has a class embedding.
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
    ) -> Result<Tensor<4>> {
        let [batch, channels, height, width] = sample.dims();
        self.check_input(batch, channels, height, width, timesteps)?;
        let device = sample.device();
        let sample = if self.config.center_input_sample {
            sample.mul_scalar(2.0).sub_scalar(1.0)
        } else {
            sample
        };
        let t_emb = timestep_embedding(
            timesteps,
            self.config.block_out_channels[0],
            self.config.flip_sin_to_cos,
            self.config.freq_shift,
            &device,
            sample.dtype(),
        );
        let mut emb = self.time_embedding.forward(t_emb);
        if let Some(classes) =
            class_embeddings(self.class_embedding.as_ref(), class_labels, batch, "U-Net")?
        {
            emb = emb + classes;
        }

        let mut h = kernels::conv2d(&self.conv_in, sample);
        let mut skips = vec![h.clone()];
        for block in &self.down_blocks {
            h = block.forward(h, &emb, &mut skips);
        }
        if let Some(mid) = &self.mid_block {
            h = mid.forward(h, Some(&emb));
        }
        for block in &self.up_blocks {
            h = block.forward(h, &emb, &mut skips);
        }
        let h = kernels::group_norm(&self.conv_norm_out, h, Activation::Silu);
        Ok(kernels::conv2d(&self.conv_out, h))
    }

    fn check_input(
        &self,
        batch: usize,
        channels: usize,
        height: usize,
        width: usize,
        timesteps: &[f64],
    ) -> Result<()> {
        if channels != self.config.in_channels {
            return Err(DiffuseError::config(format!(
                "the U-Net takes {} input channels, the sample has {channels}",
                self.config.in_channels
            )));
        }
        let factor = 1 << (self.config.block_out_channels.len() - 1);
        if !height.is_multiple_of(factor) || !width.is_multiple_of(factor) {
            return Err(DiffuseError::config(format!(
                "sample size {height}x{width} must be divisible by {factor} for this U-Net's {} levels",
                self.config.block_out_channels.len()
            )));
        }
        if timesteps.len() != batch {
            return Err(DiffuseError::config(format!(
                "{} timesteps for a batch of {batch}",
                timesteps.len()
            )));
        }
        Ok(())
    }
}
