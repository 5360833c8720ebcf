//! Multi-head scaled dot-product attention, softmax(QKᵀ/√d)V (Vaswani et al. 2017, Eq. 1), fused
//! per (image, head): the N×N score matrix lives one row at a time in cache instead of as
//! [B, H, N, N] tensors, and the backward step recomputes it from the saved log-sum-exp of each
//! row (FlashAttention's recomputation, Dao et al. 2022, Algorithm 4). Inputs and outputs keep
//! the projections' [B, N, H·d] layout, so no head transposes are materialised.

use rayon::prelude::*;

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

    pub fn len(&self) -> usize {
        self.batch * self.positions * self.width()
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// One head of one image gathered from [B, N, H·d]: the matrix [N, d], or its transpose.
fn gather_head(shape: &AttentionShape, x: &[f32], b: usize, h: usize, transpose: bool) -> Vec<f32> {
    let (n, d, width) = (shape.positions, shape.head_dim, shape.width());
    let mut out = vec![0.0; n * d];
    for i in 0..n {
        let row = &x[(b * n + i) * width + h * d..][..d];
        for (c, &v) in row.iter().enumerate() {
            out[if transpose { c * n + i } else { i * d + c }] = v;
        }
    }
    out
}

/// Writes a head's [N, d] matrix (or its transpose) back into a [B, N, H·d] block of image b.
fn scatter_head(
    shape: &AttentionShape,
    head: &[f32],
    image: &mut [f32],
    h: usize,
    transpose: bool,
) {
    let (n, d, width) = (shape.positions, shape.head_dim, shape.width());
    for i in 0..n {
        let row = &mut image[i * width + h * d..][..d];
        for (c, v) in row.iter_mut().enumerate() {
            *v = head[if transpose { c * n + i } else { i * d + c }];
        }
    }
}

/// scores[j] = scale·⟨q, k_j⟩ for every key j, from the transposed keys [d, N].
#[inline(always)]
fn score_row(query: &[f32], keys_t: &[f32], scale: f32, scores: &mut [f32]) {
    scores.fill(0.0);
    for (&q, keys) in query.iter().zip(keys_t.chunks_exact(scores.len())) {
        let q = q * scale;
        scores.iter_mut().zip(keys).for_each(|(s, &k)| *s += q * k);
    }
}

/// Turns a score row into softmax probabilities in place; returns log Σ_j e^{s_j}.
#[inline(always)]
fn softmax_row(scores: &mut [f32]) -> f32 {
    let max = max(scores);
    scores.iter_mut().for_each(|s| *s = exp(*s - max));
    let total = sum(scores);
    let inv = 1.0 / total;
    scores.iter_mut().for_each(|s| *s *= inv);
    max + total.ln()
}

/// out[c] = Σ_j p_j · v[c, j] from the transposed values [d, N].
#[inline(always)]
fn weighted_sum(probs: &[f32], values_t: &[f32], out: &mut [f32]) {
    for (o, values) in out.iter_mut().zip(values_t.chunks_exact(probs.len())) {
        *o = dot(probs, values);
    }
}

/// One head of one image: the attended values [N, d] and each query row's log-sum-exp.
#[inline(always)]
fn head_forward(
    shape: &AttentionShape,
    q: &[f32],
    k_t: &[f32],
    v_t: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let (n, d) = (shape.positions, shape.head_dim);
    let mut out = vec![0.0; n * d];
    let mut lse = vec![0.0; n];
    let mut scores = vec![0.0; n];
    for i in 0..n {
        score_row(&q[i * d..(i + 1) * d], k_t, shape.scale(), &mut scores);
        lse[i] = softmax_row(&mut scores);
        weighted_sum(&scores, v_t, &mut out[i * d..(i + 1) * d]);
    }
    (out, lse)
}

/// The attention output [B, N, H·d] and the log-sum-exp of every (image, head, query) row,
/// which the backward step needs.
pub fn forward(shape: &AttentionShape, q: &[f32], k: &[f32], v: &[f32]) -> (Vec<f32>, Vec<f32>) {
    for x in [q, k, v] {
        assert_eq!(x.len(), shape.len(), "projection size");
    }
    let heads: Vec<(Vec<f32>, Vec<f32>)> = (0..shape.batch * shape.heads)
        .into_par_iter()
        .map(|bh| {
            let (b, h) = (bh / shape.heads, bh % shape.heads);
            let q = gather_head(shape, q, b, h, false);
            let k_t = gather_head(shape, k, b, h, true);
            let v_t = gather_head(shape, v, b, h, true);
            vectorized(
                #[inline(always)]
                || head_forward(shape, &q, &k_t, &v_t),
            )
        })
        .collect();
    let per_image = shape.positions * shape.width();
    let mut out = vec![0.0; shape.len()];
    let mut lse = Vec::with_capacity(shape.batch * shape.heads * shape.positions);
    for (bh, (head, head_lse)) in heads.into_iter().enumerate() {
        let (b, h) = (bh / shape.heads, bh % shape.heads);
        scatter_head(
            shape,
            &head,
            &mut out[b * per_image..(b + 1) * per_image],
            h,
            false,
        );
        lse.extend(head_lse);
    }
    (out, lse)
}

/// The saved tensors of one head, gathered for its backward step.
struct HeadInputs {
    q: Vec<f32>,
    k_t: Vec<f32>,
    v_t: Vec<f32>,
    grad: Vec<f32>,
    /// D_i = ⟨∂L/∂o_i, o_i⟩.
    delta: Vec<f32>,
}

/// ∂L/∂Q, ∂L/∂Kᵀ, ∂L/∂Vᵀ of one head: for each query row, P from the saved log-sum-exp,
/// dP = dO·Vᵀ, dS = P ⊙ (dP − D), dQ = scale·dS·K, dK += scale·dSᵀ·Q, dV += Pᵀ·dO.
#[inline(always)]
fn head_backward(shape: &AttentionShape, x: &HeadInputs, lse: &[f32]) -> [Vec<f32>; 3] {
    let (n, d, scale) = (shape.positions, shape.head_dim, shape.scale());
    let (mut dq, mut dk_t, mut dv_t) = (vec![0.0; n * d], vec![0.0; d * n], vec![0.0; d * n]);
    let mut probs = vec![0.0; n];
    let mut dscores = vec![0.0; n];
    for i in 0..n {
        let query = &x.q[i * d..(i + 1) * d];
        let grad = &x.grad[i * d..(i + 1) * d];
        score_row(query, &x.k_t, scale, &mut probs);
        probs.iter_mut().for_each(|s| *s = exp(*s - lse[i]));
        dscores.fill(0.0);
        for ((&g, values), dv) in grad
            .iter()
            .zip(x.v_t.chunks_exact(n))
            .zip(dv_t.chunks_exact_mut(n))
        {
            dscores
                .iter_mut()
                .zip(values)
                .for_each(|(s, &v)| *s += g * v);
            dv.iter_mut().zip(&probs).for_each(|(dv, &p)| *dv += g * p);
        }
        dscores
            .iter_mut()
            .zip(&probs)
            .for_each(|(s, &p)| *s = p * (*s - x.delta[i]) * scale);
        for (c, dk) in dk_t.chunks_exact_mut(n).enumerate() {
            let q = query[c];
            dk.iter_mut()
                .zip(&dscores)
                .for_each(|(dk, &s)| *dk += s * q);
        }
        for (c, dq) in dq[i * d..(i + 1) * d].iter_mut().enumerate() {
            *dq = dot(&dscores, &x.k_t[c * n..(c + 1) * n]);
        }
    }
    [dq, dk_t, dv_t]
}

/// The gradients (∂L/∂q, ∂L/∂k, ∂L/∂v), each [B, N, H·d], from the forward's output and
/// log-sum-exp.
pub fn backward(
    shape: &AttentionShape,
    [q, k, v]: [&[f32]; 3],
    out: &[f32],
    lse: &[f32],
    grad: &[f32],
) -> [Vec<f32>; 3] {
    let per_image = shape.positions * shape.width();
    let (n, d) = (shape.positions, shape.head_dim);
    let heads: Vec<[Vec<f32>; 3]> = (0..shape.batch * shape.heads)
        .into_par_iter()
        .map(|bh| {
            let (b, h) = (bh / shape.heads, bh % shape.heads);
            let out_h = gather_head(shape, out, b, h, false);
            let grad_h = gather_head(shape, grad, b, h, false);
            let delta = (0..n)
                .map(|i| dot(&grad_h[i * d..(i + 1) * d], &out_h[i * d..(i + 1) * d]))
                .collect();
            let inputs = HeadInputs {
                q: gather_head(shape, q, b, h, false),
                k_t: gather_head(shape, k, b, h, true),
                v_t: gather_head(shape, v, b, h, true),
                grad: grad_h,
                delta,
            };
            vectorized(
                #[inline(always)]
                || head_backward(shape, &inputs, &lse[bh * n..(bh + 1) * n]),
            )
        })
        .collect();
    let mut grads = [(); 3].map(|_| vec![0.0; shape.len()]);
    for (bh, [dq, dk_t, dv_t]) in heads.into_iter().enumerate() {
        let (b, h) = (bh / shape.heads, bh % shape.heads);
        let image = b * per_image..(b + 1) * per_image;
        scatter_head(shape, &dq, &mut grads[0][image.clone()], h, false);
        scatter_head(shape, &dk_t, &mut grads[1][image.clone()], h, true);
        scatter_head(shape, &dv_t, &mut grads[2][image], h, true);
    }
    grads
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: AttentionShape = AttentionShape {
        batch: 2,
        positions: 19,
        heads: 3,
        head_dim: 4,
    };

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let hash = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
                (hash % 2001) as f32 / 700.0 - 1.4
            })
            .collect()
    }

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
            values(SHAPE.len(), 1),
            values(SHAPE.len(), 2),
            values(SHAPE.len(), 3),
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
            values(SHAPE.len(), 4),
            values(SHAPE.len(), 5),
            values(SHAPE.len(), 6),
        ];
        let g = values(SHAPE.len(), 7);
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
