//! Multi-head scaled dot-product attention, softmax(QKᵀ/√d)V (Vaswani et al. 2017, Eq. 1), one
//! (image, head) at a time: the N×N probabilities live in a per-thread buffer instead of as
//! [B, H, N, N] tensors, and the backward step recomputes them from the saved log-sum-exp of
//! each row (FlashAttention's recomputation, Dao et al. 2022, Algorithm 4). Inputs and outputs
//! keep the projections' [B, N, H·d] layout: each head is a strided view, so no head transposes
//! are materialised.

use rayon::prelude::*;

use super::conv::with_scratch;
use super::matmul::{Mat, Threads, matmul, matmul_strided};
use super::simd::{dot, exp, max, sum, vectorized};

/// B images of N positions with H heads of width d.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub batch: usize,
    pub positions: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    fn width(&self) -> usize {
        self.heads * self.head_dim
    }

    fn image_len(&self) -> usize {
        self.positions * self.width()
    }

    pub fn len(&self) -> usize {
        self.batch * self.image_len()
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }

    /// Images in parallel when there are enough of them; otherwise each product uses every
    /// thread.
    fn threads(&self) -> Threads {
        if self.batch >= rayon::current_num_threads() {
            Threads::Shared
        } else {
            Threads::Own
        }
    }

    /// Head h's columns of one image's [N, H·d] block, as an [N, d] matrix.
    fn head<'a>(&self, image: &'a [f32], h: usize) -> Mat<'a> {
        Mat::strided(
            &image[h * self.head_dim..],
            self.positions,
            self.head_dim,
            self.width(),
        )
    }
}

/// exp(scale·s − shift) over a row of scores, in place.
#[inline(always)]
fn exp_row(scores: &mut [f32], scale: f32, shift: f32) {
    scores.iter_mut().for_each(|s| *s = exp(*s * scale - shift));
}

/// Turns a row of raw scores into softmax(scale · s) in place; returns log Σ_j e^{scale·s_j}.
#[inline(always)]
fn softmax_row(scores: &mut [f32], scale: f32) -> f32 {
    let max = max(scores) * scale;
    exp_row(scores, scale, max);
    let total = sum(scores);
    let inv = 1.0 / total;
    scores.iter_mut().for_each(|s| *s *= inv);
    max + total.ln()
}

/// P = softmax(scale · Q Kᵀ) of one head into `probs` [N, N]; returns each row's log-sum-exp.
fn probabilities(
    shape: &AttentionShape,
    q: Mat,
    k: Mat,
    probs: &mut [f32],
    threads: Threads,
) -> Vec<f32> {
    matmul(probs, q, k.t(), false, threads);
    let scale = shape.scale();
    vectorized(
        #[inline(always)]
        || {
            probs
                .chunks_exact_mut(shape.positions)
                .map(|row| softmax_row(row, scale))
                .collect()
        },
    )
}

/// Runs `work(b, image blocks…)` for every image, in parallel when [`AttentionShape::threads`]
/// says so, and returns the results in image order.
fn for_each_image<T: Send, const K: usize>(
    shape: &AttentionShape,
    outputs: [&mut [f32]; K],
    work: impl Fn(usize, [&mut [f32]; K]) -> T + Sync,
) -> Vec<T> {
    let block = shape.image_len().max(1);
    let mut images: Vec<[&mut [f32]; K]> = (0..shape.batch)
        .map(|_| [(); K].map(|_| &mut [][..]))
        .collect();
    for (k, output) in outputs.into_iter().enumerate() {
        for (image, chunk) in images.iter_mut().zip(output.chunks_mut(block)) {
            image[k] = chunk;
        }
    }
    match shape.threads() {
        Threads::Shared => images
            .into_par_iter()
            .enumerate()
            .map(|(b, blocks)| work(b, blocks))
            .collect(),
        Threads::Own => images
            .into_iter()
            .enumerate()
            .map(|(b, blocks)| work(b, blocks))
            .collect(),
    }
}

