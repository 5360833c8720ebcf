//! Denoising networks, weight- and config-compatible with diffusers, one file per architecture
//! and a registry of them ([`network`]).

pub mod attention;
pub mod autoencoder;
pub mod dit;
pub mod embedding;
pub mod kernels;
pub mod mlp;
pub mod network;
pub mod unet;
pub mod weights;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::Device;

/// A k×k convolution with stride s and symmetric zero padding p, as `torch.nn.Conv2d` builds it.
pub(crate) fn conv2d(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    padding: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .init(device)
}
