//! The U-Net's layers, named as diffusers names them so weights map one to one.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::Tensor;
use burn::tensor::activation::silu;

use crate::nn::attention::multi_head_attention;
use crate::nn::conv2d;
use crate::nn::kernels::{self, Activation};
use burn::nn::conv::Conv2dConfig;
use burn::tensor::Device;

fn group_norm(groups: usize, channels: usize, eps: f64, device: &Device) -> GroupNorm {
    GroupNormConfig::new(groups, channels)
        .with_epsilon(eps)
        .init(device)
}

/// x / factor, as diffusers divides a block's output; skipped for the usual factor 1, where it
/// would be a pass over the activations (and one more in the backward) that changes nothing.
fn rescaled<const D: usize>(x: Tensor<D>, factor: f64) -> Tensor<D> {
    if factor == 1.0 {
        x
    } else {
        x.div_scalar(factor)
    }
}

/// Shared hyper-parameters of the residual blocks of one U-Net.
#[derive(Debug, Clone, Copy)]
pub struct ResnetSettings {
    /// Width of the timestep embedding; `None` for blocks without one (an autoencoder's).
    pub temb_channels: Option<usize>,
    pub groups: usize,
    pub eps: f64,
    /// `resnet_time_scale_shift = "scale_shift"`: the embedding modulates the norm (FiLM) instead
    /// of being added before it.
    pub scale_shift: bool,
    pub output_scale_factor: f64,
}

/// diffusers' `ResnetBlock2D`: two 3×3 convolutions with the timestep embedding injected between
/// them (DDPM Appendix B), and a 1×1 shortcut when the width changes.
#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    pub time_emb_proj: Option<Linear>,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    pub conv_shortcut: Option<Conv2d>,
    #[module(skip)]
    scale_shift: bool,
    #[module(skip)]
    output_scale_factor: f64,
}

impl ResnetBlock2D {
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        s: &ResnetSettings,
        device: &Device,
    ) -> Self {
        let proj_width = if s.scale_shift {
            2 * out_channels
        } else {
            out_channels
        };
        Self {
            norm1: group_norm(s.groups, in_channels, s.eps, device),
            conv1: conv2d([in_channels, out_channels], 3, 1, 1, device),
            time_emb_proj: s
                .temb_channels
                .map(|temb| LinearConfig::new(temb, proj_width).init(device)),
            norm2: group_norm(s.groups, out_channels, s.eps, device),
            conv2: conv2d([out_channels, out_channels], 3, 1, 1, device),
            conv_shortcut: (in_channels != out_channels)
                .then(|| conv2d([in_channels, out_channels], 1, 1, 0, device)),
            scale_shift: s.scale_shift,
            output_scale_factor: s.output_scale_factor,
        }
    }

    /// `temb` is the activated-later embedding [B, temb_channels], for blocks built with one.
    pub fn forward(&self, input: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let h = kernels::conv2d(
            &self.conv1,
            kernels::group_norm(&self.norm1, input.clone(), Activation::Silu),
        );
        let temb = self
            .time_emb_proj
            .as_ref()
            .zip(temb)
            .map(|(proj, temb)| proj.forward(silu(temb.clone())));
        let h = self.inject_embedding(h, temb);
        let h = kernels::conv2d(&self.conv2, h);
        let shortcut = match &self.conv_shortcut {
            Some(conv) => kernels::conv2d(conv, input),
            None => input,
        };
        rescaled(shortcut + h, self.output_scale_factor)
    }

    /// silu(norm2(h + temb)), or silu(norm2(h)·(1 + scale) + shift) with scale-shift; silu(norm2(h))
    /// without an embedding.
    fn inject_embedding(&self, h: Tensor<4>, temb: Option<Tensor<2>>) -> Tensor<4> {
        let [batch, channels, _, _] = h.dims();
        match temb {
            Some(temb) if self.scale_shift => {
                let temb = temb.reshape([batch, 2 * channels, 1, 1]);
                let scale = temb.clone().narrow(1, 0, channels);
                let shift = temb.narrow(1, channels, channels);
                let normed = kernels::group_norm(&self.norm2, h, Activation::Identity);
                silu(normed * (scale + 1.0) + shift)
            }
            Some(temb) => {
                let h = h + temb.reshape([batch, channels, 1, 1]);
                kernels::group_norm(&self.norm2, h, Activation::Silu)
            }
            None => kernels::group_norm(&self.norm2, h, Activation::Silu),
        }
    }
}

/// diffusers' `Attention` as the U-Net uses it: group-normed spatial self-attention over the H·W
/// positions, with a residual connection.
#[derive(Module, Debug)]
pub struct Attention {
    pub group_norm: Option<GroupNorm>,
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    /// diffusers' `to_out` is [Linear, Dropout]; only the linear layer holds weights.
    pub to_out: Vec<Linear>,
    #[module(skip)]
    heads: usize,
    #[module(skip)]
    rescale_output_factor: f64,
}

impl Attention {
    pub fn new(
        channels: usize,
        head_dim: usize,
        groups: Option<usize>,
        eps: f64,
        rescale_output_factor: f64,
        device: &Device,
    ) -> Self {
        let linear = || LinearConfig::new(channels, channels).init(device);
        Self {
            group_norm: groups.map(|g| group_norm(g, channels, eps, device)),
            to_q: linear(),
            to_k: linear(),
            to_v: linear(),
            to_out: vec![linear()],
            heads: channels / head_dim,
            rescale_output_factor,
        }
    }

    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let [batch, channels, height, width] = input.dims();
        let mut h = input.clone().reshape([batch, channels, height * width]);
        if let Some(norm) = &self.group_norm {
            h = kernels::group_norm(norm, h, Activation::Identity);
        }
        let projections = [&self.to_q, &self.to_k, &self.to_v, &self.to_out[0]];
        let out = multi_head_attention(projections, h.swap_dims(1, 2), self.heads)
            .swap_dims(1, 2)
            .reshape([batch, channels, height, width]);
        rescaled(out + input, self.rescale_output_factor)
    }
}

/// diffusers' `Downsample2D` with a convolution: 3×3, stride 2. With padding 0 diffusers pads
/// right and bottom by one first, which is the same as asymmetric padding here.
#[derive(Module, Debug)]
pub struct Downsample2D {
    pub conv: Conv2d,
}

impl Downsample2D {
    pub fn new(channels: usize, padding: usize, device: &Device) -> Self {
        let padding = if padding == 0 {
            PaddingConfig2d::Explicit(0, 0, 1, 1)
        } else {
            PaddingConfig2d::Explicit(padding, padding, padding, padding)
        };
        Self {
            conv: Conv2dConfig::new([channels, channels], [3, 3])
                .with_stride([2, 2])
                .with_padding(padding)
                .init(device),
        }
    }

    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        kernels::conv2d(&self.conv, input)
    }
}

/// diffusers' `Upsample2D` with a convolution: nearest-neighbour ×2, then 3×3.
#[derive(Module, Debug)]
pub struct Upsample2D {
    pub conv: Conv2d,
}

impl Upsample2D {
    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            conv: conv2d([channels, channels], 3, 1, 1, device),
        }
    }

    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        kernels::conv2d(&self.conv, upsample_nearest_2x(input))
    }
}

/// Each pixel repeated into a 2×2 block (`F.interpolate(scale_factor=2, mode="nearest")`).
pub fn upsample_nearest_2x(input: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = input.dims();
    input
        .reshape([b, c, h, 1, w, 1])
        .repeat_dim(3, 2)
        .repeat_dim(5, 2)
        .reshape([b, c, 2 * h, 2 * w])
}
