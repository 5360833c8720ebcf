//! The Diffusion Transformer (Peebles & Xie 2023) as diffusers' `DiTTransformer2DModel` builds it:
//! patches with fixed 2-D sin-cos positions, adaLN-Zero blocks conditioned on timestep + class,
//! and a modulated linear decoder back to patches.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu_approximate, silu};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::DiffusersConfig;
use crate::data::DataKind;
use crate::error::{DiffuseError, Result};
use crate::limits::{MAX_CONFIG_INTEGER, MAX_LAYERS, check_at_most};
use crate::nn::attention::SelfAttention;
use crate::nn::conv2d;
use crate::nn::embedding::{TimestepMlp, class_embeddings, timestep_embedding};
use crate::nn::network::{
    Architecture, DataFit, check_class_table, check_out_channels, data_mismatch,
};
use crate::nn::weights::KeyRenames;
use crate::tensor_ops::from_host_f64;

/// diffusers names the feed-forward layers `ff.net.0.proj` (inside its GELU module) and `ff.net.2`
/// (after a dropout); burn modules cannot mix types in a list, so they are renamed on the way.
const FEED_FORWARD_RENAMES: KeyRenames = KeyRenames {
    load: &[
        (r"\.ff\.net\.0\.proj\.", ".ff.proj_in."),
        (r"\.ff\.net\.2\.", ".ff.proj_out."),
    ],
    save: &[
        (r"\.ff\.proj_in\.", ".ff.net.0.proj."),
        (r"\.ff\.proj_out\.", ".ff.net.2."),
    ],
};

/// Width of the sinusoidal timestep features inside each adaLN-Zero embedding.
const TIMESTEP_FEATURES: usize = 256;

/// The fields of diffusers 0.42's `DiTTransformer2DModel.__init__`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiTConfig {
    pub num_attention_heads: usize,
    pub attention_head_dim: usize,
    pub in_channels: usize,
    pub out_channels: Option<usize>,
    pub num_layers: usize,
    pub dropout: f64,
    pub norm_num_groups: usize,
    pub attention_bias: bool,
    pub sample_size: usize,
    pub patch_size: usize,
    pub activation_fn: String,
    pub num_embeds_ada_norm: Option<usize>,
    pub upcast_attention: bool,
    pub norm_type: String,
    pub norm_elementwise_affine: bool,
    pub norm_eps: f64,
    /// `_class_name`, `_diffusers_version`; any other key is rejected.
    #[serde(flatten)]
    pub metadata: BTreeMap<String, Value>,
}

impl DiTConfig {
    /// Model width: heads × head_dim.
    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    pub fn out_channels(&self) -> usize {
        self.out_channels.unwrap_or(self.in_channels)
    }

    /// Rows of the class table: the classes plus the null class used for classifier-free guidance.
    pub fn class_table_size(&self) -> usize {
        self.num_embeds_ada_norm.unwrap_or(0) + 1
    }

    /// Takes a preset's shape from the data, or checks a user's config against it; either way
    /// the patches must tile the image.
    pub(crate) fn fit(&mut self, data: &DataFit) -> Result<()> {
        let [_, height, width] = data.sample_shape;
        if data.kind != DataKind::Images || height != width {
            return Err(DiffuseError::config("a DiT trains on square images"));
        }
        if data.is_preset {
            self.adopt_shape(data);
        } else {
            self.check_shape(data)?;
        }
        if height % self.patch_size != 0 {
            return Err(DiffuseError::config(format!(
                "patch size {} does not divide the image size {height}",
                self.patch_size
            )));
        }
        Ok(())
    }

    fn adopt_shape(&mut self, data: &DataFit) {
        let [channels, size, _] = data.sample_shape;
        self.in_channels = channels;
        self.out_channels = Some(data.out_channels());
        self.sample_size = size;
        self.num_embeds_ada_norm = Some(data.classes.unwrap_or(0));
    }

    fn check_shape(&self, data: &DataFit) -> Result<()> {
        let [channels, size, _] = data.sample_shape;
        if self.in_channels != channels || self.sample_size != size {
            return Err(data_mismatch(
                "[channels, size]",
                format!("[{}, {}]", self.in_channels, self.sample_size),
                format!("[{channels}, {size}]"),
            ));
        }
        check_out_channels(self.out_channels(), data)?;
        check_class_table(Some(self.class_table_size()), data.classes.or(Some(0)))
    }
}