/// The attention output [B, N, H·d] and the log-sum-exp of every (image, head, query) row,
/// which the backward step needs.
pub fn forward(shape: &AttentionShape, q: &[f32], k: &[f32], v: &[f32]) -> (Vec<f32>, Vec<f32>) {
    for x in [q, k, v] {
        assert_eq!(x.len(), shape.len(), "projection size");
    }
    let (n, width, threads) = (shape.positions, shape.width(), shape.threads());
    let mut out = vec![0.0; shape.len()];
    let lse = for_each_image(shape, [&mut out], |b, [out]| {
        let image = b * shape.image_len()..(b + 1) * shape.image_len();
        let (q, k, v) = (&q[image.clone()], &k[image.clone()], &v[image]);
        with_scratch(n * n, |probs| {
            let mut lse = Vec::with_capacity(shape.heads * n);
            for h in 0..shape.heads {
                lse.extend(probabilities(
                    shape,
                    shape.head(q, h),
                    shape.head(k, h),
                    probs,
                    threads,
                ));
                let probs = Mat::row_major(probs, n, n);
                matmul_strided(
                    &mut out[h * shape.head_dim..],
                    width,
                    probs,
                    shape.head(v, h),
                    false,
                    threads,
                );
            }
            lse
        })
    });
    (out, lse.concat())
}

/// ∂L/∂S of head h in place of dP = dO·Vᵀ: scale · P ⊙ (dP − D_i) with D_i = ⟨dO_i, O_i⟩;
/// `out` and `grad` are the image's [N, H·d] blocks.
#[inline(always)]
fn score_grad(
    shape: &AttentionShape,
    probs: &[f32],
    dprobs: &mut [f32],
    [out, grad]: [&[f32]; 2],
    h: usize,
) {
    let (n, d, width, scale) = (
        shape.positions,
        shape.head_dim,
        shape.width(),
        shape.scale(),
    );
    for (i, (dp, p)) in dprobs
        .chunks_exact_mut(n)
        .zip(probs.chunks_exact(n))
        .enumerate()
    {
        let row = i * width + h * d;
        let delta = dot(&grad[row..row + d], &out[row..row + d]);
        dp.iter_mut()
            .zip(p)
            .for_each(|(dp, &p)| *dp = scale * p * (*dp - delta));
    }
}

