//! What the multistep solvers (DPM-Solver++, UniPC) share: x̂₀ as they form it from a model output
//! at σ, and the history of recent x̂₀ their higher orders difference.

use burn::tensor::Tensor;

use super::x0_limit::X0Limit;
use crate::error::Result;
use crate::process::forward::PredictionType;

/// x̂_0 from a model output at k-diffusion noise level σ on the VP sample x_t (ᾱ = 1/(σ² + 1)),
/// clipped or thresholded by `limit`.
pub fn solver_x0<const D: usize>(
    prediction_type: PredictionType,
    limit: &X0Limit,
    model_output: Tensor<D>,
    sample: Tensor<D>,
    sigma: f64,
) -> Result<Tensor<D>> {
    let alpha_bar = 1.0 / (sigma * sigma + 1.0);
    let (x0, _) = prediction_type.to_x0_and_eps(model_output, sample, alpha_bar);
    limit.apply(x0)
}

/// The x̂_0 of the latest evaluations, most recent last, at most as many as the solver's order
/// uses.
#[derive(Debug, Clone)]
pub struct X0History<const D: usize> {
    x0s: Vec<Tensor<D>>,
    capacity: usize,
}

impl<const D: usize> X0History<D> {
    /// An empty history that keeps the last `order` x̂_0.
    pub fn new(order: usize) -> Self {
        Self {
            x0s: Vec::with_capacity(order + 1),
            capacity: order,
        }
    }

    /// Adds the newest x̂_0, forgetting the oldest beyond the capacity.
    pub fn push(&mut self, x0: Tensor<D>) {
        self.x0s.push(x0);
        let excess = self.x0s.len().saturating_sub(self.capacity);
        self.x0s.drain(..excess);
    }

    pub fn as_slice(&self) -> &[Tensor<D>] {
        &self.x0s
    }
}
