//! A small residual MLP denoiser for vector data (2-D toy sets, tabular rows), conditioned on the
//! same sinusoidal timestep embedding as the U-Net.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::config::parse_config_json;
use crate::error::{DiffuseError, Result};
use crate::limits::{MAX_LAYERS, check_at_most};
use crate::nn::embedding::{TimestepMlp, class_embeddings, timestep_embedding};
use crate::nn::network::{Architecture, DataFit, check_class_table, data_mismatch};

/// The MLP's shape. Serialised as its `config.json` (`_class_name` "MlpDenoiser").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    #[serde(rename = "_class_name", default = "mlp_class_name")]
    pub class_name: String,
    /// D, the width of one data row.
    pub data_dim: usize,
    /// Width of the hidden layers and of the timestep embedding.
    pub hidden_dim: usize,
    /// Residual blocks between the input and output projections.
    pub num_blocks: usize,
    /// Sinusoidal features fed to the timestep MLP.
    pub time_features: usize,
    /// Class table size (classes + the null class) for class-conditional models.
    pub num_class_embeds: Option<usize>,
}

fn mlp_class_name() -> String {
    "MlpDenoiser".into()
}

impl MlpConfig {
    /// Defaults that fit 2-D toy data: 128 wide, 3 residual blocks.
    pub fn new(data_dim: usize) -> Self {
        Self {
            class_name: mlp_class_name(),
            data_dim,
            hidden_dim: 128,
            num_blocks: 3,
            time_features: 64,
            num_class_embeds: None,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.class_name != "MlpDenoiser" {
            return Err(DiffuseError::config(format!(
                "config `_class_name` is `{}`, expected `MlpDenoiser`",
                self.class_name
            )));
        }
        if self.data_dim == 0 || self.hidden_dim == 0 || self.time_features < 2 {
            return Err(DiffuseError::config(
                "MlpDenoiser config: data_dim and hidden_dim must be positive, time_features at least 2",
            ));
        }
        check_at_most(
            "MlpDenoiser",
            MAX_LAYERS,
            &[("num_blocks", self.num_blocks)],
        )
    }

    /// Takes a preset's width from the data, or checks a user's config against it.
    pub(crate) fn fit(&mut self, data: &DataFit) -> Result<()> {
        if data.learned_variance {
            return Err(DiffuseError::config(
                "the MLP denoiser has no variance output: a learned variance needs a \
                 U-Net or a DiT",
            ));
        }
        let width: usize = data.sample_shape.iter().product();
        if data.is_preset {
            self.data_dim = width;
            self.num_class_embeds = data.class_table();
            return Ok(());
        }
        if self.data_dim != width {
            return Err(data_mismatch(
                "data_dim",
                self.data_dim.to_string(),
                width.to_string(),
            ));
        }
        check_class_table(self.num_class_embeds, data.classes)
    }
}

/// One pre-activation residual block: h + W·SiLU(h).
#[derive(Module, Debug)]
pub struct ResidualLinear {
    pub linear: Linear,
}

/// ε/x₀/v-prediction network for [B, D] data.
#[derive(Module, Debug)]
pub struct MlpDenoiser {
    pub input: Linear,
    pub time_embedding: TimestepMlp,
    pub class_embedding: Option<Embedding>,
    pub blocks: Vec<ResidualLinear>,
    pub output: Linear,
    #[module(skip)]
    config: MlpConfig,
}

impl Architecture for MlpDenoiser {
    type Config = MlpConfig;
    const COMPONENT: &'static str = "mlp";
    const LIBRARY: &'static str = "diffuse";
    const CLASS_NAME: &'static str = "MlpDenoiser";
    /// A pipeline around the vector MLP, which diffusers lacks.
    const PIPELINES: &'static [&'static str] = &["DiffuseMlpPipeline"];

    fn parse_config(text: &str) -> Result<MlpConfig> {
        let config: MlpConfig = parse_config_json(text, Self::CLASS_NAME)?;
        config.validate()?;
        Ok(config)
    }

