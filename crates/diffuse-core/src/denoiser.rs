//! What a sampler needs from a model.

use burn::tensor::Tensor;

use crate::error::{DiffuseError, Result};
use crate::process::forward::PredictionType;

/// Anything that maps a noisy batch x_t and its timesteps to a prediction: a network, an exact
/// analytic denoiser, or a guidance wrapper around either.
pub trait Denoiser<const D: usize> {
    /// What [`Denoiser::predict`] returns (ε, x_0 or v).
    fn prediction_type(&self) -> PredictionType;

    /// For a class-conditional model, the class index that means "no class" (the last one of its
    /// class table, which label dropout trains); `None` for an unconditional model.
    fn null_class(&self) -> Option<usize> {
        None
    }

    /// The prediction for `x_t`, whose row i is at (possibly fractional) training timestep
    /// `timesteps[i]` and, for a class-conditional model, of class `class_labels[i]`.
    fn predict(
        &self,
        x_t: Tensor<D>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
    ) -> Result<Tensor<D>>;

    /// The prediction and, for a model that learns its reverse variance (improved DDPM), its
    /// variance output v, shaped like the prediction; `None` for a fixed-variance model.
    fn predict_with_variance(
        &self,
        x_t: Tensor<D>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
    ) -> Result<(Tensor<D>, Option<Tensor<D>>)> {
        Ok((self.predict(x_t, timesteps, class_labels)?, None))
    }

    /// The prediction at `x_t` and the vector–Jacobian product `cotangent`ᵀ ∂prediction/∂x_t,
    /// row by row (no denoiser mixes batch rows: GroupNorm and LayerNorm, never BatchNorm).
    /// By default `predict` is differentiated by autodiff: `x_t` moves onto its device's
    /// autodiff twin and the model's weights, on the plain device, enter as constants, so
    /// backward computes ∂/∂x_t only. A denoiser computed off the tensor graph overrides this.
    fn predict_with_vjp(
        &self,
        x_t: Tensor<D>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
        cotangent: Tensor<D>,
    ) -> Result<(Tensor<D>, Tensor<D>)> {
        let x = x_t.inner().autodiff().require_grad();
        let output = self.predict(x.clone(), timesteps, class_labels)?;
        let grads = (output.clone() * cotangent).sum().backward();
        let vjp = x.grad(&grads).ok_or_else(|| {
            DiffuseError::Tensor("backward produced no gradient for the denoiser's input".into())
        })?;
        Ok((output.inner(), vjp))
    }
}
