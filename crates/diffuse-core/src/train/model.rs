//! The network a run trains: a built-in preset or a user's config file, fitted to the data.

use std::path::Path;

use burn::tensor::Device;
use serde_json::Value;

use crate::config::DiffusersConfig;
use crate::data::{DataKind, Dataset};
use crate::error::{DiffuseError, Result};
use crate::nn::dit::{DiTConfig, DiTTransformer2DModel};
use crate::nn::mlp::{MlpConfig, MlpDenoiser};
use crate::nn::unet::{UNet2DConfig, UNet2DModel};
use crate::pipeline::DenoisingNetwork;

/// The built-in models, for `--preset`.
pub const PRESETS: &str = "tiny (a few-thousand-parameter U-Net or MLP, for tests), unet-28 \
    (small U-Net for 28×28 images), ddpm-cifar10 (the 35.7M-parameter DDPM CIFAR-10 U-Net), \
    dit-small (6-layer DiT, patch 4), mlp (residual MLP for vectors)";

/// A network's config, before it is fitted to the data.
// One config per run; its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    UNet(UNet2DConfig),
    DiT(DiTConfig),
    Mlp(MlpConfig),
}

fn unet_preset(json: &str) -> ModelConfig {
    ModelConfig::UNet(UNet2DConfig::from_json(json).expect("built-in presets are valid"))
}

impl ModelConfig {
    /// A built-in model for data of `kind`.
    pub fn preset(name: &str, kind: DataKind) -> Result<Self> {
        let config = match (name, kind) {
            ("tiny", DataKind::Images) => {
                unet_preset(include_str!("../../../../benches/configs/unet-tiny.json"))
            }
            ("unet-28", DataKind::Images) => {
                unet_preset(include_str!("../../../../benches/configs/unet-28.json"))
            }
            ("ddpm-cifar10", DataKind::Images) => unet_preset(include_str!(
                "../../../../benches/configs/ddpm-cifar10-32.json"
            )),
            ("dit-small", DataKind::Images) => ModelConfig::DiT(
                DiTConfig::from_json(include_str!("../../../../benches/configs/dit-small.json"))
                    .expect("built-in presets are valid"),
            ),
            ("tiny", DataKind::Vectors) => ModelConfig::Mlp(MlpConfig {
                hidden_dim: 32,
                num_blocks: 2,
                time_features: 16,
                ..MlpConfig::new(2)
            }),
            ("mlp", DataKind::Vectors) => ModelConfig::Mlp(MlpConfig::new(2)),
            ("unet-28" | "ddpm-cifar10" | "dit-small", DataKind::Vectors) => {
                return Err(DiffuseError::config(format!(
                    "preset `{name}` is an image model; vector data trains `mlp` or `tiny`"
                )));
            }
            ("mlp", DataKind::Images) => {
                return Err(DiffuseError::config(
                    "preset `mlp` is for vector data; images train tiny, unet-28, ddpm-cifar10 \
                     or dit-small",
                ));
            }
            (other, _) => {
                return Err(DiffuseError::UnknownName {
                    kind: "model preset",
                    name: other.into(),
                    expected: PRESETS,
                });
            }
        };
        Ok(config)
    }

