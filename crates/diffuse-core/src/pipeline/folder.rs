//! A pipeline folder as diffusers lays it out: `model_index.json` naming the components, the
//! network's component folder, and `scheduler/scheduler_config.json`.

use std::path::Path;

use burn::tensor::Device;
use serde::Serialize;
use serde_json::Value;

use super::denoiser::NetworkDenoiser;
use super::scheduler_config::SchedulerConfig;
use crate::config::DIFFUSERS_VERSION;
use crate::config::DiffusersConfig;
use crate::error::{DiffuseError, Result};
use crate::io::write_atomically;
use crate::nn::autoencoder::{AutoencoderKL, AutoencoderKLConfig};
use crate::nn::network::DenoisingNetwork;

/// A loaded pipeline folder: the network, its scheduler config, and for a latent pipeline the
/// autoencoder whose latent space the network denoises.
#[derive(Debug)]
pub struct DiffusionPipeline {
    pub network: DenoisingNetwork,
    pub scheduler: SchedulerConfig,
    pub vae: Option<AutoencoderKL>,
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| DiffuseError::io(path, e))
}

impl DiffusionPipeline {
    /// Reads a diffusers pipeline folder: `DDPMPipeline`/`DDIMPipeline` with `unet/`, a
    /// `DiTPipeline` with `transformer/` (in pixel space, or in a latent space with `vae/`), or
    /// `diffuse`'s MLP pipeline.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let index_path = dir.join("model_index.json");
        let index: Value = serde_json::from_str(&read_text(&index_path)?)
            .map_err(|e| DiffuseError::bad_file(&index_path, format!("malformed JSON: {e}")))?;
        let class = index["_class_name"].as_str().unwrap_or("");
        let network = DenoisingNetwork::load(class, dir, device).unwrap_or_else(|| {
            Err(DiffuseError::bad_file(
                &index_path,
                format!(
                    "pipeline `{class}` is not supported (supported: {})",
                    DenoisingNetwork::pipeline_classes().join(", ")
                ),
            ))
        })?;
        check_components(&index, &index_path, &network)?;
        let scheduler_path = dir.join("scheduler/scheduler_config.json");
        let scheduler = SchedulerConfig::from_json(&read_text(&scheduler_path)?)
            .map_err(|e| e.in_file(&scheduler_path))?;
        let vae = load_vae(&index, &index_path, dir, device)?;
        if let Some(vae) = &vae {
            check_latent_fit(&network, vae).map_err(|e| e.in_file(&index_path))?;
        }
        Ok(Self {
            network,
            scheduler,
            vae,
        })
    }

    /// Writes the folder in diffusers' layout (`DDPMPipeline.from_pretrained` reads a U-Net one).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let component = self.network.component();
        for sub in [component, "scheduler"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|e| DiffuseError::io(&path, e))?;
        }
        let mut index = serde_json::json!({
            "_class_name": self.network.pipeline_class(&self.scheduler.class_name),
            "_diffusers_version": DIFFUSERS_VERSION,
            "scheduler": ["diffusers", self.scheduler.class_name],
        });
        index[component] = serde_json::json!(self.network.index_entry());
        if let Some(vae) = &self.vae {
            index["vae"] = serde_json::json!(["diffusers", AutoencoderKLConfig::CLASS_NAME]);
            vae.save(&dir.join("vae"))?;
        }
        write_atomically(
            &dir.join("model_index.json"),
            pretty_json(&index).as_bytes(),
        )?;
        self.network.save(dir)?;
        write_atomically(
            &dir.join("scheduler/scheduler_config.json"),
            pretty_json(&self.scheduler).as_bytes(),
        )
    }

    /// The network as a sampler's denoiser, with the scheduler's prediction type.
    pub fn denoiser(&self) -> Result<NetworkDenoiser<'_>> {
        Ok(NetworkDenoiser::new(
            &self.network,
            self.scheduler.prediction()?,
        ))
    }
}

/// diffusers' `from_pretrained` refuses a model_index.json that leaves out a component the
/// pipeline needs, so a folder's layout alone is not enough here either; an index that names
/// another class than the component folder holds is refused too.
fn check_components(index: &Value, index_path: &Path, network: &DenoisingNetwork) -> Result<()> {
    let component = network.component();
    let [_, class_name] = network.index_entry();
    let refuse = |why: String| Err(DiffuseError::bad_file(index_path, why));
    match index[component][1].as_str() {
        None => refuse(format!(
            "names no `{component}` component (expected `\"{component}\": [\"{}\", \"{class_name}\"]`)",
            network.index_entry()[0]
        )),
        Some(named) if named != class_name => refuse(format!(
            "names the `{component}` component a `{named}`, but {component}/config.json is a \
             `{class_name}`"
        )),
        Some(_) if index["scheduler"].is_null() => {
            refuse("names no `scheduler` component".to_string())
        }
        Some(_) => Ok(()),
    }
}

/// The `vae/` component a model_index.json names, if any; only `AutoencoderKL` is implemented.
fn load_vae(
    index: &Value,
    index_path: &Path,
    dir: &Path,
    device: &Device,
) -> Result<Option<AutoencoderKL>> {
    if index["vae"].is_null() {
        return Ok(None);
    }
    match index["vae"][1].as_str() {
        Some(AutoencoderKLConfig::CLASS_NAME) => {
            Ok(Some(AutoencoderKL::load(&dir.join("vae"), device)?))
        }
        named => Err(DiffuseError::bad_file(
            index_path,
            format!(
                "the `vae` component is a `{}`; only `AutoencoderKL` is supported",
                named.unwrap_or("?")
            ),
        )),
    }
}

/// The network must take the autoencoder's latents: as many channels, and (when the network
/// fixes a size) a latent the decoder turns into an image.
fn check_latent_fit(network: &DenoisingNetwork, vae: &AutoencoderKL) -> Result<()> {
    let latent = vae.config().latent_channels;
    let Some([channels, ..]) = network.sample_shape() else {
        return Ok(());
    };
    if channels != latent {
        return Err(DiffuseError::config(format!(
            "the {} takes {channels} channels, but the autoencoder's latents have {latent}",
            network.component()
        )));
    }
    Ok(())
}

fn pretty_json(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).expect("configs always serialise")
}
