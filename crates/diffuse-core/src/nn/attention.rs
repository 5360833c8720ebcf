//! Multi-head scaled dot-product self-attention (Vaswani et al. 2017, Eq. 1 and §3.2.2).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

/// diffusers' `Attention` without normalisation: query/key/value projections and an output
/// projection (`to_out` is [Linear, Dropout] in diffusers; only the linear layer holds weights).
#[derive(Module, Debug)]
pub struct SelfAttention {
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out: Vec<Linear>,
    #[module(skip)]
    heads: usize,
}

impl SelfAttention {
    /// `heads` heads of width `head_dim` over `dim` features, with biases.
    pub fn new(dim: usize, heads: usize, head_dim: usize, device: &Device) -> Self {
        let inner = heads * head_dim;
        Self {
            to_q: LinearConfig::new(dim, inner).init(device),
            to_k: LinearConfig::new(dim, inner).init(device),
            to_v: LinearConfig::new(dim, inner).init(device),
            to_out: vec![LinearConfig::new(inner, dim).init(device)],
            heads,
        }
    }

    /// Self-attention over the positions of `x` [B, N, C].
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        multi_head_attention(
            [&self.to_q, &self.to_k, &self.to_v, &self.to_out[0]],
            x,
            self.heads,
        )
    }
}

/// softmax(QKᵀ/√d)V over the positions of `x` [B, N, C] with projections [q, k, v, out], the
/// heads concatenated before the output projection.
pub(crate) fn multi_head_attention(
    projections: [&Linear; 4],
    x: Tensor<3>,
    heads: usize,
) -> Tensor<3> {
    let [to_q, to_k, to_v, to_out] = projections;
    let [batch, positions, _] = x.dims();
    let split_heads = |t: Tensor<3>| {
        let inner = t.dims()[2];
        t.reshape([batch, positions, heads, inner / heads])
            .swap_dims(1, 2)
    };
    let q = split_heads(to_q.forward(x.clone()));
    let k = split_heads(to_k.forward(x.clone()));
    let v = split_heads(to_v.forward(x));
    let head_dim = q.dims()[3];
    let scores = q
        .matmul(k.swap_dims(2, 3))
        .div_scalar((head_dim as f64).sqrt());
    let attended = softmax(scores, 3).matmul(v).swap_dims(1, 2);
    to_out.forward(attended.reshape([batch, positions, heads * head_dim]))
}
