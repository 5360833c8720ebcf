//! What a sampler needs from a model.

use burn::tensor::Tensor;

use crate::error::Result;
use crate::forward::PredictionType;

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
}
