//! Encoding and decoding whole sets of images or latents on the host, a batch at a time, with the
//! shapes checked against the autoencoder first (what `diffuse vae` and latent training call).

use burn::tensor::{DType, Device, Tensor, TensorData};

use super::AutoencoderKL;
use crate::error::{DiffuseError, Result};
use crate::io::HostTensor;
use crate::tensor_ops::to_host_f64;

/// [N, C, H, W] of a host tensor, or an error naming `what` when it is not rank 4.
fn dims4(tensor: &HostTensor, what: &str) -> Result<[usize; 4]> {
    tensor.shape.clone().try_into().map_err(|_| {
        DiffuseError::config(format!(
            "{what} must be a [N, C, H, W] tensor, got shape {:?}",
            tensor.shape
        ))
    })
}

/// Runs `network` over `input` [N, …] `batch_size` items at a time on `device`, reporting
/// (items done, total) after each batch; returns the outputs concatenated on the host.
fn map_batches(
    input: &HostTensor,
    batch_size: usize,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
    network: impl Fn(Tensor<4>) -> Result<Tensor<4>>,
) -> Result<HostTensor> {
    let [n, c, h, w] = dims4(input, "the input")?;
    let item = c * h * w;
    if n == 0 || item == 0 {
        return Err(DiffuseError::config(format!(
            "the input holds no values (shape {:?})",
            input.shape
        )));
    }
    let batch_size = batch_size.max(1);
    let mut values = Vec::new();
    let mut out_item_shape = Vec::new();
    for (index, chunk) in input.values.chunks(batch_size * item).enumerate() {
        let count = chunk.len() / item;
        let data = TensorData::new(chunk.to_vec(), [count, c, h, w]);
        let output = network(Tensor::from_data(data, (device, DType::F32)))?;
        out_item_shape = output.dims()[1..].to_vec();
        values.extend(to_host_f64(output)?.into_iter().map(|v| v as f32));
        progress(index * batch_size + count, n);
    }
    let mut shape = vec![n];
    shape.extend(out_item_shape);
    Ok(HostTensor { shape, values })
}

impl AutoencoderKL {
    /// The posterior modes μ [N, latent_C, H/f, W/f] of images [N, C, H, W] in [−1, 1] — what
    /// `latent_dist.mode()` gives, unscaled; in overlapping tiles with `tiled` (see
    /// [`AutoencoderKL::encode_tiled`]).
    pub fn encode_modes(
        &self,
        images: &HostTensor,
        tiled: bool,
        batch_size: usize,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<HostTensor> {
        let [_, channels, height, width] = dims4(images, "the images")?;
        let config = self.config();
        if channels != config.in_channels {
            return Err(DiffuseError::config(format!(
                "the images have {channels} channels, the autoencoder takes {}",
                config.in_channels
            )));
        }
        config.latent_shape([height, width])?;
        map_batches(images, batch_size, device, progress, |x| {
            let posterior = if tiled {
                self.encode_tiled(x)?
            } else {
                self.encode(x)
            };
            Ok(posterior.mode())
        })
    }

    /// The decoder's raw output [N, C, h·f, w·f] for latents [N, latent_C, h, w] (unscaled); in
    /// overlapping tiles with `tiled` (see [`AutoencoderKL::decode_tiled`]).
    pub fn decode_latents(
        &self,
        latents: &HostTensor,
        tiled: bool,
        batch_size: usize,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<HostTensor> {
        self.check_latents(latents)?;
        map_batches(latents, batch_size, device, progress, |z| {
            if tiled {
                self.decode_tiled(z)
            } else {
                Ok(self.decode(z))
            }
        })
    }

    /// Images from latents in the diffusion model's space ([`AutoencoderKL::to_diffusion_space`]):
    /// what a latent pipeline's sampler ends with.
    pub fn decode_samples(
        &self,
        latents: &HostTensor,
        batch_size: usize,
        device: &Device,
    ) -> Result<HostTensor> {
        self.check_latents(latents)?;
        map_batches(latents, batch_size, device, &mut |_, _| {}, |z| {
            Ok(self.decode(self.from_diffusion_space(z)))
        })
    }

    fn check_latents(&self, latents: &HostTensor) -> Result<()> {
        let [_, channels, _, _] = dims4(latents, "the latents")?;
        if channels != self.config().latent_channels {
            return Err(DiffuseError::config(format!(
                "the latents have {channels} channels, the autoencoder's have {}",
                self.config().latent_channels
            )));
        }
        Ok(())
    }
}
