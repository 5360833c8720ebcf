//! diffusers' `UNet2DModel` config.json, field for field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::DiffusersConfig;
use crate::data::DataKind;
use crate::error::{DiffuseError, Result};
use crate::limits::{MAX_LAYERS, MAX_LEVELS, check_at_most};
use crate::nn::network::{DataFit, check_class_table, check_out_channels, data_mismatch};

/// `sample_size`: one side or [height, width].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SampleSize {
    Square(usize),
    Rect([usize; 2]),
}

impl SampleSize {
    /// [height, width].
    pub fn hw(&self) -> [usize; 2] {
        match *self {
            Self::Square(s) => [s, s],
            Self::Rect(hw) => hw,
        }
    }
}

/// The fields of diffusers 0.42's `UNet2DModel.__init__`. Every field diffusers writes is required,
/// so a truncated config is an error, not a silent default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNet2DConfig {
    pub sample_size: Option<SampleSize>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub center_input_sample: bool,
    pub time_embedding_type: String,
    pub time_embedding_dim: Option<usize>,
    pub freq_shift: f64,
    pub flip_sin_to_cos: bool,
    pub down_block_types: Vec<String>,
    pub mid_block_type: Option<String>,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub mid_block_scale_factor: f64,
    pub downsample_padding: usize,
    pub downsample_type: String,
    pub upsample_type: String,
    pub dropout: f64,
    pub act_fn: String,
    pub attention_head_dim: Option<usize>,
    pub norm_num_groups: usize,
    pub attn_norm_num_groups: Option<usize>,
    pub norm_eps: f64,
    pub resnet_time_scale_shift: String,
    pub add_attention: bool,
    pub class_embed_type: Option<String>,
    pub num_class_embeds: Option<usize>,
    pub num_train_timesteps: Option<usize>,
    /// Metadata such as `_class_name` and `_diffusers_version`; any other key is rejected.
    #[serde(flatten)]
    pub metadata: BTreeMap<String, Value>,
}

fn unsupported(field: &str, value: impl std::fmt::Debug, supported: &str) -> DiffuseError {
    DiffuseError::config(format!(
        "UNet2DModel config field `{field}` = {value:?} is not supported (supported: {supported})"
    ))
}

impl UNet2DConfig {
    /// A small config with diffusers' defaults for every field not given here.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        block_out_channels: Vec<usize>,
        down_block_types: Vec<String>,
        up_block_types: Vec<String>,
    ) -> Self {
        Self {
            sample_size: None,
            in_channels,
            out_channels,
            center_input_sample: false,
            time_embedding_type: "positional".into(),
            time_embedding_dim: None,
            freq_shift: 0.0,
            flip_sin_to_cos: true,
            down_block_types,
            mid_block_type: Some("UNetMidBlock2D".into()),
            up_block_types,
            block_out_channels,
            layers_per_block: 2,
            mid_block_scale_factor: 1.0,
            downsample_padding: 1,
            downsample_type: "conv".into(),
            upsample_type: "conv".into(),
            dropout: 0.0,
            act_fn: "silu".into(),
            attention_head_dim: Some(8),
            norm_num_groups: 32,
            attn_norm_num_groups: None,
            norm_eps: 1e-5,
            resnet_time_scale_shift: "default".into(),
            add_attention: true,
            class_embed_type: None,
            num_class_embeds: None,
            num_train_timesteps: None,
            metadata: BTreeMap::new(),
        }
    }

    /// Width of the timestep (and class) embedding: `time_embedding_dim` or 4 × the first block.
    pub fn time_embed_dim(&self) -> usize {
        self.time_embedding_dim
            .unwrap_or(self.block_out_channels[0] * 4)
    }

    /// Takes a preset's shape from the data, or checks a user's config against it; either way
    /// the image must survive the down path's halvings.
    pub(crate) fn fit(&mut self, data: &DataFit) -> Result<()> {
        if data.kind != DataKind::Images {
            return Err(DiffuseError::config(
                "a U-Net trains on images, not vectors",
            ));
        }
        if data.is_preset {
            self.adopt_shape(data);
        } else {
            self.check_shape(data)?;
        }
        self.check_halvings(data)
    }

    fn adopt_shape(&mut self, data: &DataFit) {
        let [channels, height, width] = data.sample_shape;
        self.in_channels = channels;
        self.out_channels = data.out_channels();
        self.sample_size = Some(if height == width {
            SampleSize::Square(height)
        } else {
            SampleSize::Rect([height, width])
        });
        self.num_class_embeds = data.class_table();
    }

    fn check_shape(&self, data: &DataFit) -> Result<()> {
        let [channels, height, width] = data.sample_shape;
        if self.in_channels != channels {
            return Err(data_mismatch(
                "channel count",
                self.in_channels.to_string(),
                channels.to_string(),
            ));
        }
        if let Some(size) = self.sample_size.filter(|s| s.hw() != [height, width]) {
            return Err(data_mismatch(
                "sample size",
                format!("{:?}", size.hw()),
                format!("{:?}", [height, width]),
            ));
        }
        check_out_channels(self.out_channels, data)?;
        check_class_table(self.num_class_embeds, data.classes)
    }

    fn check_halvings(&self, data: &DataFit) -> Result<()> {
        let [_, height, width] = data.sample_shape;
        let levels = self.block_out_channels.len() as u32;
        let factor = 1usize << levels.saturating_sub(1);
        if height % factor != 0 || width % factor != 0 {
            return Err(DiffuseError::config(format!(
                "a U-Net with {levels} levels halves the image {} times: {height}×{width} \
                 is not divisible by {factor}",
                levels - 1
            )));
        }
        Ok(())
    }
}

