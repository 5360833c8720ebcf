//! diffusers pipeline folders: `model_index.json`, `unet/` and `scheduler/`, read and written.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{DIFFUSERS_VERSION, DiffusersConfig, reject_unknown_fields};
use crate::denoiser::Denoiser;
use crate::error::{DiffuseError, Result};
use crate::forward::PredictionType;
use crate::io::write_atomically;
use crate::nn::dit::DiTTransformer2DModel;
use crate::nn::mlp::MlpDenoiser;
use crate::nn::unet::{UNet2DConfig, UNet2DModel};
use crate::nn::weights::{KeyRenames, load_diffusers_weights, save_diffusers_weights};
use crate::sampler::{SamplerKind, SamplerSettings};
use crate::schedule::{BetaSchedule, NoiseSchedule, TimestepSpacing, rescale_zero_terminal_snr};

const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";
/// model_index.json `_class_name` of a pipeline around the vector MLP, which diffusers lacks.
const MLP_PIPELINE: &str = "DiffuseMlpPipeline";

/// The fields of diffusers' `DDPMScheduler` / `DDIMScheduler` configs that `diffuse` honours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name")]
    pub class_name: String,
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: String,
    pub trained_betas: Option<Vec<f64>>,
    pub clip_sample: bool,
    #[serde(default = "one")]
    pub clip_sample_range: f64,
    pub prediction_type: String,
    #[serde(default)]
    pub thresholding: bool,
    #[serde(default = "default_ratio")]
    pub dynamic_thresholding_ratio: f64,
    #[serde(default = "one")]
    pub sample_max_value: f64,
    pub timestep_spacing: String,
    pub steps_offset: usize,
    #[serde(default)]
    pub rescale_betas_zero_snr: bool,
    /// DDPMScheduler only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variance_type: Option<String>,
    /// DDIMScheduler only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_alpha_to_one: Option<bool>,
    /// `_diffusers_version` and other metadata; any other key is rejected.
    #[serde(flatten)]
    pub metadata: BTreeMap<String, Value>,
}

fn one() -> f64 {
    1.0
}

fn default_ratio() -> f64 {
    0.995
}

impl SchedulerConfig {
    /// A diffusers `DDPMScheduler` config for a model trained on `schedule_name` (a diffusers
    /// beta_schedule name) with fixed-small variance and leading spacing, diffusers' defaults.
    pub fn ddpm(
        schedule_name: &str,
        num_train_timesteps: usize,
        (beta_start, beta_end): (f64, f64),
        prediction_type: PredictionType,
        clip_sample: bool,
    ) -> Self {
        Self {
            class_name: "DDPMScheduler".into(),
            num_train_timesteps,
            beta_start,
            beta_end,
            beta_schedule: schedule_name.into(),
            trained_betas: None,
            clip_sample,
            clip_sample_range: 1.0,
            prediction_type: prediction_type.name().into(),
            thresholding: false,
            dynamic_thresholding_ratio: default_ratio(),
            sample_max_value: 1.0,
            timestep_spacing: "leading".into(),
            steps_offset: 0,
            rescale_betas_zero_snr: false,
            variance_type: Some("fixed_small".into()),
            set_alpha_to_one: None,
            metadata: BTreeMap::from([(
                "_diffusers_version".to_string(),
                Value::from(DIFFUSERS_VERSION),
            )]),
        }
    }

