//! diffusers' `AutoencoderKL` config.json, field for field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::DiffusersConfig;
use crate::error::{DiffuseError, Result};
use crate::limits::{MAX_LAYERS, MAX_LEVELS, check_at_most};
use crate::nn::unet::SampleSize;

/// The fields of diffusers 0.42's `AutoencoderKL.__init__`. Unlike the denoisers' configs, a
/// missing field takes diffusers' default, as `from_pretrained` does: the `vae/` folders of
/// Stable Diffusion releases were written before several fields existed (`force_upcast`,
/// `use_quant_conv`, `mid_block_add_attention`, …) and must load unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutoencoderKLConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub act_fn: String,
    pub latent_channels: usize,
    pub norm_num_groups: usize,
    pub sample_size: SampleSize,
    /// Latents are multiplied by this before the diffusion model sees them (LDM §4.3.2). `None`
    /// when config.json has no such field: diffusers then uses [`DEFAULT_SCALING_FACTOR`], and
    /// latent training computes LDM's 1/std instead (see `train::latents`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaling_factor: Option<f64>,
    /// Subtracted from latents before scaling (SD3/Flux VAEs); `None` for none.
    pub shift_factor: Option<f64>,
    pub latents_mean: Option<Vec<f64>>,
    pub latents_std: Option<Vec<f64>>,
    /// Run in f32 even when the pipeline is in half precision (we always run in f32).
    pub force_upcast: bool,
    pub use_quant_conv: bool,
    pub use_post_quant_conv: bool,
    pub mid_block_add_attention: bool,
    /// Metadata such as `_class_name` and `_diffusers_version`; any other key is rejected.
    #[serde(flatten)]
    pub metadata: BTreeMap<String, Value>,
}

impl Default for AutoencoderKLConfig {
    /// diffusers' defaults.
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            down_block_types: vec!["DownEncoderBlock2D".into()],
            up_block_types: vec!["UpDecoderBlock2D".into()],
            block_out_channels: vec![64],
            layers_per_block: 1,
            act_fn: "silu".into(),
            latent_channels: 4,
            norm_num_groups: 32,
            sample_size: SampleSize::Square(32),
            scaling_factor: None,
            shift_factor: None,
            latents_mean: None,
            latents_std: None,
            force_upcast: true,
            use_quant_conv: true,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
            metadata: BTreeMap::new(),
        }
    }
}

/// diffusers' default `scaling_factor`, Stable Diffusion v1's.
pub const DEFAULT_SCALING_FACTOR: f64 = 0.18215;

impl AutoencoderKLConfig {
    /// The scaling factor diffusers uses: the config's, or [`DEFAULT_SCALING_FACTOR`].
    pub fn scaling(&self) -> f64 {
        self.scaling_factor.unwrap_or(DEFAULT_SCALING_FACTOR)
    }

    /// How many times the encoder halves the image: one fewer than its levels.
    pub fn downsampling_factor(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }

    /// [C, h, w] of the latent of an image of `[height, width]`, or an error naming the sizes
    /// when the encoder's halvings do not divide them.
    pub fn latent_shape(&self, [height, width]: [usize; 2]) -> Result<[usize; 3]> {
        let factor = self.downsampling_factor();
        if height % factor != 0 || width % factor != 0 {
            return Err(DiffuseError::config(format!(
                "this autoencoder halves images {} times: {height}×{width} is not divisible by \
                 {factor}",
                self.block_out_channels.len() - 1
            )));
        }
        Ok([self.latent_channels, height / factor, width / factor])
    }
}

fn unsupported(field: &str, value: impl std::fmt::Debug, supported: &str) -> DiffuseError {
    DiffuseError::config(format!(
        "AutoencoderKL config field `{field}` = {value:?} is not supported (supported: {supported})"
    ))
}

impl DiffusersConfig for AutoencoderKLConfig {
    const CLASS_NAME: &'static str = "AutoencoderKL";

    fn metadata(&self) -> &BTreeMap<String, Value> {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut BTreeMap<String, Value> {
        &mut self.metadata
    }

    /// Rejects block types and activations we do not implement, inconsistent lengths, and widths
    /// the group norm cannot split.
    fn validate(&self) -> Result<()> {
        if !matches!(self.act_fn.as_str(), "silu" | "swish") {
            return Err(unsupported("act_fn", &self.act_fn, "silu"));
        }
        if let Some(kind) = self
            .down_block_types
            .iter()
            .find(|k| *k != "DownEncoderBlock2D")
        {
            return Err(unsupported("down_block_types", kind, "DownEncoderBlock2D"));
        }
        if let Some(kind) = self
            .up_block_types
            .iter()
            .find(|k| *k != "UpDecoderBlock2D")
        {
            return Err(unsupported("up_block_types", kind, "UpDecoderBlock2D"));
        }
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
                "AutoencoderKL config: block_out_channels, down_block_types and up_block_types \
                 must have the same non-zero length (got {levels}, {}, {})",
                self.down_block_types.len(),
                self.up_block_types.len()
            )));
        }
        let groups = self.norm_num_groups;
        if let Some(c) = self
            .block_out_channels
            .iter()
            .find(|c| groups == 0 || !c.is_multiple_of(groups))
        {
            return Err(DiffuseError::config(format!(
                "AutoencoderKL config: block_out_channels entry {c} is not divisible by \
                 norm_num_groups {groups}"
            )));
        }
        let zero = [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("latent_channels", self.latent_channels),
        ];
        if let Some((field, _)) = zero.iter().find(|(_, v)| *v == 0) {
            return Err(DiffuseError::config(format!(
                "AutoencoderKL config field `{field}` must be at least 1"
            )));
        }
        if let Some(scale) = self.scaling_factor.filter(|s| !s.is_finite() || *s <= 0.0) {
            return Err(DiffuseError::config(format!(
                "AutoencoderKL config field `scaling_factor` must be a positive number, got {scale}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stable_diffusion_v1_config_without_the_newer_fields_takes_diffusers_defaults() {
        // The vae/config.json of Stable Diffusion v1.5 as released (diffusers 0.6.0).
        let text = r#"{
            "_class_name": "AutoencoderKL", "_diffusers_version": "0.6.0", "act_fn": "silu",
            "block_out_channels": [128, 256, 512, 512],
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D",
                                 "DownEncoderBlock2D"],
            "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
            "out_channels": 3, "sample_size": 512,
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D",
                               "UpDecoderBlock2D"]
        }"#;
        let config = AutoencoderKLConfig::from_json(text).unwrap();
        assert_eq!(config.scaling_factor, None);
        assert_eq!(config.scaling(), 0.18215);
        assert!(config.use_quant_conv && config.use_post_quant_conv);
        assert!(config.mid_block_add_attention);
        assert_eq!(config.latent_shape([512, 512]).unwrap(), [4, 64, 64]);
        assert!(config.latent_shape([500, 512]).is_err());
    }

    #[test]
    fn unknown_fields_and_block_types_are_refused_by_name() {
        let error = AutoencoderKLConfig::from_json(r#"{"frobnicate": 1}"#).unwrap_err();
        assert!(error.to_string().contains("frobnicate"), "{error}");
        let text = r#"{"down_block_types": ["AttnDownEncoderBlock2D"]}"#;
        let error = AutoencoderKLConfig::from_json(text).unwrap_err();
        assert!(
            error.to_string().contains("AttnDownEncoderBlock2D"),
            "{error}"
        );
    }
}
