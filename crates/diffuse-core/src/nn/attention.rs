//! Multi-head scaled dot-product self-attention (Vaswani et al. 2017, Eq. 1 and §3.2.2).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::nn::kernels;

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
    let q = to_q.forward(x.clone());
    let k = to_k.forward(x.clone());
    let v = to_v.forward(x);
    to_out.forward(kernels::attention(q, k, v, heads))
}