/// The gradients (∂L/∂q, ∂L/∂k, ∂L/∂v), each [B, N, H·d], from the forward's output and
/// log-sum-exp: per head P from the saved log-sum-exp, dP = dO·Vᵀ, dS = P ⊙ (dP − D)·scale,
/// dQ = dS·K, dK = dSᵀ·Q, dV = Pᵀ·dO.
pub fn backward(
    shape: &AttentionShape,
    [q, k, v]: [&[f32]; 3],
    out: &[f32],
    lse: &[f32],
    grad: &[f32],
) -> [Vec<f32>; 3] {
    let (n, width, threads, scale) = (
        shape.positions,
        shape.width(),
        shape.threads(),
        shape.scale(),
    );
    let mut grads = [(); 3].map(|_| vec![0.0; shape.len()]);
    let [dq, dk, dv] = &mut grads;
    for_each_image(shape, [dq, dk, dv], |b, [dq, dk, dv]| {
        let image = b * shape.image_len()..(b + 1) * shape.image_len();
        let [q, k, v, out, grad] = [q, k, v, out, grad].map(|x| &x[image.clone()]);
        with_scratch(2 * n * n, |scratch| {
            let (probs, dprobs) = scratch.split_at_mut(n * n);
            for h in 0..shape.heads {
                let (q_h, k_h, v_h, grad_h) = (
                    shape.head(q, h),
                    shape.head(k, h),
                    shape.head(v, h),
                    shape.head(grad, h),
                );
                matmul(probs, q_h, k_h.t(), false, threads);
                let row_lse = &lse[(b * shape.heads + h) * n..][..n];
                matmul(dprobs, grad_h, v_h.t(), false, threads);
                vectorized(
                    #[inline(always)]
                    || {
                        for (row, &lse) in probs.chunks_exact_mut(n).zip(row_lse) {
                            exp_row(row, scale, lse);
                        }
                        score_grad(shape, probs, dprobs, [out, grad], h);
                    },
                );
                let (p, ds) = (Mat::row_major(probs, n, n), Mat::row_major(dprobs, n, n));
                let at = h * shape.head_dim;
                matmul_strided(&mut dq[at..], width, ds, k_h, false, threads);
                matmul_strided(&mut dk[at..], width, ds.t(), q_h, false, threads);
                matmul_strided(&mut dv[at..], width, p.t(), grad_h, false, threads);
            }
        })
    });
    grads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::kernels::test_values;

    const SHAPE: AttentionShape = AttentionShape {
        batch: 2,
        positions: 19,
        heads: 3,
        head_dim: 4,
    };

    /// softmax(QKᵀ/√d)V per (image, head) in f64, straight from the definition.
    fn reference(s: &AttentionShape, q: &[f64], k: &[f64], v: &[f64]) -> Vec<f64> {
        let (n, d, w) = (s.positions, s.head_dim, s.width());
        let at = |x: &[f64], b: usize, i: usize, h: usize, c: usize| x[(b * n + i) * w + h * d + c];
        let mut out = vec![0.0; q.len()];
        for b in 0..s.batch {
            for h in 0..s.heads {
                for i in 0..n {
                    let scores: Vec<f64> = (0..n)
                        .map(|j| {
                            (0..d)
                                .map(|c| at(q, b, i, h, c) * at(k, b, j, h, c))
                                .sum::<f64>()
                                / (d as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f64 = weights.iter().sum();
                    for c in 0..d {
                        out[(b * n + i) * w + h * d + c] =
                            (0..n).map(|j| weights[j] / total * at(v, b, j, h, c)).sum();
                    }
                }
            }
        }
        out
    }

    fn widen(x: &[f32]) -> Vec<f64> {
        x.iter().map(|&v| f64::from(v)).collect()
    }

    #[test]
    fn forward_matches_the_definition() {
        let (q, k, v) = (
            test_values(SHAPE.len(), 1, 1.4),
            test_values(SHAPE.len(), 2, 1.4),
            test_values(SHAPE.len(), 3, 1.4),
        );
        let (out, _) = forward(&SHAPE, &q, &k, &v);
        let want = reference(&SHAPE, &widen(&q), &widen(&k), &widen(&v));
        for (g, w) in out.iter().zip(&want) {
            assert!((f64::from(*g) - w).abs() < 1e-5, "{g} vs {w}");
        }
    }

    /// Central differences of L = ⟨g, attention(q, k, v)⟩ in f64 against the analytic gradients.
    #[test]
    fn backward_matches_finite_differences() {
        let inputs = [
            test_values(SHAPE.len(), 4, 1.4),
            test_values(SHAPE.len(), 5, 1.4),
            test_values(SHAPE.len(), 6, 1.4),
        ];
        let g = test_values(SHAPE.len(), 7, 1.4);
        let (out, lse) = forward(&SHAPE, &inputs[0], &inputs[1], &inputs[2]);
        let grads = backward(&SHAPE, [&inputs[0], &inputs[1], &inputs[2]], &out, &lse, &g);
        let wide = inputs.each_ref().map(|x| widen(x));
        let loss = |x: &[Vec<f64>; 3]| -> f64 {
            let y = reference(&SHAPE, &x[0], &x[1], &x[2]);
            y.iter().zip(&g).map(|(y, &g)| y * f64::from(g)).sum()
        };
        let h = 1e-6;
        for which in 0..3 {
            for i in (0..SHAPE.len()).step_by(7) {
                let (mut up, mut down) = (wide.clone(), wide.clone());
                up[which][i] += h;
                down[which][i] -= h;
                let want = (loss(&up) - loss(&down)) / (2.0 * h);
                let got = f64::from(grads[which][i]);
                assert!(
                    (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "input {which}[{i}]: {got} vs {want}"
                );
            }
        }
    }
}
