//! `diffuse vae encode|decode`: a diffusers `AutoencoderKL` folder between images and latents.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use diffuse_core::data::{ColorMode, image_folder};
use diffuse_core::io::{HostTensor, read_safetensors, write_safetensors};
use diffuse_core::nn::autoencoder::AutoencoderKL;
use diffuse_core::plot::image_grid_png;

use super::{progress_bar, report_to};
use crate::args::DeviceArgs;

#[derive(Args, Debug)]
pub struct VaeCommand {
    #[command(subcommand)]
    action: VaeAction,
}

#[derive(Subcommand, Debug)]
enum VaeAction {
    /// Images → latents: the posterior mode μ, unscaled (diffusers' `encode(x).latent_dist.mode()`).
    Encode(EncodeArgs),
    /// Latents (unscaled) → images: the decoder's raw output (diffusers' `decode(z).sample`).
    Decode(DecodeArgs),
}

/// The autoencoder and how to run it.
#[derive(Args, Debug)]
struct VaeArgs {
    /// A diffusers AutoencoderKL folder (config.json + diffusion_pytorch_model.safetensors), e.g. a
    /// pipeline's vae/.
    #[arg(long, value_name = "DIR")]
    vae: PathBuf,
    /// Items run through the network at once (memory grows with it; results do not depend on it).
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Run in overlapping tiles of the autoencoder's sample_size, blended across the overlap
    /// (diffusers' enable_tiling): memory stops growing with the image; seams can differ from
    /// an untiled run.
    #[arg(long)]
    tiled: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args, Debug)]
struct EncodeArgs {
    #[command(flatten)]
    vae: VaeArgs,
    /// A safetensors file with a tensor `images` [N, C, H, W] in [−1, 1], or a folder of
    /// PNG/JPEG images (sub-folders included, in name order).
    #[arg(long, value_name = "PATH")]
    input: PathBuf,
    /// Images from a folder are resized and center-cropped to this square size [default: the
    /// autoencoder's sample_size].
    #[arg(long)]
    resolution: Option<usize>,
    /// Where to write the tensor `latents` [N, latent_C, H/f, W/f].
    #[arg(long, value_name = "FILE")]
    out_tensor: PathBuf,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("output").required(true).multiple(true).args(["out_tensor", "out"])))]
struct DecodeArgs {
    #[command(flatten)]
    vae: VaeArgs,
    /// A safetensors file with a tensor `latents` [N, latent_C, h, w], unscaled.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Where to write the tensor `images` [N, C, h·f, w·f] (raw, not clamped).
    #[arg(long, value_name = "FILE")]
    out_tensor: Option<PathBuf>,
    /// A folder to write one PNG per image into (00000.png, …; values clipped to [−1, 1]).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

impl VaeCommand {
    pub fn run(&self) -> Result<()> {
        match &self.action {
            VaeAction::Encode(args) => args.run(),
            VaeAction::Decode(args) => args.run(),
        }
    }
}

impl VaeArgs {
    fn load(&self) -> Result<(AutoencoderKL, burn::tensor::Device)> {
        let device = self.device.build()?;
        let vae = AutoencoderKL::load(&self.vae, &device)
            .with_context(|| format!("loading the autoencoder {}", self.vae.display()))?;
        Ok((vae, device))
    }
}

/// The tensor `name` of a safetensors file, or an error listing the tensors it has.
fn read_tensor(path: &Path, name: &str) -> Result<HostTensor> {
    let mut tensors = read_safetensors(path)?;
    match tensors.remove(name) {
        Some(tensor) => Ok(tensor),
        None => {
            let mut names: Vec<_> = tensors.keys().cloned().collect();
            names.sort();
            bail!(
                "{} has no tensor `{name}` (it has: {})",
                path.display(),
                names.join(", ")
            )
        }
    }
}

impl EncodeArgs {
    /// The images as [N, C, H, W]: the file's `images`, or the folder decoded for the
    /// autoencoder's channels.
    fn images(&self, vae: &AutoencoderKL) -> Result<HostTensor> {
        if !self.input.is_dir() {
            return read_tensor(&self.input, "images");
        }
        let config = vae.config();
        let color = match config.in_channels {
            1 => ColorMode::Gray,
            3 => ColorMode::Rgb,
            c => bail!("an image folder gives 1 or 3 channels; the autoencoder takes {c}"),
        };
        let resolution = self.resolution.unwrap_or(config.sample_size.hw()[0]);
        let data = image_folder::load(&self.input, resolution, color)?;
        let [c, h, w] = data.sample_shape;
        Ok(HostTensor {
            shape: vec![data.len(), c, h, w],
            values: data.values,
        })
    }

    fn run(&self) -> Result<()> {
        let (vae, device) = self.vae.load()?;
        let images = self.images(&vae)?;
        let bar = progress_bar("encoding", "images");
        let latents = vae.encode_modes(
            &images,
            self.vae.tiled,
            self.vae.batch_size,
            &device,
            &mut report_to(&bar),
        )?;
        bar.finish_and_clear();
        write_safetensors(&self.out_tensor, &[("latents", &latents)])?;
        eprintln!(
            "encoded {} images {:?} into latents {:?}: {}",
            images.shape[0],
            &images.shape[1..],
            &latents.shape[1..],
            self.out_tensor.display()
        );
        Ok(())
    }
}

impl DecodeArgs {
    fn run(&self) -> Result<()> {
        let (vae, device) = self.vae.load()?;
        let latents = read_tensor(&self.input, "latents")?;
        let bar = progress_bar("decoding", "latents");
        let images = vae.decode_latents(
            &latents,
            self.vae.tiled,
            self.vae.batch_size,
            &device,
            &mut report_to(&bar),
        )?;
        bar.finish_and_clear();
        if let Some(path) = &self.out_tensor {
            write_safetensors(path, &[("images", &images)])?;
            eprintln!("wrote {}", path.display());
        }
        if let Some(dir) = &self.out {
            write_pngs(dir, &images)?;
            eprintln!("wrote {} PNGs into {}", images.shape[0], dir.display());
        }
        Ok(())
    }
}

/// One PNG per image of [N, C, H, W] (C = 1 or 3).
fn write_pngs(dir: &Path, images: &HostTensor) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let [_, c, h, w]: [usize; 4] = images
        .shape
        .clone()
        .try_into()
        .expect("decoded images are NCHW");
    let values: Vec<f64> = images.values.iter().map(|&v| f64::from(v)).collect();
    for (i, image) in values.chunks_exact(c * h * w).enumerate() {
        image_grid_png(&dir.join(format!("{i:05}.png")), image, [1, c, h, w], 1)?;
    }
    Ok(())
}
