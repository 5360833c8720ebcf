//! Group normalisation (Wu & He 2018) with the SiLU that follows it in diffusers' blocks fused
//! in, forward and backward, over [N, C, S] f32 batches: one read and one write per element each
//! way instead of burn's dozen separate passes. Statistics are accumulated in f64; every
//! (image, group) block runs in parallel.

use rayon::prelude::*;

use super::simd::{sigmoid, vectorized};

/// The layout of one group normalisation: `channels` split into `groups` of consecutive
/// channels, each with `spatial` values per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupNormShape {
    pub batch: usize,
    pub channels: usize,
    pub groups: usize,
    pub spatial: usize,
}

impl GroupNormShape {
    fn channels_per_group(&self) -> usize {
        self.channels / self.groups
    }

    /// Values normalised together: one (image, group) block.
    fn block_len(&self) -> usize {
        self.channels_per_group() * self.spatial
    }

    pub fn len(&self) -> usize {
        self.batch * self.channels * self.spatial
    }
}

/// What follows the affine map γ·x̂ + β.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Identity,
    /// x·σ(x) (Elfwing et al. 2018).
    Silu,
}

impl Activation {
    #[inline(always)]
    fn apply(self, z: f32) -> f32 {
        match self {
            Self::Identity => z,
            Self::Silu => z * sigmoid(z),
        }
    }

    /// d act(z)/dz; SiLU's is σ(z)·(1 + z·(1 − σ(z))).
    #[inline(always)]
    fn derivative(self, z: f32) -> f32 {
        match self {
            Self::Identity => 1.0,
            Self::Silu => {
                let s = sigmoid(z);
                s * (1.0 + z * (1.0 - s))
            }
        }
    }
}

/// Mean and 1/√(var + ε) of one block (biased variance, as torch's `group_norm`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockStats {
    pub mean: f32,
    pub inv_std: f32,
}

/// Σ f(v) over `values`, in eight f64 lanes so that the loop vectorises (a single running sum
/// would have to be added in order).
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = values.chunks_exact(lanes.len());
    let rest: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    lanes.iter().sum::<f64>() + rest
}

#[inline(always)]
fn block_stats(block: &[f32], epsilon: f64) -> BlockStats {
    let count = block.len() as f64;
    let mean = lane_sum(block, f64::from) / count;
    let variance = lane_sum(block, |v| (f64::from(v) - mean).powi(2)) / count;
    BlockStats {
        mean: mean as f32,
        inv_std: (1.0 / (variance + epsilon).sqrt()) as f32,
    }
}

/// act(γ_c·(x − μ)/σ + β_c) over one block; `gamma` and `beta` are the group's channels.
#[inline(always)]
fn normalize_block(
    x: &[f32],
    y: &mut [f32],
    stats: BlockStats,
    gamma: &[f32],
    beta: &[f32],
    activation: Activation,
) {
    let spatial = x.len() / gamma.len();
    let rows = x.chunks_exact(spatial).zip(y.chunks_exact_mut(spatial));
    for ((x, y), (&g, &b)) in rows.zip(gamma.iter().zip(beta)) {
        let scale = stats.inv_std * g;
        for (y, &x) in y.iter_mut().zip(x) {
            *y = activation.apply((x - stats.mean) * scale + b);
        }
    }
}

/// The normalised, activated batch and the statistics of every (image, group) block, in order.
pub fn forward(
    shape: &GroupNormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    activation: Activation,
) -> (Vec<f32>, Vec<BlockStats>) {
    assert_eq!(x.len(), shape.len(), "input size");
    let mut y = vec![0.0; x.len()];
    let block = shape.block_len();
    let per_group = shape.channels_per_group();
    let stats = y
        .par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .enumerate()
        .map(|(i, (y, x))| {
            let channels = (i % shape.groups) * per_group..(i % shape.groups + 1) * per_group;
            let (gamma, beta) = (&gamma[channels.clone()], &beta[channels]);
            vectorized(
                #[inline(always)]
                || {
                    let stats = block_stats(x, epsilon);
                    normalize_block(x, y, stats, gamma, beta, activation);
                    stats
                },
            )
        })
        .collect();
    (y, stats)
}

/// Per channel of one block: Σ ∂L/∂z and Σ ∂L/∂z·x̂, where z = γ·x̂ + β.
struct ChannelSums {
    grad: Vec<f64>,
    grad_times_normalized: Vec<f64>,
}