impl DiffusersConfig for UNet2DConfig {
    const CLASS_NAME: &'static str = "UNet2DModel";

    fn metadata(&self) -> &BTreeMap<String, Value> {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut BTreeMap<String, Value> {
        &mut self.metadata
    }

    /// Rejects what we do not implement, naming the field, and inconsistent shapes.
    fn validate(&self) -> Result<()> {
        self.check_layer_options()?;
        self.check_block_types()?;
        self.check_widths()
    }
}

impl UNet2DConfig {
    /// The embedding, activation, resampling and conditioning options are ones we implement.
    fn check_layer_options(&self) -> Result<()> {
        if self.time_embedding_type != "positional" {
            return Err(unsupported(
                "time_embedding_type",
                &self.time_embedding_type,
                "positional",
            ));
        }
        if !matches!(self.act_fn.as_str(), "silu" | "swish") {
            return Err(unsupported("act_fn", &self.act_fn, "silu"));
        }
        if self.downsample_type != "conv" {
            return Err(unsupported(
                "downsample_type",
                &self.downsample_type,
                "conv",
            ));
        }
        if self.upsample_type != "conv" {
            return Err(unsupported("upsample_type", &self.upsample_type, "conv"));
        }
        if let Some(kind) = &self.class_embed_type {
            return Err(unsupported(
                "class_embed_type",
                kind,
                "null (an embedding table)",
            ));
        }
        if !matches!(
            self.resnet_time_scale_shift.as_str(),
            "default" | "scale_shift"
        ) {
            return Err(unsupported(
                "resnet_time_scale_shift",
                &self.resnet_time_scale_shift,
                "default, scale_shift",
            ));
        }
        Ok(())
    }

    /// Every block type names a block we implement.
    fn check_block_types(&self) -> Result<()> {
        if let Some(mid) = self
            .mid_block_type
            .as_deref()
            .filter(|m| *m != "UNetMidBlock2D")
        {
            return Err(unsupported("mid_block_type", mid, "UNetMidBlock2D, null"));
        }
        for kind in &self.down_block_types {
            if !matches!(kind.as_str(), "DownBlock2D" | "AttnDownBlock2D") {
                return Err(unsupported(
                    "down_block_types",
                    kind,
                    "DownBlock2D, AttnDownBlock2D",
                ));
            }
        }
        for kind in &self.up_block_types {
            if !matches!(kind.as_str(), "UpBlock2D" | "AttnUpBlock2D") {
                return Err(unsupported(
                    "up_block_types",
                    kind,
                    "UpBlock2D, AttnUpBlock2D",
                ));
            }
        }
        Ok(())
    }

    /// One width per level and block type, each divisible by the group norm's groups and by the
    /// attention head width.
    fn check_widths(&self) -> Result<()> {
        let levels = self.block_out_channels.len();
        check_at_most(
            Self::CLASS_NAME,
            MAX_LEVELS,
            &[("block_out_channels (levels)", levels)],
        )?;
        check_at_most(
            Self::CLASS_NAME,
            MAX_LAYERS,
            &[("layers_per_block", self.layers_per_block)],
        )?;
        if levels == 0
            || self.down_block_types.len() != levels
            || self.up_block_types.len() != levels
        {
            return Err(DiffuseError::config(format!(
                "UNet2DModel config: block_out_channels, down_block_types and up_block_types must have \
                 the same non-zero length (got {levels}, {}, {})",
                self.down_block_types.len(),
                self.up_block_types.len()
            )));
        }
        let groups = self.norm_num_groups;
        if let Some(c) = self
            .block_out_channels
            .iter()
            .find(|c| groups == 0 || **c % groups != 0)
        {
            return Err(DiffuseError::config(format!(
                "UNet2DModel config: block_out_channels entry {c} is not divisible by norm_num_groups {groups}"
            )));
        }
        // Only the middle block's attention norm uses it, on the deepest width.
        let deepest = self.block_out_channels[levels - 1];
        if let Some(g) = self
            .attn_norm_num_groups
            .filter(|&g| g == 0 || !deepest.is_multiple_of(g))
        {
            return Err(DiffuseError::config(format!(
                "UNet2DModel config: the deepest width {deepest} is not divisible by attn_norm_num_groups {g}"
            )));
        }
        if let Some(head) = self.attention_head_dim {
            let bad = self
                .block_out_channels
                .iter()
                .find(|c| head == 0 || **c % head != 0);
            if let Some(c) = bad {
                return Err(DiffuseError::config(format!(
                    "UNet2DModel config: block_out_channels entry {c} is not divisible by attention_head_dim {head}"
                )));
            }
        }
        Ok(())
    }
}