impl DiffusersConfig for DiTConfig {
    const CLASS_NAME: &'static str = "DiTTransformer2DModel";

    fn metadata(&self) -> &BTreeMap<String, Value> {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut BTreeMap<String, Value> {
        &mut self.metadata
    }

    fn validate(&self) -> Result<()> {
        let unsupported = |field: &str, value: &dyn std::fmt::Debug, supported: &str| {
            Err(DiffuseError::config(format!(
                "DiTTransformer2DModel config field `{field}` = {value:?} is not supported (supported: {supported})"
            )))
        };
        if self.norm_type != "ada_norm_zero" {
            return unsupported("norm_type", &self.norm_type, "ada_norm_zero");
        }
        if self.activation_fn != "gelu-approximate" {
            return unsupported("activation_fn", &self.activation_fn, "gelu-approximate");
        }
        if self.norm_elementwise_affine {
            return unsupported("norm_elementwise_affine", &true, "false");
        }
        if !self.attention_bias {
            return unsupported("attention_bias", &false, "true");
        }
        if self.num_layers == 0 {
            return Err(DiffuseError::config(
                "DiTTransformer2DModel config: num_layers must be at least 1",
            ));
        }
        if self.num_embeds_ada_norm.is_none() {
            return unsupported("num_embeds_ada_norm", &"null", "a class count");
        }
        if self.patch_size == 0 || !self.sample_size.is_multiple_of(self.patch_size) {
            return Err(DiffuseError::config(format!(
                "DiTTransformer2DModel config: sample_size {} is not a multiple of patch_size {}",
                self.sample_size, self.patch_size
            )));
        }
        check_at_most(
            Self::CLASS_NAME,
            MAX_LAYERS,
            &[("num_layers", self.num_layers)],
        )?;
        // heads × head_dim, each within the config limit, could still overflow a weight's size.
        check_at_most(
            Self::CLASS_NAME,
            MAX_CONFIG_INTEGER as usize,
            &[("num_attention_heads × attention_head_dim", self.inner_dim())],
        )?;
        if !self.inner_dim().is_multiple_of(4) {
            return Err(DiffuseError::config(format!(
                "DiTTransformer2DModel config: the width {} must be divisible by 4 for 2-D positions",
                self.inner_dim()
            )));
        }
        Ok(())
    }
}

/// Non-overlapping p×p patches projected to the model width (`pos_embed.proj`).
#[derive(Module, Debug)]
pub struct PatchEmbed {
    pub proj: Conv2d,
}

/// The class table (`class_embedder.embedding_table`), one extra row for the null class.
#[derive(Module, Debug)]
pub struct LabelEmbedding {
    pub embedding_table: Embedding,
}

/// diffusers' `CombinedTimestepLabelEmbeddings`: MLP(sinusoid(t)) + table(class).
#[derive(Module, Debug)]
pub struct TimestepLabelEmbedding {
    pub timestep_embedder: TimestepMlp,
    pub class_embedder: LabelEmbedding,
}

impl TimestepLabelEmbedding {
    fn forward(
        &self,
        timesteps: &[f64],
        labels: &[usize],
        device: &Device,
        dtype: burn::tensor::DType,
    ) -> Result<Tensor<2>> {
        let features = timestep_embedding(timesteps, TIMESTEP_FEATURES, true, 1.0, device, dtype);
        let table = Some(&self.class_embedder.embedding_table);
        let classes = class_embeddings(table, Some(labels), labels.len(), "DiT")?
            .expect("a DiT always has a class table");
        Ok(self.timestep_embedder.forward(features) + classes)
    }
}

/// adaLN-Zero (DiT §3.2): the conditioning regresses shift, scale and gate for both sub-layers.
#[derive(Module, Debug)]
pub struct AdaLayerNormZero {
    pub emb: TimestepLabelEmbedding,
    pub linear: Linear,
}

/// The transformer MLP: GELU (tanh approximation) between two linear layers.
#[derive(Module, Debug)]
pub struct FeedForward {
    pub proj_in: Linear,
    pub proj_out: Linear,
}

/// One DiT block with adaLN-Zero conditioning (DiT Figure 3, left).
#[derive(Module, Debug)]
pub struct DiTBlock {
    pub norm1: AdaLayerNormZero,
    pub attn1: SelfAttention,
    pub ff: FeedForward,
    #[module(skip)]
    norm_eps: f64,
}

/// LayerNorm over the last dimension without affine parameters.
fn layer_norm(x: Tensor<3>, eps: f64) -> Tensor<3> {
    let (var, mean) = x.clone().var_mean_bias(2);
    (x - mean) / var.add_scalar(eps).sqrt()
}

/// x·(1 + scale) + shift with [B, C] modulations broadcast over the sequence.
fn modulate(x: Tensor<3>, shift: Tensor<2>, scale: Tensor<2>) -> Tensor<3> {
    x * (scale.unsqueeze_dim(1) + 1.0) + shift.unsqueeze_dim(1)
}

impl DiTBlock {
    fn forward(&self, x: Tensor<3>, conditioning: Tensor<2>) -> Tensor<3> {
        let chunks = self.norm1.linear.forward(silu(conditioning)).chunk(6, 1);
        let [
            shift_msa,
            scale_msa,
            gate_msa,
            shift_mlp,
            scale_mlp,
            gate_mlp,
        ]: [Tensor<2>; 6] = chunks.try_into().expect("six modulation chunks");
        let h = modulate(layer_norm(x.clone(), 1e-6), shift_msa, scale_msa);
        let x = x + self.attn1.forward(h) * gate_msa.unsqueeze_dim(1);
        let h = modulate(layer_norm(x.clone(), self.norm_eps), shift_mlp, scale_mlp);
        let ff = self
            .ff
            .proj_out
            .forward(gelu_approximate(self.ff.proj_in.forward(h)));
        x + ff * gate_mlp.unsqueeze_dim(1)
    }
}

/// diffusers' `DiTTransformer2DModel`.
#[derive(Module, Debug)]
pub struct DiTTransformer2DModel {
    pub pos_embed: PatchEmbed,
    pub transformer_blocks: Vec<DiTBlock>,
    pub proj_out_1: Linear,
    pub proj_out_2: Linear,
    #[module(skip)]
    config: DiTConfig,
}

/// The fixed 2-D sin-cos positions [N, D] of a g×g patch grid (DiT's `get_2d_sincos_pos_embed`):
/// the first half encodes the column, the second the row, each as [sin(pω), cos(pω)] with
/// ω_k = 10000^(−k/(D/4)). Computed in f64 like diffusers, then cast.
fn sincos_positions(dim: usize, grid: usize) -> Vec<f64> {
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter)
        .map(|k| 1.0 / 10000f64.powf(k as f64 / quarter as f64))
        .collect();
    let encode = |p: f64| -> Vec<f64> {
        let sines = omega.iter().map(|w| (p * w).sin());
        let cosines = omega.iter().map(|w| (p * w).cos());
        sines.chain(cosines).collect()
    };
    let mut out = Vec::with_capacity(grid * grid * dim);
    for row in 0..grid {
        for col in 0..grid {
            out.extend(encode(col as f64));
            out.extend(encode(row as f64));
        }
    }
    out
}

