//! The network a run trains: a built-in preset or a user's config file (read by
//! [`ModelConfig::from_file`]), fitted to the data.

use crate::config::DiffusersConfig;
use crate::data::{DataKind, Dataset};
use crate::error::{DiffuseError, Result};
use crate::nn::dit::DiTConfig;
use crate::nn::mlp::MlpConfig;
use crate::nn::network::{DataFit, ModelConfig};
use crate::nn::unet::UNet2DConfig;

/// The built-in models, for `--preset`.
pub const PRESETS: &str = "tiny (a few-thousand-parameter U-Net or MLP, for tests), unet-28 \
    (small U-Net for 28×28 images), ddpm-cifar10 (the 35.7M-parameter DDPM CIFAR-10 U-Net), \
    dit-small (6-layer DiT, patch 4), mlp (residual MLP for vectors)";

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
        self.fit(&DataFit {
            kind: data.kind,
            sample_shape: data.sample_shape,
            classes,
            learned_variance,
            is_preset,
        })?;
        Ok(self)
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
