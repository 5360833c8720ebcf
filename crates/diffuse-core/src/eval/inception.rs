//! FID's Inception-v3 (Szegedy et al. 2016, "Rethinking the Inception Architecture"; Heusel et al.
//! 2017 for FID): pytorch-fid's `InceptionV3([3])`, the 2048 pool3 features of the TensorFlow
//! network the original FID code used, so that FD on these features is the FID papers report.
//!
//! The blocks are torchvision's `Inception3` with pytorch-fid's patches (`FIDInceptionA`, `…C`,
//! `…E_1`: average pools over valid pixels only, as TensorFlow's; `…E_2`: a max pool in the last
//! block's pool branch). Weights: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, converted to
//! safetensors under its state_dict names by tools/reference/convert_inception.py.

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::{adaptive_avg_pool2d, avg_pool2d, interpolate, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, InterpolateMode, InterpolateOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor};

use super::FeatureSet;
use super::features::for_each_batch;
use crate::error::{DiffuseError, Result};
use crate::nn::weights::{KeyRenames, load_diffusers_weights};
use crate::tensor_ops::to_host_f64;

/// Side of the square images the network was trained on; inputs are resized to it.
const INPUT_SIZE: usize = 299;
/// Width of the pool3 features.
pub const FEATURE_DIM: usize = 2048;
/// Images per forward pass: pytorch-fid's default batch size; activations of a 299×299 batch
/// stay within a few hundred MB.
const BATCH: usize = 50;

/// pytorch-fid's names start with capitals (`Conv2d_1a_3x3`, `Mixed_5b`); our fields do not.
const RENAMES: KeyRenames = KeyRenames {
    load: &[("^Conv2d_", "conv2d_"), ("^Mixed_", "mixed_")],
    save: &[("^conv2d_", "Conv2d_"), ("^mixed_", "Mixed_")],
};

/// torchvision's `BasicConv2d`: convolution without bias, BatchNorm (ε = 0.001), ReLU.
#[derive(Module, Debug)]
pub struct BasicConv2d {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl BasicConv2d {
    /// `BasicConv2d(in, out, kernel_size=kernel, stride=stride, padding=padding)`, with
    /// [height, width] kernels and paddings as the 1×7 / 7×1 factorised convolutions need.
    fn new(
        channels: [usize; 2],
        kernel: [usize; 2],
        stride: usize,
        padding: [usize; 2],
        device: &Device,
    ) -> Self {
        let [pad_h, pad_w] = padding;
        Self {
            conv: Conv2dConfig::new(channels, kernel)
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(pad_h, pad_w, pad_h, pad_w))
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(channels[1])
                .with_epsilon(1e-3)
                .init(device),
        }
    }

    /// A 1×1 convolution.
    fn pointwise(channels: [usize; 2], device: &Device) -> Self {
        Self::new(channels, [1, 1], 1, [0, 0], device)
    }

    /// A square k×k convolution.
    fn square(
        channels: [usize; 2],
        k: usize,
        stride: usize,
        padding: usize,
        device: &Device,
    ) -> Self {
        Self::new(channels, [k, k], stride, [padding, padding], device)
    }

    /// A 1×k convolution, padded to keep the width.
    fn row(channels: [usize; 2], k: usize, device: &Device) -> Self {
        Self::new(channels, [1, k], 1, [0, k / 2], device)
    }

    /// A k×1 convolution, padded to keep the height.
    fn column(channels: [usize; 2], k: usize, device: &Device) -> Self {
        Self::new(channels, [k, 1], 1, [k / 2, 0], device)
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.bn.forward(self.conv.forward(x)))
    }
}

/// `x` through `convs` in order: one branch of an Inception block.
fn chain(x: Tensor<4>, convs: &[&BasicConv2d]) -> Tensor<4> {
    convs.iter().fold(x, |h, conv| conv.forward(h))
}