impl Architecture for DiTTransformer2DModel {
    type Config = DiTConfig;
    const COMPONENT: &'static str = "transformer";
    const LIBRARY: &'static str = "diffusers";
    const CLASS_NAME: &'static str = DiTConfig::CLASS_NAME;
    const PIPELINES: &'static [&'static str] = &["DiTPipeline"];
    const KEY_RENAMES: KeyRenames = FEED_FORWARD_RENAMES;

    fn parse_config(text: &str) -> Result<DiTConfig> {
        DiTConfig::from_json(text)
    }

    fn config_json(config: &DiTConfig) -> String {
        config.to_json()
    }

    fn new(config: &DiTConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let dim = config.inner_dim();
        let p = config.patch_size;
        let block = || DiTBlock {
            norm1: AdaLayerNormZero {
                emb: TimestepLabelEmbedding {
                    timestep_embedder: TimestepMlp::new(TIMESTEP_FEATURES, dim, device),
                    class_embedder: LabelEmbedding {
                        embedding_table: EmbeddingConfig::new(config.class_table_size(), dim)
                            .init(device),
                    },
                },
                linear: LinearConfig::new(dim, 6 * dim).init(device),
            },
            attn1: SelfAttention::new(
                dim,
                config.num_attention_heads,
                config.attention_head_dim,
                device,
            ),
            ff: FeedForward {
                proj_in: LinearConfig::new(dim, 4 * dim).init(device),
                proj_out: LinearConfig::new(4 * dim, dim).init(device),
            },
            norm_eps: config.norm_eps,
        };
        Ok(Self {
            pos_embed: PatchEmbed {
                proj: conv2d([config.in_channels, dim], p, p, 0, device),
            },
            transformer_blocks: (0..config.num_layers).map(|_| block()).collect(),
            proj_out_1: LinearConfig::new(dim, 2 * dim).init(device),
            proj_out_2: LinearConfig::new(dim, p * p * config.out_channels()).init(device),
            config: config.clone(),
        })
    }

    fn config(&self) -> &DiTConfig {
        &self.config
    }

    fn forward_nchw(
        &self,
        x_t: Tensor<4>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
    ) -> Result<Tensor<4>> {
        let labels = class_labels.ok_or_else(|| {
            DiffuseError::config(format!(
                "a DiT is class-conditional: give class labels (the null class {} samples \
                 unconditionally)",
                self.config.class_table_size() - 1
            ))
        })?;
        self.forward(x_t, timesteps, labels)
    }

    fn sample_channels(config: &DiTConfig) -> usize {
        config.in_channels
    }

    fn sample_size(config: &DiTConfig) -> Option<[usize; 2]> {
        Some([config.sample_size, config.sample_size])
    }

    fn class_table_size(config: &DiTConfig) -> Option<usize> {
        Some(config.class_table_size())
    }

    fn fit(config: &mut DiTConfig, data: &DataFit) -> Result<()> {
        config.fit(data)
    }
}

