//! Fast CPU kernels for the layers that dominate a U-Net's training step: convolution lowered to
//! matrix products for the forward and both backward passes (`conv`), and group normalisation
//! fused with the SiLU after it (`group_norm`). On a flex (CPU) device in f32 the layers below
//! run these kernels, with their own backward steps; on any other device or dtype they run
//! burn's operations, so results agree across devices up to rounding.
//!
//! They live here because burn's flex backend (0.22) computes a convolution's input gradient
//! with a direct transposed-convolution loop and a group normalisation as a dozen separate
//! single-threaded passes; both would belong upstream.

mod attention;
mod conv;
mod extension;
mod group_norm;
mod matmul;
mod simd;
mod update;

use burn::backend::{Dispatch, DispatchDevice};
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, PaddingConfig2d};
use burn::tensor::activation::{self, softmax};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Tensor};

pub use extension::{CpuKernels, CpuUpdates};
pub use group_norm::Activation;
pub use update::AdamWStep;

/// Whether `x` lives where the kernels run: a flex device, f32.
fn on_cpu_kernels<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_))
}

/// The convolution's padding as (begin, end) per axis, for the explicit paddings diffusers'
/// layers use.
fn explicit_padding(padding: &PaddingConfig2d) -> Option<[(usize, usize); 2]> {
    match *padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => Some([(top, bottom), (left, right)]),
        PaddingConfig2d::Valid => Some([(0, 0), (0, 0)]),
        PaddingConfig2d::Same => None,
    }
}

/// `conv.forward(x)`, on the CPU kernels where they apply.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let padding = explicit_padding(&conv.padding);
    let fits = |padding: &[(usize, usize); 2]| {
        let [_, _, height, width] = x.dims();
        let [kernel_h, kernel_w] = conv.kernel_size;
        height + padding[0].0 + padding[0].1 >= kernel_h
            && width + padding[1].0 + padding[1].1 >= kernel_w
    };
    let (Some(padding), Some(bias)) = (padding, &conv.bias) else {
        return conv.forward(x);
    };
    if conv.groups != 1 || conv.dilation != [1, 1] || !fits(&padding) || !on_cpu_kernels(&x) {
        return conv.forward(x);
    }
    let options = ConvOptions::new_with_padding(conv.stride, padding, [1, 1], 1);
    let y = <Dispatch as CpuKernels>::conv2d_gemm(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.val().into_dispatch(),
        options,
    );
    Tensor::from_dispatch(y)
}

/// `activation(norm.forward(x))`, fused on the CPU kernels where they apply.
pub fn group_norm<const D: usize>(norm: &GroupNorm, x: Tensor<D>, act: Activation) -> Tensor<D> {
    match (&norm.gamma, &norm.beta) {
        (Some(gamma), Some(beta)) if on_cpu_kernels(&x) => {
            let y = <Dispatch as CpuKernels>::group_norm_fused(
                x.into_dispatch(),
                gamma.val().into_dispatch(),
                beta.val().into_dispatch(),
                norm.num_groups,
                norm.epsilon,
                act,
            );
            Tensor::from_dispatch(y)
        }
        _ => {
            let y = norm.forward(x);
            match act {
                Activation::Identity => y,
                Activation::Silu => activation::silu(y),
            }
        }
    }
}

/// softmax(QKᵀ/√d)V (Vaswani et al. 2017, Eq. 1) with `heads` heads over projections q, k, v
/// [B, N, H·d]; returns the heads concatenated, [B, N, H·d]. Fused on the CPU kernels where
/// they apply.
pub fn attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, heads: usize) -> Tensor<3> {
    if on_cpu_kernels(&q) {
        let y = <Dispatch as CpuKernels>::attention_fused(
            q.into_dispatch(),
            k.into_dispatch(),
            v.into_dispatch(),
            heads,
        );
        return Tensor::from_dispatch(y);
    }
    let [batch, positions, width] = q.dims();
    let split_heads = |t: Tensor<3>| {
        t.reshape([batch, positions, heads, width / heads])
            .swap_dims(1, 2)
    };
    let (q, k, v) = (split_heads(q), split_heads(k), split_heads(v));
    let scores = q
        .matmul(k.swap_dims(2, 3))
        .div_scalar(((width / heads) as f64).sqrt());
    softmax(scores, 3)
        .matmul(v)
        .swap_dims(1, 2)
        .reshape([batch, positions, width])
}

/// One AdamW step of a flat parameter as one parallel pass, returning (θ, m, v); `None` off the
/// CPU kernels (the caller composes it from tensor operations there).
pub fn adamw_step(
    param: &Tensor<1>,
    grad: &Tensor<1>,
    [first, second]: [&Tensor<1>; 2],
    step: AdamWStep,
) -> Option<[Tensor<1>; 3]> {
    let all_f32 = [param, grad, first, second]
        .iter()
        .all(|t| on_cpu_kernels(*t));
    if !all_f32 {
        return None;
    }
    let (p, m, v) = <Dispatch as CpuUpdates>::adamw_fused(
        param.clone().into_dispatch(),
        grad.clone().into_dispatch(),
        first.clone().into_dispatch(),
        second.clone().into_dispatch(),
        step,
    );
    Some([p, m, v].map(Tensor::from_dispatch))
}

/// θ_ema − (1 − decay)(θ_ema − θ) as one parallel pass; `None` off the CPU kernels.
pub fn ema_step(average: &Tensor<1>, value: &Tensor<1>, decay: f64) -> Option<Tensor<1>> {
    if !(on_cpu_kernels(average) && on_cpu_kernels(value)) {
        return None;
    }
    let y = <Dispatch as CpuUpdates>::ema_fused(
        average.clone().into_dispatch(),
        value.clone().into_dispatch(),
        decay,
    );
    Some(Tensor::from_dispatch(y))
}

/// Deterministic pseudo-random test values in [−amplitude, amplitude] (Knuth's multiplicative
/// hash of the index and seed): inputs the kernels' tests compare against their definitions.
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u32, amplitude: f32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let hash = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
            ((hash % 2001) as f32 / 1000.0 - 1.0) * amplitude
        })
        .collect()
}