/// 3×3 stride-1 average pool over the valid pixels only (TensorFlow's; pytorch-fid's patch of
/// torchvision, which counts the zero padding).
fn average_pool_3x3(x: Tensor<4>) -> Tensor<4> {
    let options = AvgPoolOptions::new([3, 3])
        .with_stride([1, 1])
        .with_padding([1, 1])
        .with_count_include_pad(false);
    avg_pool2d(x, options)
}

/// 3×3 max pool; padding never wins the max.
fn max_pool_3x3(x: Tensor<4>, stride: usize, padding: usize) -> Tensor<4> {
    let options = MaxPoolOptions::new([3, 3])
        .with_stride([stride, stride])
        .with_padding([padding, padding]);
    max_pool2d(x, options)
}

/// pytorch-fid's `F.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False)`;
/// burn's bilinear kernels use the same half-pixel source coordinates, clamped at the border.
fn resize_to_input(x: Tensor<4>) -> Tensor<4> {
    let options = InterpolateOptions::new(InterpolateMode::Bilinear)
        .with_align_corners(false)
        .with_output_size([INPUT_SIZE, INPUT_SIZE]);
    interpolate(x, options)
}

/// Mixed_5b–5d: `FIDInceptionA`, 35×35.
#[derive(Module, Debug)]
pub struct InceptionA {
    pub branch1x1: BasicConv2d,
    pub branch5x5_1: BasicConv2d,
    pub branch5x5_2: BasicConv2d,
    pub branch3x3dbl_1: BasicConv2d,
    pub branch3x3dbl_2: BasicConv2d,
    pub branch3x3dbl_3: BasicConv2d,
    pub branch_pool: BasicConv2d,
}