impl DiTTransformer2DModel {
    /// The output [B, out_channels, H, W] for `sample` [B, C, H, W] at `timesteps` with class
    /// `class_labels` (the null class, index `num_embeds_ada_norm`, for unconditional).
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timesteps: &[f64],
        class_labels: &[usize],
    ) -> Result<Tensor<4>> {
        let c = &self.config;
        let [batch, channels, height, width] = sample.dims();
        if channels != c.in_channels || height != c.sample_size || width != c.sample_size {
            return Err(DiffuseError::config(format!(
                "the DiT takes [B, {}, {s}, {s}] samples, got [B, {channels}, {height}, {width}]",
                c.in_channels,
                s = c.sample_size
            )));
        }
        if timesteps.len() != batch || class_labels.len() != batch {
            return Err(DiffuseError::config(format!(
                "{} timesteps and {} class labels for a batch of {batch}",
                timesteps.len(),
                class_labels.len()
            )));
        }
        if let Some(bad) = class_labels.iter().find(|&&l| l >= c.class_table_size()) {
            return Err(DiffuseError::config(format!(
                "class label {bad} is out of range: the DiT has {} classes plus the null class {}",
                c.class_table_size() - 1,
                c.class_table_size() - 1
            )));
        }
        let (device, dtype) = (sample.device(), sample.dtype());
        let dim = c.inner_dim();
        let p = c.patch_size;
        let grid = c.sample_size / p;
        let patches = self
            .pos_embed
            .proj
            .forward(sample)
            .reshape([batch, dim, grid * grid])
            .swap_dims(1, 2);
        let positions = from_host_f64(
            sincos_positions(dim, grid),
            [1, grid * grid, dim],
            &device,
            dtype,
        );
        let mut x = patches + positions;
        let emb = |block: &DiTBlock| {
            block
                .norm1
                .emb
                .forward(timesteps, class_labels, &device, dtype)
        };
        // diffusers conditions the final layer on the first block's embedding, so it is kept.
        let conditioning = emb(&self.transformer_blocks[0])?;
        for (i, block) in self.transformer_blocks.iter().enumerate() {
            let block_conditioning = if i == 0 {
                conditioning.clone()
            } else {
                emb(block)?
            };
            x = block.forward(x, block_conditioning);
        }
        let [shift, scale]: [Tensor<2>; 2] = self
            .proj_out_1
            .forward(silu(conditioning))
            .chunk(2, 1)
            .try_into()
            .expect("two modulation chunks");
        let x = self
            .proj_out_2
            .forward(modulate(layer_norm(x, 1e-6), shift, scale));
        let out = c.out_channels();
        Ok(x.reshape([batch, grid, grid, p, p, out])
            .permute([0, 5, 1, 3, 2, 4])
            .reshape([batch, out, grid * p, grid * p]))
    }
}
