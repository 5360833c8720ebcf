//! The classifier's gradient for guided sampling (Dhariwal & Nichol 2021, Algorithms 1 and 2):
//! ∇_{x_t} log p_φ(y | x_t, t), which shifts the mean of a DDPM step by s·Σ·∇ or the ε of a DDIM
//! step by −s·√(1−ᾱ_t)·∇.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;

use super::model::NoiseAwareClassifier;
use crate::error::{DiffuseError, Result};
use crate::sampling::guidance::ClassGradient;
use crate::tensor_ops::from_host_f64;

/// Rows of one-hot vectors [B, K] for `labels`, checked against K, in `like`'s dtype and device.
pub(crate) fn one_hot(labels: &[usize], num_classes: usize, like: &Tensor<2>) -> Result<Tensor<2>> {
    if let Some(bad) = labels.iter().find(|&&l| l >= num_classes) {
        return Err(DiffuseError::config(format!(
            "class label {bad} is out of range: the classifier has {num_classes} classes"
        )));
    }
    let mut values = vec![0.0; labels.len() * num_classes];
    for (row, &label) in labels.iter().enumerate() {
        values[row * num_classes + label] = 1.0;
    }
    Ok(from_host_f64(
        values,
        [labels.len(), num_classes],
        &like.device(),
        like.dtype(),
    ))
}

/// log p(y_i | x_i, t_i) per row [B], from logits [B, K] and one-hot labels [B, K].
pub(crate) fn log_likelihood(logits: Tensor<2>, one_hot: Tensor<2>) -> Tensor<1> {
    let [batch, _] = logits.dims();
    (log_softmax(logits, 1) * one_hot)
        .sum_dim(1)
        .reshape([batch])
}

/// ∇_{x_t} log p(y | x_t, t) for each row of `x_t` [B, C, H, W] and its label, as a tensor
/// without autodiff on `x_t`'s device. `x_t` may come from an autodiff graph; it is treated as a
/// constant. The classifier's weights get no gradient.
pub fn log_prob_gradient(
    classifier: &NoiseAwareClassifier,
    x_t: Tensor<4>,
    timesteps: &[f64],
    labels: &[usize],
) -> Result<Tensor<4>> {
    let [batch, _, _, _] = x_t.dims();
    if labels.len() != batch {
        return Err(DiffuseError::config(format!(
            "{} class labels for a batch of {batch}",
            labels.len()
        )));
    }
    let x = x_t.inner().autodiff().require_grad();
    // valid(): the weights are constants of this graph, so backward computes ∂/∂x only.
    let network = classifier.valid().to_device(&x.device());
    let logits = network.forward(x.clone(), timesteps)?;
    let labels = one_hot(labels, network.config().num_classes, &logits)?;
    // No layer mixes batch rows (GroupNorm, not BatchNorm), so the gradient of the sum is each
    // row's own gradient.
    let grads = log_likelihood(logits, labels).sum().backward();
    x.grad(&grads).ok_or_else(|| {
        DiffuseError::Tensor("backward produced no gradient for the classifier's input".into())
    })
}

impl ClassGradient<4> for NoiseAwareClassifier {
    fn log_prob_gradient(
        &self,
        x_t: Tensor<4>,
        timesteps: &[f64],
        labels: &[usize],
    ) -> Result<Tensor<4>> {
        log_prob_gradient(self, x_t, timesteps, labels)
    }
}