    fn config_json(config: &MlpConfig) -> String {
        serde_json::to_string_pretty(config).expect("a config always serialises")
    }

    fn new(config: &MlpConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let h = config.hidden_dim;
        Ok(Self {
            input: LinearConfig::new(config.data_dim, h).init(device),
            time_embedding: TimestepMlp::new(config.time_features, h, device),
            class_embedding: config
                .num_class_embeds
                .map(|n| EmbeddingConfig::new(n, h).init(device)),
            blocks: (0..config.num_blocks)
                .map(|_| ResidualLinear {
                    linear: LinearConfig::new(h, h).init(device),
                })
                .collect(),
            output: LinearConfig::new(h, config.data_dim).init(device),
            config: config.clone(),
        })
    }

    fn config(&self) -> &MlpConfig {
        &self.config
    }

    fn forward_nchw(
        &self,
        x_t: Tensor<4>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
    ) -> Result<Tensor<4>> {
        let [batch, channels, height, width] = x_t.dims();
        let rows = x_t.reshape([batch, channels * height * width]);
        let out = self.forward(rows, timesteps, class_labels)?;
        Ok(out.reshape([batch, channels, height, width]))
    }

    fn sample_channels(config: &MlpConfig) -> usize {
        config.data_dim
    }

    fn sample_size(_config: &MlpConfig) -> Option<[usize; 2]> {
        Some([1, 1])
    }

    fn class_table_size(config: &MlpConfig) -> Option<usize> {
        config.num_class_embeds
    }

    fn fit(config: &mut MlpConfig, data: &DataFit) -> Result<()> {
        config.fit(data)
    }
}

impl MlpDenoiser {
    /// The prediction for rows `x` [B, D] at `timesteps`, of classes `class_labels` when conditional.
    pub fn forward(
        &self,
        x: Tensor<2>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
    ) -> Result<Tensor<2>> {
        let [batch, dim] = x.dims();
        if dim != self.config.data_dim || timesteps.len() != batch {
            return Err(DiffuseError::config(format!(
                "the MLP takes [B, {}] rows with one timestep each; got [{batch}, {dim}] and {} timesteps",
                self.config.data_dim,
                timesteps.len()
            )));
        }
        let (device, dtype) = (x.device(), x.dtype());
        let features = timestep_embedding(
            timesteps,
            self.config.time_features,
            true,
            0.0,
            &device,
            dtype,
        );
        let mut h = self.input.forward(x) + self.time_embedding.forward(features);
        if let Some(classes) =
            class_embeddings(self.class_embedding.as_ref(), class_labels, batch, "MLP")?
        {
            h = h + classes;
        }
        for block in &self.blocks {
            h = h.clone() + block.linear.forward(silu(h));
        }
        Ok(self.output.forward(silu(h)))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::DType;

    use super::*;
    use crate::tensor_ops::{from_host_f64, to_host_f64};

    #[test]
    fn saved_model_reloads_with_identical_outputs() {
        let device = Device::flex();
        let mut config = MlpConfig::new(3);
        config.num_class_embeds = Some(4);
        let model = MlpDenoiser::new(&config, &device).unwrap();
        let x = || {
            from_host_f64(
                vec![0.1, -0.4, 2.0, 1.0, 0.0, -1.0],
                [2, 3],
                &device,
                DType::F32,
            )
        };
        let out = model.forward(x(), &[10.0, 900.0], Some(&[0, 3])).unwrap();
        assert_eq!(out.dims(), [2, 3]);
        let dir = std::env::temp_dir().join(format!("diffuse-mlp-{}", std::process::id()));
        model.save(&dir).unwrap();
        let again = MlpDenoiser::load(&dir, &device).unwrap();
        let out2 = again.forward(x(), &[10.0, 900.0], Some(&[0, 3])).unwrap();
        assert_eq!(to_host_f64(out).unwrap(), to_host_f64(out2).unwrap());
        assert!(model.forward(x(), &[10.0, 900.0], None).is_err());
        assert!(model.forward(x(), &[10.0, 900.0], Some(&[0, 4])).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
