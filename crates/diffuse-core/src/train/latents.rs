//! Latent diffusion's training data (Rombach et al. 2022, §3–4): a run's images encoded once by
//! its autoencoder — the posterior mode, as diffusers' training scripts use it — cached under the
//! run folder keyed by the autoencoder and the data, and taken into the diffusion model's space
//! with the autoencoder's scaling factor, or with LDM's 1/std of the latents when its config has
//! none (Appendix D.1).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use sha2::{Digest, Sha256};

use crate::data::{DataKind, Dataset};
use crate::error::{DiffuseError, Result};
use crate::io::{HostTensor, read_safetensors, write_safetensors};
use crate::nn::autoencoder::AutoencoderKL;
use crate::nn::weights::WEIGHTS_FILE;

/// Images per encoder batch while caching.
const ENCODE_BATCH: usize = 64;

/// A run's latent data: the latents in the diffusion model's space, and the autoencoder (its
/// scaling factor set) that decodes them.
pub struct LatentData {
    pub dataset: Dataset,
    pub vae: AutoencoderKL,
    /// Whether the scaling factor was computed here (LDM's rule) rather than read from the
    /// autoencoder's config.
    pub computed_scaling: bool,
}

/// The cache key: SHA-256 over the autoencoder's config and weights and the images (shape,
/// values, labels), so another autoencoder or other data never reads a stale cache.
fn cache_key(vae_dir: &Path, images: &Dataset) -> Result<String> {
    let mut hasher = Sha256::new();
    for file in ["config.json", WEIGHTS_FILE] {
        let path = vae_dir.join(file);
        hasher.update(std::fs::read(&path).map_err(|e| DiffuseError::io(&path, e))?);
    }
    for dim in images.sample_shape {
        hasher.update((dim as u64).to_le_bytes());
    }
    for value in &images.values {
        hasher.update(value.to_le_bytes());
    }
    for label in images.labels.iter().flatten() {
        hasher.update((*label as u64).to_le_bytes());
    }
    let digest = hasher.finalize();
    Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// The posterior modes of `images`, from the cache in `cache_dir` when it holds them, else
/// encoded (reporting images done) and written there.
fn cached_modes(
    vae: &AutoencoderKL,
    vae_dir: &Path,
    images: &Dataset,
    cache_dir: &Path,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<HostTensor> {
    let path: PathBuf = cache_dir.join(format!(
        "latents-{}.safetensors",
        cache_key(vae_dir, images)?
    ));
    if path.exists()
        && let Some(latents) = read_safetensors(&path)?.remove("latents")
    {
        return Ok(latents);
    }
    let [c, h, w] = images.sample_shape;
    let pixels = HostTensor {
        shape: vec![images.len(), c, h, w],
        values: images.values.clone(),
    };
    let latents = vae.encode_modes(&pixels, false, ENCODE_BATCH, device, progress)?;
    std::fs::create_dir_all(cache_dir).map_err(|e| DiffuseError::io(cache_dir, e))?;
    write_safetensors(&path, &[("latents", &latents)])?;
    Ok(latents)
}

/// LDM's scaling factor: 1 over the standard deviation of every latent value (after the shift).
fn unit_variance_scale(latents: &[f32], shift: f64) -> f64 {
    let n = latents.len() as f64;
    let mean = latents.iter().map(|&v| f64::from(v) - shift).sum::<f64>() / n;
    let variance = latents
        .iter()
        .map(|&v| (f64::from(v) - shift - mean).powi(2))
        .sum::<f64>()
        / n;
    1.0 / variance.sqrt()
}

/// Encodes the image data set `images` with the autoencoder in `vae_dir` (cached in `cache_dir`)
/// into the latent data set a diffusion model trains on.
pub fn encode_dataset(
    images: &Dataset,
    vae_dir: &Path,
    cache_dir: &Path,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LatentData> {
    if images.kind != DataKind::Images {
        return Err(DiffuseError::config(
            "an autoencoder encodes images; this data set holds vectors",
        ));
    }
    let vae = AutoencoderKL::load(vae_dir, device)?;
    let modes = cached_modes(&vae, vae_dir, images, cache_dir, device, progress)?;
    let config = vae.config();
    let shift = config.shift_factor.unwrap_or(0.0);
    let computed_scaling = config.scaling_factor.is_none();
    let scale = match config.scaling_factor {
        Some(scale) => scale,
        None => unit_variance_scale(&modes.values, shift),
    };
    if !scale.is_finite() {
        return Err(DiffuseError::config(
            "the latents of this data set are all equal: no scaling factor makes them unit variance",
        ));
    }
    let values = modes
        .values
        .iter()
        .map(|&v| ((f64::from(v) - shift) * scale) as f32)
        .collect();
    let [_, c, h, w]: [usize; 4] = modes.shape.clone().try_into().expect("latents are NCHW");
    let dataset = Dataset::new(
        [c, h, w],
        values,
        images.labels.clone(),
        images.class_names.clone(),
        DataKind::Images,
    )?;
    Ok(LatentData {
        dataset,
        vae: vae.with_scaling_factor(scale),
        computed_scaling,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_variance_scale_is_one_over_the_standard_deviation() {
        let latents = [1.0, 3.0, 1.0, 3.0];
        assert!((unit_variance_scale(&latents, 0.0) - 1.0).abs() < 1e-12);
        assert!((unit_variance_scale(&latents, 5.0) - 1.0).abs() < 1e-12);
        assert!((unit_variance_scale(&[0.0, 4.0], 0.0) - 0.5).abs() < 1e-12);
    }
}