    /// Reads a config file, telling the network apart by its `_class_name`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DiffuseError::io(path, e))?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| DiffuseError::bad_file(path, format!("malformed JSON: {e}")))?;
        let in_file = |e: DiffuseError| DiffuseError::bad_file(path, e.to_string());
        match json["_class_name"].as_str() {
            Some("UNet2DModel") => Ok(Self::UNet(UNet2DConfig::from_json(&text).map_err(in_file)?)),
            Some("DiTTransformer2DModel") => {
                Ok(Self::DiT(DiTConfig::from_json(&text).map_err(in_file)?))
            }
            Some("MlpDenoiser") => {
                Ok(Self::Mlp(serde_json::from_value(json).map_err(|e| {
                    DiffuseError::bad_file(path, e.to_string())
                })?))
            }
            other => Err(DiffuseError::bad_file(
                path,
                format!(
                    "`_class_name` {other:?} is not a model diffuse trains (UNet2DModel, \
                     DiTTransformer2DModel, MlpDenoiser)"
                ),
            )),
        }
    }

    /// Sets the shape fields from the data: channels, size, the class table (classes + the null
    /// class when `classes` is given) and, for a learned variance, twice the output channels. A
    /// user's file must already agree with the data.
    pub fn fitted(
        mut self,
        data: &Dataset,
        classes: Option<usize>,
        learned_variance: bool,
        is_preset: bool,
    ) -> Result<Self> {
        let [channels, height, width] = data.sample_shape;
        let out_channels = if learned_variance {
            2 * channels
        } else {
            channels
        };
        let mismatch = |what: &str, config: String, data: String| {
            DiffuseError::config(format!(
                "the model config's {what} is {config}, the data's is {data}"
            ))
        };
        match &mut self {
            Self::UNet(c) => {
                if data.kind != DataKind::Images {
                    return Err(DiffuseError::config(
                        "a U-Net trains on images, not vectors",
                    ));
                }
                if is_preset {
                    c.in_channels = channels;
                    c.out_channels = out_channels;
                    c.sample_size = Some(crate::nn::unet::SampleSize::Rect([height, width]));
                    if height == width {
                        c.sample_size = Some(crate::nn::unet::SampleSize::Square(height));
                    }
                    c.num_class_embeds = classes.map(|k| k + 1);
                } else {
                    if c.in_channels != channels {
                        return Err(mismatch(
                            "channel count",
                            c.in_channels.to_string(),
                            channels.to_string(),
                        ));
                    }
                    if let Some(size) = c.sample_size.filter(|s| s.hw() != [height, width]) {
                        return Err(mismatch(
                            "sample size",
                            format!("{:?}", size.hw()),
                            format!("{:?}", [height, width]),
                        ));
                    }
                    if c.out_channels != out_channels {
                        return Err(mismatch(
                            "output channel count",
                            c.out_channels.to_string(),
                            format!("{out_channels} (the variance type asks for it)"),
                        ));
                    }
                    check_class_table(c.num_class_embeds, classes)?;
                }
                let levels = c.block_out_channels.len() as u32;
                let factor = 1usize << levels.saturating_sub(1);
                if height % factor != 0 || width % factor != 0 {
                    return Err(DiffuseError::config(format!(
                        "a U-Net with {levels} levels halves the image {} times: {height}×{width} \
                         is not divisible by {factor}",
                        levels - 1
                    )));
                }
            }
            Self::DiT(c) => {
                if data.kind != DataKind::Images || height != width {
                    return Err(DiffuseError::config("a DiT trains on square images"));
                }
                if is_preset {
                    c.in_channels = channels;
                    c.out_channels = Some(out_channels);
                    c.sample_size = height;
                    c.num_embeds_ada_norm = Some(classes.unwrap_or(0));
                } else {
                    if c.in_channels != channels || c.sample_size != height {
                        return Err(mismatch(
                            "[channels, size]",
                            format!("[{}, {}]", c.in_channels, c.sample_size),
                            format!("[{channels}, {height}]"),
                        ));
                    }
                    let configured_out = c.out_channels();
                    if configured_out != out_channels {
                        return Err(mismatch(
                            "output channel count",
                            configured_out.to_string(),
                            format!("{out_channels} (the variance type asks for it)"),
                        ));
                    }
                    check_class_table(Some(c.class_table_size()), classes.or(Some(0)))?;
                }
                if height % c.patch_size != 0 {
                    return Err(DiffuseError::config(format!(
                        "patch size {} does not divide the image size {height}",
                        c.patch_size
                    )));
                }
            }
            Self::Mlp(c) => {
                if learned_variance {
                    return Err(DiffuseError::config(
                        "the MLP denoiser has no variance output: a learned variance needs a \
                         U-Net or a DiT",
                    ));
                }
                if is_preset {
                    c.data_dim = channels * height * width;
                    c.num_class_embeds = classes.map(|k| k + 1);
                } else {
                    if c.data_dim != channels * height * width {
                        return Err(mismatch(
                            "data_dim",
                            c.data_dim.to_string(),
                            (channels * height * width).to_string(),
                        ));
                    }
                    check_class_table(c.num_class_embeds, classes)?;
                }
            }
        }
        Ok(self)
    }

    /// One sample's shape [C, H, W] as the config states it (U-Nets without a sample size: 32²).
    pub fn sample_shape(&self) -> [usize; 3] {
        match self {
            Self::UNet(c) => {
                let [h, w] = c.sample_size.map_or([32, 32], |s| s.hw());
                [c.in_channels, h, w]
            }
            Self::DiT(c) => [c.in_channels, c.sample_size, c.sample_size],
            Self::Mlp(c) => [c.data_dim, 1, 1],
        }
    }

    /// Rows of the class table (classes + the null class), for class-conditional configs.
    pub fn class_table_size(&self) -> Option<usize> {
        match self {
            Self::UNet(c) => c.num_class_embeds,
            Self::DiT(c) => Some(c.class_table_size()),
            Self::Mlp(c) => c.num_class_embeds,
        }
    }

    /// A freshly initialised network on `device`.
    pub fn build(&self, device: &Device) -> Result<DenoisingNetwork> {
        Ok(match self {
            Self::UNet(c) => DenoisingNetwork::UNet(UNet2DModel::new(c, device)?),
            Self::DiT(c) => DenoisingNetwork::DiT(DiTTransformer2DModel::new(c, device)?),
            Self::Mlp(c) => DenoisingNetwork::Mlp(MlpDenoiser::new(c, device)?),
        })
    }
}

/// A class-conditional run needs a table of exactly classes + 1 rows; an unconditional one none.
fn check_class_table(table: Option<usize>, classes: Option<usize>) -> Result<()> {
    match (table, classes) {
        (Some(rows), Some(k)) if rows == k + 1 => Ok(()),
        (None, None) => Ok(()),
        (table, classes) => Err(DiffuseError::config(format!(
            "the model's class table has {table:?} rows, but the run needs {} (classes + the \
             null class; set --class-conditional to match the config)",
            classes.map_or("none".to_string(), |k| (k + 1).to_string())
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_fit_the_data_they_are_given() {
        let images = Dataset::new(
            [3, 32, 32],
            vec![0.0; 3 * 32 * 32],
            Some(vec![1]),
            vec!["a".into(), "b".into()],
            DataKind::Images,
        )
        .unwrap();
        match ModelConfig::preset("unet-28", DataKind::Images)
            .unwrap()
            .fitted(&images, Some(2), false, true)
            .unwrap()
        {
            ModelConfig::UNet(c) => {
                assert_eq!(
                    (c.in_channels, c.out_channels, c.num_class_embeds),
                    (3, 3, Some(3))
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(ModelConfig::preset("mlp", DataKind::Images).is_err());
        assert!(ModelConfig::preset("unet-29", DataKind::Images).is_err());
        let odd =
            Dataset::new([1, 30, 30], vec![0.0; 900], None, vec![], DataKind::Images).unwrap();
        let err = ModelConfig::preset("unet-28", DataKind::Images)
            .unwrap()
            .fitted(&odd, None, false, true)
            .unwrap_err();
        assert!(err.to_string().contains("not divisible by 4"), "{err}");
    }
}