/// One channel's ∂L/∂z into `dz`, with Σ ∂L/∂z and Σ ∂L/∂z·x̂. Sixteen f32 lanes per sum so that
/// the loop vectorises; the lanes are added in f64.
#[inline(always)]
fn pre_activation_grad_row(
    x: &[f32],
    grad: &[f32],
    dz: &mut [f32],
    stats: BlockStats,
    gamma: f32,
    beta: f32,
    activation: Activation,
) -> (f64, f64) {
    const LANES: usize = 16;
    let mut sum = [0.0f32; LANES];
    let mut sum_normalized = [0.0f32; LANES];
    let mut lanes = |dz: &mut [f32], x: &[f32], grad: &[f32]| {
        for (lane, ((dz, &x), &grad)) in dz.iter_mut().zip(x).zip(grad).enumerate() {
            let normalized = (x - stats.mean) * stats.inv_std;
            *dz = grad * activation.derivative(normalized * gamma + beta);
            sum[lane] += *dz;
            sum_normalized[lane] += *dz * normalized;
        }
    };
    let whole = x.len() / LANES * LANES;
    for ((dz, x), grad) in dz[..whole]
        .chunks_exact_mut(LANES)
        .zip(x[..whole].chunks_exact(LANES))
        .zip(grad[..whole].chunks_exact(LANES))
    {
        lanes(dz, x, grad);
    }
    lanes(&mut dz[whole..], &x[whole..], &grad[whole..]);
    let total = |lanes: [f32; LANES]| lanes.iter().map(|&v| f64::from(v)).sum::<f64>();
    (total(sum), total(sum_normalized))
}

/// Writes ∂L/∂z = ∂L/∂y·act'(z) into `dz` and returns its per-channel sums.
#[inline(always)]
fn pre_activation_grad(
    x: &[f32],
    grad: &[f32],
    dz: &mut [f32],
    stats: BlockStats,
    gamma: &[f32],
    beta: &[f32],
    activation: Activation,
) -> ChannelSums {
    let spatial = x.len() / gamma.len();
    let mut sums = ChannelSums {
        grad: Vec::with_capacity(gamma.len()),
        grad_times_normalized: Vec::with_capacity(gamma.len()),
    };
    let rows = x.chunks_exact(spatial).zip(grad.chunks_exact(spatial));
    for (((x, grad), dz), (&g, &b)) in rows
        .zip(dz.chunks_exact_mut(spatial))
        .zip(gamma.iter().zip(beta))
    {
        let (sum, sum_normalized) = pre_activation_grad_row(x, grad, dz, stats, g, b, activation);
        sums.grad.push(sum);
        sums.grad_times_normalized.push(sum_normalized);
    }
    sums
}

/// ∂L/∂x = (1/σ)(γ·∂L/∂z − mean(γ·∂L/∂z) − x̂·mean(γ·∂L/∂z·x̂)) over the block, in place of ∂L/∂z.
#[inline(always)]
fn input_grad_block(
    x: &[f32],
    dz: &mut [f32],
    stats: BlockStats,
    gamma: &[f32],
    sums: &ChannelSums,
) {
    let count = x.len() as f64;
    let weighted = |s: &[f64]| {
        s.iter()
            .zip(gamma)
            .map(|(s, &g)| s * f64::from(g))
            .sum::<f64>()
    };
    let mean_grad = (weighted(&sums.grad) / count) as f32;
    let mean_grad_normalized = (weighted(&sums.grad_times_normalized) / count) as f32;
    let spatial = x.len() / gamma.len();
    for ((x, dz), &g) in x
        .chunks_exact(spatial)
        .zip(dz.chunks_exact_mut(spatial))
        .zip(gamma)
    {
        for (dz, &x) in dz.iter_mut().zip(x) {
            let normalized = (x - stats.mean) * stats.inv_std;
            *dz = stats.inv_std * (g * *dz - mean_grad - normalized * mean_grad_normalized);
        }
    }
}