    /// Parses scheduler_config.json and rejects what `diffuse` does not implement, naming the field.
    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(text)
            .map_err(|e| DiffuseError::config(format!("scheduler config: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        reject_unknown_fields(&self.metadata, "scheduler")?;
        if !matches!(self.class_name.as_str(), "DDPMScheduler" | "DDIMScheduler") {
            return Err(DiffuseError::config(format!(
                "scheduler `{}` is not supported (supported: DDPMScheduler, DDIMScheduler)",
                self.class_name
            )));
        }
        if self.thresholding {
            return Err(DiffuseError::config(
                "scheduler config field `thresholding` = true is not supported yet",
            ));
        }
        if let Some(v) = &self.variance_type {
            v.parse::<crate::sampler::DdpmVariance>().map_err(|_| {
                DiffuseError::config(format!(
                    "scheduler config field `variance_type` = {v:?} is not supported \
                     (supported: fixed_small, fixed_large)"
                ))
            })?;
        }
        self.prediction()?;
        self.spacing()?;
        self.schedule()?;
        Ok(())
    }

    /// The forward process this config describes.
    pub fn schedule(&self) -> Result<NoiseSchedule> {
        let schedule = match &self.trained_betas {
            Some(betas) if self.rescale_betas_zero_snr => {
                NoiseSchedule::from_betas(rescale_zero_terminal_snr(betas))?
            }
            Some(betas) => NoiseSchedule::from_betas(betas.clone())?,
            None => {
                let kind = BetaSchedule::from_name(
                    &self.beta_schedule,
                    self.beta_start,
                    self.beta_end,
                    (-3.0, 3.0, 1.0),
                )?;
                if kind.diffusers_name().is_none() {
                    return Err(DiffuseError::config(format!(
                        "scheduler config field `beta_schedule` = {:?} is not a diffusers schedule",
                        self.beta_schedule
                    )));
                }
                NoiseSchedule::new(&kind, self.num_train_timesteps, self.rescale_betas_zero_snr)?
            }
        };
        Ok(schedule)
    }

    pub fn prediction(&self) -> Result<PredictionType> {
        self.prediction_type.parse()
    }

    pub fn spacing(&self) -> Result<TimestepSpacing> {
        self.timestep_spacing.parse()
    }

    /// The sampler named `name` ("ddpm" or "ddim"), or the one this config is for, with the
    /// config's clipping and variance options.
    pub fn sampler(&self, name: Option<&str>, eta: Option<f64>) -> Result<SamplerKind> {
        let name = name.unwrap_or(if self.class_name == "DDIMScheduler" {
            "ddim"
        } else {
            "ddpm"
        });
        let variance = self
            .variance_type
            .as_deref()
            .unwrap_or("fixed_small")
            .parse()?;
        SamplerKind::configured(
            name,
            &SamplerSettings {
                eta,
                clip_sample: self.clip_sample.then_some(self.clip_sample_range),
                variance,
                set_alpha_to_one: self.set_alpha_to_one.unwrap_or(true),
            },
        )
    }
}

/// The denoising network of a pipeline. Every network sees samples as [B, C, H, W]; vectors of
/// width D travel as [B, D, 1, 1].
// Boxing the variants would hide them from burn's Module derive; there are only ever a few.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum DenoisingNetwork {
    /// `unet/`: diffusers' `UNet2DModel`.
    UNet(UNet2DModel),
    /// `transformer/`: diffusers' `DiTTransformer2DModel` (pixel space).
    DiT(DiTTransformer2DModel),
    /// `mlp/`: `diffuse`'s residual MLP for vector data (no diffusers counterpart).
    Mlp(MlpDenoiser),
}

impl DenoisingNetwork {
    /// The network output for `x_t` [B, C, H, W].
    pub fn forward(
        &self,
        x_t: Tensor<4>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
    ) -> Result<Tensor<4>> {
        match self {
            Self::UNet(unet) => unet.forward(x_t, timesteps, class_labels),
            Self::DiT(dit) => {
                let labels = class_labels.ok_or_else(|| {
                    DiffuseError::config(format!(
                        "a DiT is class-conditional: give class labels (the null class {} samples \
                         unconditionally)",
                        dit.config().class_table_size() - 1
                    ))
                })?;
                dit.forward(x_t, timesteps, labels)
            }
            Self::Mlp(mlp) => {
                let [batch, channels, height, width] = x_t.dims();
                let rows = x_t.reshape([batch, channels * height * width]);
                let out = mlp.forward(rows, timesteps, class_labels)?;
                Ok(out.reshape([batch, channels, height, width]))
            }
        }
    }

    /// The class table size (classes + the null class) of a class-conditional network.
    pub fn class_table_size(&self) -> Option<usize> {
        match self {
            Self::UNet(unet) => unet.config().num_class_embeds,
            Self::DiT(dit) => Some(dit.config().class_table_size()),
            Self::Mlp(mlp) => mlp.config().num_class_embeds,
        }
    }

    /// One sample's shape [C, H, W], when the config fixes it.
    pub fn sample_shape(&self) -> Option<[usize; 3]> {
        match self {
            Self::UNet(unet) => {
                let c = unet.config();
                c.sample_size.map(|s| {
                    let [h, w] = s.hw();
                    [c.in_channels, h, w]
                })
            }
            Self::DiT(dit) => {
                let c = dit.config();
                Some([c.in_channels, c.sample_size, c.sample_size])
            }
            Self::Mlp(mlp) => Some([mlp.config().data_dim, 1, 1]),
        }
    }

    /// The folder name diffusers stores this network under.
    fn component(&self) -> &'static str {
        match self {
            Self::UNet(_) => "unet",
            Self::DiT(_) => "transformer",
            Self::Mlp(_) => "mlp",
        }
    }
}

/// A loaded pipeline folder: the network and its scheduler config.
#[derive(Debug)]
pub struct DiffusionPipeline {
    pub network: DenoisingNetwork,
    pub scheduler: SchedulerConfig,
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| DiffuseError::io(path, e))
}

fn in_file<T>(path: &Path, result: Result<T>) -> Result<T> {
    result.map_err(|e| match e {
        DiffuseError::InvalidConfig(m) => DiffuseError::bad_file(path, m),
        other => other,
    })
}