impl InceptionA {
    fn new(input: usize, pool_features: usize, device: &Device) -> Self {
        Self {
            branch1x1: BasicConv2d::pointwise([input, 64], device),
            branch5x5_1: BasicConv2d::pointwise([input, 48], device),
            branch5x5_2: BasicConv2d::square([48, 64], 5, 1, 2, device),
            branch3x3dbl_1: BasicConv2d::pointwise([input, 64], device),
            branch3x3dbl_2: BasicConv2d::square([64, 96], 3, 1, 1, device),
            branch3x3dbl_3: BasicConv2d::square([96, 96], 3, 1, 1, device),
            branch_pool: BasicConv2d::pointwise([input, pool_features], device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let branches = vec![
            self.branch1x1.forward(x.clone()),
            chain(x.clone(), &[&self.branch5x5_1, &self.branch5x5_2]),
            chain(
                x.clone(),
                &[
                    &self.branch3x3dbl_1,
                    &self.branch3x3dbl_2,
                    &self.branch3x3dbl_3,
                ],
            ),
            self.branch_pool.forward(average_pool_3x3(x)),
        ];
        Tensor::cat(branches, 1)
    }
}

/// Mixed_6a: torchvision's `InceptionB`, the grid reduction 35×35 → 17×17.
#[derive(Module, Debug)]
pub struct InceptionB {
    pub branch3x3: BasicConv2d,
    pub branch3x3dbl_1: BasicConv2d,
    pub branch3x3dbl_2: BasicConv2d,
    pub branch3x3dbl_3: BasicConv2d,
}

impl InceptionB {
    fn new(input: usize, device: &Device) -> Self {
        Self {
            branch3x3: BasicConv2d::square([input, 384], 3, 2, 0, device),
            branch3x3dbl_1: BasicConv2d::pointwise([input, 64], device),
            branch3x3dbl_2: BasicConv2d::square([64, 96], 3, 1, 1, device),
            branch3x3dbl_3: BasicConv2d::square([96, 96], 3, 2, 0, device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let branches = vec![
            self.branch3x3.forward(x.clone()),
            chain(
                x.clone(),
                &[
                    &self.branch3x3dbl_1,
                    &self.branch3x3dbl_2,
                    &self.branch3x3dbl_3,
                ],
            ),
            max_pool_3x3(x, 2, 0),
        ];
        Tensor::cat(branches, 1)
    }
}

/// Mixed_6b–6e: `FIDInceptionC`, 17×17 with 7×7 convolutions factorised into 1×7 and 7×1.
#[derive(Module, Debug)]
pub struct InceptionC {
    pub branch1x1: BasicConv2d,
    pub branch7x7_1: BasicConv2d,
    pub branch7x7_2: BasicConv2d,
    pub branch7x7_3: BasicConv2d,
    pub branch7x7dbl_1: BasicConv2d,
    pub branch7x7dbl_2: BasicConv2d,
    pub branch7x7dbl_3: BasicConv2d,
    pub branch7x7dbl_4: BasicConv2d,
    pub branch7x7dbl_5: BasicConv2d,
    pub branch_pool: BasicConv2d,
}

impl InceptionC {
    fn new(input: usize, c7: usize, device: &Device) -> Self {
        Self {
            branch1x1: BasicConv2d::pointwise([input, 192], device),
            branch7x7_1: BasicConv2d::pointwise([input, c7], device),
            branch7x7_2: BasicConv2d::row([c7, c7], 7, device),
            branch7x7_3: BasicConv2d::column([c7, 192], 7, device),
            branch7x7dbl_1: BasicConv2d::pointwise([input, c7], device),
            branch7x7dbl_2: BasicConv2d::column([c7, c7], 7, device),
            branch7x7dbl_3: BasicConv2d::row([c7, c7], 7, device),
            branch7x7dbl_4: BasicConv2d::column([c7, c7], 7, device),
            branch7x7dbl_5: BasicConv2d::row([c7, 192], 7, device),
            branch_pool: BasicConv2d::pointwise([input, 192], device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let branches = vec![
            self.branch1x1.forward(x.clone()),
            chain(
                x.clone(),
                &[&self.branch7x7_1, &self.branch7x7_2, &self.branch7x7_3],
            ),
            chain(
                x.clone(),
                &[
                    &self.branch7x7dbl_1,
                    &self.branch7x7dbl_2,
                    &self.branch7x7dbl_3,
                    &self.branch7x7dbl_4,
                    &self.branch7x7dbl_5,
                ],
            ),
            self.branch_pool.forward(average_pool_3x3(x)),
        ];
        Tensor::cat(branches, 1)
    }
}

/// Mixed_7a: torchvision's `InceptionD`, the grid reduction 17×17 → 8×8.
#[derive(Module, Debug)]
pub struct InceptionD {
    pub branch3x3_1: BasicConv2d,
    pub branch3x3_2: BasicConv2d,
    pub branch7x7x3_1: BasicConv2d,
    pub branch7x7x3_2: BasicConv2d,
    pub branch7x7x3_3: BasicConv2d,
    pub branch7x7x3_4: BasicConv2d,
}

impl InceptionD {
    fn new(input: usize, device: &Device) -> Self {
        Self {
            branch3x3_1: BasicConv2d::pointwise([input, 192], device),
            branch3x3_2: BasicConv2d::square([192, 320], 3, 2, 0, device),
            branch7x7x3_1: BasicConv2d::pointwise([input, 192], device),
            branch7x7x3_2: BasicConv2d::row([192, 192], 7, device),
            branch7x7x3_3: BasicConv2d::column([192, 192], 7, device),
            branch7x7x3_4: BasicConv2d::square([192, 192], 3, 2, 0, device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let branches = vec![
            chain(x.clone(), &[&self.branch3x3_1, &self.branch3x3_2]),
            chain(
                x.clone(),
                &[
                    &self.branch7x7x3_1,
                    &self.branch7x7x3_2,
                    &self.branch7x7x3_3,
                    &self.branch7x7x3_4,
                ],
            ),
            max_pool_3x3(x, 2, 0),
        ];
        Tensor::cat(branches, 1)
    }
}

/// The pool branch of the two 8×8 blocks, where pytorch-fid's patches differ.
#[derive(Debug, Clone, Copy)]
enum PoolKind {
    /// `FIDInceptionE_1` (Mixed_7b): average over valid pixels.
    Average,
    /// `FIDInceptionE_2` (Mixed_7c): a max pool, as in the TensorFlow graph FID was defined on.
    Max,
}

/// Mixed_7b, 7c: `FIDInceptionE_1` / `FIDInceptionE_2`, 8×8 with expanded 1×3 + 3×1 outputs.
#[derive(Module, Debug)]
pub struct InceptionE {
    pub branch1x1: BasicConv2d,
    pub branch3x3_1: BasicConv2d,
    pub branch3x3_2a: BasicConv2d,
    pub branch3x3_2b: BasicConv2d,
    pub branch3x3dbl_1: BasicConv2d,
    pub branch3x3dbl_2: BasicConv2d,
    pub branch3x3dbl_3a: BasicConv2d,
    pub branch3x3dbl_3b: BasicConv2d,
    pub branch_pool: BasicConv2d,
    #[module(skip)]
    pool: PoolKind,
}

impl InceptionE {
    fn new(input: usize, pool: PoolKind, device: &Device) -> Self {
        Self {
            branch1x1: BasicConv2d::pointwise([input, 320], device),
            branch3x3_1: BasicConv2d::pointwise([input, 384], device),
            branch3x3_2a: BasicConv2d::row([384, 384], 3, device),
            branch3x3_2b: BasicConv2d::column([384, 384], 3, device),
            branch3x3dbl_1: BasicConv2d::pointwise([input, 448], device),
            branch3x3dbl_2: BasicConv2d::square([448, 384], 3, 1, 1, device),
            branch3x3dbl_3a: BasicConv2d::row([384, 384], 3, device),
            branch3x3dbl_3b: BasicConv2d::column([384, 384], 3, device),
            branch_pool: BasicConv2d::pointwise([input, 192], device),
            pool,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let branch3x3 = self.branch3x3_1.forward(x.clone());
        let branch3x3dbl = chain(x.clone(), &[&self.branch3x3dbl_1, &self.branch3x3dbl_2]);
        let pooled = match self.pool {
            PoolKind::Average => average_pool_3x3(x.clone()),
            PoolKind::Max => max_pool_3x3(x.clone(), 1, 1),
        };
        let branches = vec![
            self.branch1x1.forward(x),
            self.branch3x3_2a.forward(branch3x3.clone()),
            self.branch3x3_2b.forward(branch3x3),
            self.branch3x3dbl_3a.forward(branch3x3dbl.clone()),
            self.branch3x3dbl_3b.forward(branch3x3dbl),
            self.branch_pool.forward(pooled),
        ];
        Tensor::cat(branches, 1)
    }
}

/// pytorch-fid's FID Inception-v3 up to pool3. Fields follow `Inception3`'s module names in lower
/// case (`Conv2d_1a_3x3` → `conv2d_1a_3x3`).
#[derive(Module, Debug)]
pub struct InceptionV3 {
    pub conv2d_1a_3x3: BasicConv2d,
    pub conv2d_2a_3x3: BasicConv2d,
    pub conv2d_2b_3x3: BasicConv2d,
    pub conv2d_3b_1x1: BasicConv2d,
    pub conv2d_4a_3x3: BasicConv2d,
    pub mixed_5b: InceptionA,
    pub mixed_5c: InceptionA,
    pub mixed_5d: InceptionA,
    pub mixed_6a: InceptionB,
    pub mixed_6b: InceptionC,
    pub mixed_6c: InceptionC,
    pub mixed_6d: InceptionC,
    pub mixed_6e: InceptionC,
    pub mixed_7a: InceptionD,
    pub mixed_7b: InceptionE,
    pub mixed_7c: InceptionE,
}

impl InceptionV3 {
    /// The network with initial (untrained) weights.
    fn new(device: &Device) -> Self {
        Self {
            conv2d_1a_3x3: BasicConv2d::square([3, 32], 3, 2, 0, device),
            conv2d_2a_3x3: BasicConv2d::square([32, 32], 3, 1, 0, device),
            conv2d_2b_3x3: BasicConv2d::square([32, 64], 3, 1, 1, device),
            conv2d_3b_1x1: BasicConv2d::pointwise([64, 80], device),
            conv2d_4a_3x3: BasicConv2d::square([80, 192], 3, 1, 0, device),
            mixed_5b: InceptionA::new(192, 32, device),
            mixed_5c: InceptionA::new(256, 64, device),
            mixed_5d: InceptionA::new(288, 64, device),
            mixed_6a: InceptionB::new(288, device),
            mixed_6b: InceptionC::new(768, 128, device),
            mixed_6c: InceptionC::new(768, 160, device),
            mixed_6d: InceptionC::new(768, 160, device),
            mixed_6e: InceptionC::new(768, 192, device),
            mixed_7a: InceptionD::new(768, device),
            mixed_7b: InceptionE::new(1280, PoolKind::Average, device),
            mixed_7c: InceptionE::new(2048, PoolKind::Max, device),
        }
    }

    /// The network with the weights of `path`, a safetensors file of pytorch-fid's state_dict
    /// names (tools/reference/convert_inception.py writes it), in evaluation mode (BatchNorm uses
    /// the running statistics). A missing, extra or mis-shaped tensor is an error that names it.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let mut network = Self::new(device);
        load_diffusers_weights(&mut network, path, &RENAMES)?;
        Ok(network.valid())
    }

    /// pool3 features [B, 2048] of images `x` [B, 3, 299, 299] in [−1, 1] (the range the network
    /// was trained on).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        // pytorch-fid's blocks 0 and 1: the stem down to 35×35.
        let x = chain(
            x,
            &[
                &self.conv2d_1a_3x3,
                &self.conv2d_2a_3x3,
                &self.conv2d_2b_3x3,
            ],
        );
        let x = max_pool_3x3(x, 2, 0);
        let x = chain(x, &[&self.conv2d_3b_1x1, &self.conv2d_4a_3x3]);
        let x = max_pool_3x3(x, 2, 0);
        // Block 2: 35×35 → 17×17.
        let x = self.mixed_5b.forward(x);
        let x = self.mixed_5c.forward(x);
        let x = self.mixed_5d.forward(x);
        let x = self.mixed_6a.forward(x);
        let x = self.mixed_6b.forward(x);
        let x = self.mixed_6c.forward(x);
        let x = self.mixed_6d.forward(x);
        let x = self.mixed_6e.forward(x);
        // Block 3: 17×17 → 8×8, then pool3, the global average.
        let x = self.mixed_7a.forward(x);
        let x = self.mixed_7b.forward(x);
        let x = self.mixed_7c.forward(x);
        let [batch, channels, _, _] = x.dims();
        adaptive_avg_pool2d(x, [1, 1]).reshape([batch, channels])
    }

    /// pool3 features of `images` (N × C·H·W values in [−1, 1] as diffuse's samples and data are,
    /// `[C, H, W]` = `shape`, C = 1 or 3), `BATCH` images per forward pass, reporting
    /// (images done, N) to `on_images` after each.
    ///
    /// As pytorch-fid: bilinear resize to 299×299 (`F.interpolate`, align_corners=False) and
    /// grayscale repeated to RGB. pytorch-fid takes [0, 1] and maps the resized image by 2x − 1;
    /// bilinear weights sum to one, so resizing our [−1, 1] values directly is the same.
    pub fn features(
        &self,
        images: &[f32],
        shape: [usize; 3],
        on_images: &mut dyn FnMut(usize, usize),
    ) -> Result<FeatureSet> {
        let channels = shape[0];
        if channels != 1 && channels != 3 {
            return Err(DiffuseError::config(format!(
                "Inception takes grayscale or RGB images; these are {shape:?}"
            )));
        }
        let device = self.devices()[0].clone();
        let mut features = Vec::new();
        for_each_batch(images, shape, BATCH, &device, on_images, |x| {
            // Grayscale → RGB by repeating the channel (pytorch-fid's PIL `.convert("RGB")`).
            let x = resize_to_input(x).repeat_dim(1, 3 / channels);
            features.extend(to_host_f64(self.forward(x))?);
            Ok(())
        })?;
        FeatureSet::new(features, FEATURE_DIM)
    }
}