/// The gradients of [`forward`]: (∂L/∂x, ∂L/∂γ, ∂L/∂β); γ's and β's are summed over the batch
/// in image order.
pub fn backward(
    shape: &GroupNormShape,
    x: &[f32],
    stats: &[BlockStats],
    gamma: &[f32],
    beta: &[f32],
    grad: &[f32],
    activation: Activation,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), shape.len(), "input size");
    assert_eq!(grad.len(), shape.len(), "gradient size");
    assert_eq!(stats.len(), shape.batch * shape.groups, "statistics");
    let mut dx = vec![0.0; x.len()];
    let block = shape.block_len();
    let per_group = shape.channels_per_group();
    let sums: Vec<ChannelSums> = dx
        .par_chunks_mut(block)
        .zip(x.par_chunks(block).zip(grad.par_chunks(block)))
        .enumerate()
        .map(|(i, (dx, (x, grad)))| {
            let channels = (i % shape.groups) * per_group..(i % shape.groups + 1) * per_group;
            let (gamma, beta) = (&gamma[channels.clone()], &beta[channels]);
            vectorized(
                #[inline(always)]
                || {
                    let sums = pre_activation_grad(x, grad, dx, stats[i], gamma, beta, activation);
                    input_grad_block(x, dx, stats[i], gamma, &sums);
                    sums
                },
            )
        })
        .collect();
    let mut dgamma = vec![0.0f64; shape.channels];
    let mut dbeta = vec![0.0f64; shape.channels];
    for (i, block_sums) in sums.iter().enumerate() {
        let first = (i % shape.groups) * per_group;
        for (c, (dg, db)) in block_sums
            .grad_times_normalized
            .iter()
            .zip(&block_sums.grad)
            .enumerate()
        {
            dgamma[first + c] += dg;
            dbeta[first + c] += db;
        }
    }
    let narrow = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect();
    (dx, narrow(dgamma), narrow(dbeta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::kernels::test_values;

    /// act(group_norm(x)) in f64, straight from the definition.
    fn reference(
        shape: &GroupNormShape,
        x: &[f64],
        gamma: &[f32],
        beta: &[f32],
        act: Activation,
    ) -> Vec<f64> {
        let block = shape.block_len();
        let spatial = shape.spatial;
        let mut y = vec![0.0; x.len()];
        for (i, (x, y)) in x.chunks(block).zip(y.chunks_mut(block)).enumerate() {
            let mean = x.iter().sum::<f64>() / block as f64;
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / block as f64;
            for (j, (x, y)) in x.iter().zip(y.iter_mut()).enumerate() {
                let c = (i % shape.groups) * shape.channels_per_group() + j / spatial;
                let z = (x - mean) / (var + 1e-5).sqrt() * f64::from(gamma[c]) + f64::from(beta[c]);
                *y = match act {
                    Activation::Identity => z,
                    Activation::Silu => z / (1.0 + (-z).exp()),
                };
            }
        }
        y
    }

    const SHAPE: GroupNormShape = GroupNormShape {
        batch: 3,
        channels: 6,
        groups: 2,
        spatial: 5,
    };

    #[test]
    fn forward_matches_the_definition() {
        let x = test_values(SHAPE.len(), 1, 2.0);
        let gamma = test_values(SHAPE.channels, 2, 2.0);
        let beta = test_values(SHAPE.channels, 3, 2.0);
        for act in [Activation::Identity, Activation::Silu] {
            let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            let want = reference(&SHAPE, &x64, &gamma, &beta, act);
            let (y, _) = forward(&SHAPE, &x, &gamma, &beta, 1e-5, act);
            for (g, w) in y.iter().zip(&want) {
                assert!((f64::from(*g) - w).abs() < 1e-5, "{act:?}: {g} vs {w}");
            }
        }
    }

    /// Central differences of L = Σ g·y in f64 against the analytic gradients.
    #[test]
    fn backward_matches_finite_differences() {
        let x = test_values(SHAPE.len(), 4, 2.0);
        let gamma = test_values(SHAPE.channels, 5, 2.0);
        let beta = test_values(SHAPE.channels, 6, 2.0);
        let g = test_values(SHAPE.len(), 7, 2.0);
        for act in [Activation::Identity, Activation::Silu] {
            let loss = |x: &[f64], gamma: &[f32], beta: &[f32]| -> f64 {
                let y = reference(&SHAPE, x, gamma, beta, act);
                y.iter().zip(&g).map(|(y, &g)| y * f64::from(g)).sum()
            };
            let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            let (_, stats) = forward(&SHAPE, &x, &gamma, &beta, 1e-5, act);
            let (dx, dgamma, dbeta) = backward(&SHAPE, &x, &stats, &gamma, &beta, &g, act);
            let h = 1e-6;
            for i in 0..x.len() {
                let (mut up, mut down) = (x64.clone(), x64.clone());
                up[i] += h;
                down[i] -= h;
                let want = (loss(&up, &gamma, &beta) - loss(&down, &gamma, &beta)) / (2.0 * h);
                assert!(
                    (f64::from(dx[i]) - want).abs() < 2e-4 * (1.0 + want.abs()),
                    "{act:?} dx[{i}]: {} vs {want}",
                    dx[i]
                );
            }
            // γ and β enter linearly per channel: L(γ + e_c) − L(γ) is exact up to the activation's
            // curvature, so compare with central differences in f32 steps of the parameters.
            for c in 0..SHAPE.channels {
                let step = 1e-2f32;
                let shifted = |v: &[f32], d: f32| {
                    let mut v = v.to_vec();
                    v[c] += d;
                    v
                };
                let want = (loss(&x64, &shifted(&gamma, step), &beta)
                    - loss(&x64, &shifted(&gamma, -step), &beta))
                    / (2.0 * f64::from(step));
                assert!(
                    (f64::from(dgamma[c]) - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "{act:?} dgamma[{c}]: {} vs {want}",
                    dgamma[c]
                );
                let want = (loss(&x64, &gamma, &shifted(&beta, step))
                    - loss(&x64, &gamma, &shifted(&beta, -step)))
                    / (2.0 * f64::from(step));
                assert!(
                    (f64::from(dbeta[c]) - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "{act:?} dbeta[{c}]: {} vs {want}",
                    dbeta[c]
                );
            }
        }
    }
}