impl DiffusionPipeline {
    /// Reads a diffusers pipeline folder: `DDPMPipeline`/`DDIMPipeline` with `unet/`, or a
    /// pixel-space `DiTPipeline` with `transformer/` (no VAE).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let index_path = dir.join("model_index.json");
        let index: Value = serde_json::from_str(&read_text(&index_path)?)
            .map_err(|e| DiffuseError::bad_file(&index_path, format!("malformed JSON: {e}")))?;
        let class = index["_class_name"].as_str().unwrap_or("");
        let network = match class {
            "DDPMPipeline" | "DDIMPipeline" => {
                let config_path = dir.join("unet/config.json");
                let config = in_file(
                    &config_path,
                    UNet2DConfig::from_json(&read_text(&config_path)?),
                )?;
                let mut unet = UNet2DModel::new(&config, device)?;
                load_diffusers_weights(
                    &mut unet,
                    &dir.join("unet").join(WEIGHTS_FILE),
                    &KeyRenames::NONE,
                )?;
                DenoisingNetwork::UNet(unet)
            }
            "DiTPipeline" if !index["vae"].is_null() => {
                return Err(DiffuseError::bad_file(
                    &index_path,
                    "latent DiT pipelines (with a vae) are not supported yet; pixel-space ones are",
                ));
            }
            "DiTPipeline" => {
                let dit = DiTTransformer2DModel::load(&dir.join("transformer"), device)?;
                DenoisingNetwork::DiT(dit)
            }
            MLP_PIPELINE => DenoisingNetwork::Mlp(MlpDenoiser::load(&dir.join("mlp"), device)?),
            other => {
                return Err(DiffuseError::bad_file(
                    &index_path,
                    format!(
                        "pipeline `{other}` is not supported (supported: DDPMPipeline, DDIMPipeline, \
                         DiTPipeline, {MLP_PIPELINE})"
                    ),
                ));
            }
        };
        let scheduler_path = dir.join("scheduler/scheduler_config.json");
        let scheduler = in_file(
            &scheduler_path,
            SchedulerConfig::from_json(&read_text(&scheduler_path)?),
        )?;
        Ok(Self { network, scheduler })
    }

    /// Writes the folder in diffusers' layout (`DDPMPipeline.from_pretrained` reads a U-Net one).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let component = self.network.component();
        for sub in [component, "scheduler"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|e| DiffuseError::io(&path, e))?;
        }
        let pipeline = match (&self.network, self.scheduler.class_name.as_str()) {
            (DenoisingNetwork::DiT(_), _) => "DiTPipeline",
            (DenoisingNetwork::Mlp(_), _) => MLP_PIPELINE,
            (_, "DDIMScheduler") => "DDIMPipeline",
            _ => "DDPMPipeline",
        };
        let (library, class) = match &self.network {
            DenoisingNetwork::UNet(_) => ("diffusers", "UNet2DModel"),
            DenoisingNetwork::DiT(_) => ("diffusers", "DiTTransformer2DModel"),
            DenoisingNetwork::Mlp(_) => ("diffuse", "MlpDenoiser"),
        };
        let mut index = serde_json::json!({
            "_class_name": pipeline,
            "_diffusers_version": DIFFUSERS_VERSION,
            "scheduler": ["diffusers", self.scheduler.class_name],
        });
        index[component] = serde_json::json!([library, class]);
        write_atomically(
            &dir.join("model_index.json"),
            pretty_json(&index).as_bytes(),
        )?;
        match &self.network {
            DenoisingNetwork::UNet(unet) => {
                write_atomically(
                    &dir.join("unet/config.json"),
                    unet.config().to_json().as_bytes(),
                )?;
                save_diffusers_weights(
                    unet,
                    &dir.join("unet").join(WEIGHTS_FILE),
                    &KeyRenames::NONE,
                )?;
            }
            DenoisingNetwork::DiT(dit) => dit.save(&dir.join("transformer"))?,
            DenoisingNetwork::Mlp(mlp) => mlp.save(&dir.join("mlp"))?,
        }
        write_atomically(
            &dir.join("scheduler/scheduler_config.json"),
            pretty_json(&self.scheduler).as_bytes(),
        )
    }

    /// The network as a sampler's denoiser, with the scheduler's prediction type.
    pub fn denoiser(&self) -> Result<NetworkDenoiser<'_>> {
        Ok(NetworkDenoiser {
            network: &self.network,
            prediction_type: self.scheduler.prediction()?,
        })
    }
}

fn pretty_json(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).expect("configs always serialise")
}

/// A network seen as a [`Denoiser`]. With a learned variance (out = 2 × in channels) the mean
/// part (the first half of the channels) is returned, which DDPM/DDIM with fixed variance use.
pub struct NetworkDenoiser<'a> {
    network: &'a DenoisingNetwork,
    prediction_type: PredictionType,
}

impl<'a> NetworkDenoiser<'a> {
    pub fn new(network: &'a DenoisingNetwork, prediction_type: PredictionType) -> Self {
        Self {
            network,
            prediction_type,
        }
    }
}

impl Denoiser<4> for NetworkDenoiser<'_> {
    fn prediction_type(&self) -> PredictionType {
        self.prediction_type
    }

    fn predict(
        &self,
        x_t: Tensor<4>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
    ) -> Result<Tensor<4>> {
        let channels = x_t.dims()[1];
        let out = self.network.forward(x_t, timesteps, class_labels)?;
        Ok(if out.dims()[1] == 2 * channels {
            out.narrow(1, 0, channels)
        } else {
            out
        })
    }
}
