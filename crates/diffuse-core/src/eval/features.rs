//! Images through the evaluation classifier at t = 0: penultimate features and predicted classes.

use burn::module::Module;

use super::FeatureSet;
use crate::classifier::NoiseAwareClassifier;
use crate::classifier::train::{EVAL_BATCH, host_images, predictions};
use crate::error::{DiffuseError, Result};
use crate::plot::pixel_byte;
use crate::tensor_ops::to_host_f64;

/// Features and the classifier's decision for a set of images.
#[derive(Debug, Clone)]
pub struct ClassifiedImages {
    pub features: FeatureSet,
    pub predicted: Vec<usize>,
}

/// Classifies `images` (N × C·H·W values in [−1, 1], as `[C, H, W]` = `shape`) as clean images.
pub fn classify_images(
    classifier: &NoiseAwareClassifier,
    images: &[f32],
    shape: [usize; 3],
) -> Result<ClassifiedImages> {
    let config = classifier.config();
    let expected = [config.in_channels, config.sample_size, config.sample_size];
    if shape != expected {
        return Err(DiffuseError::config(format!(
            "the classifier takes {expected:?} images; these are {shape:?}"
        )));
    }
    let numel: usize = shape.iter().product();
    if images.is_empty() || !images.len().is_multiple_of(numel) {
        return Err(DiffuseError::config(format!(
            "no whole {shape:?} images in {} values",
            images.len()
        )));
    }
    let network = classifier.valid();
    let device = network.devices()[0].clone();
    let count = images.len() / numel;
    let mut features = Vec::with_capacity(count * config.feature_dim());
    let mut predicted = Vec::with_capacity(count);
    for start in (0..count).step_by(EVAL_BATCH) {
        let end = (start + EVAL_BATCH).min(count);
        let x = host_images(
            images[start * numel..end * numel].to_vec(),
            [end - start, shape[0], shape[1], shape[2]],
            &device,
        );
        let batch_features = network.features(x, &vec![0.0; end - start])?;
        predicted.extend(predictions(network.logits_of(batch_features.clone()))?);
        features.extend(to_host_f64(batch_features)?);
    }
    Ok(ClassifiedImages {
        features: FeatureSet::new(features, config.feature_dim())?,
        predicted,
    })
}

/// Samples as the 8-bit images a user would save (the levels of the PNGs `diffuse` writes),
/// like the data they are compared with.
pub fn quantize_to_8bit(samples: &[f64]) -> Vec<f32> {
    samples
        .iter()
        .map(|&v| (f64::from(pixel_byte(v)) / 127.5 - 1.0) as f32)
        .collect()
}
