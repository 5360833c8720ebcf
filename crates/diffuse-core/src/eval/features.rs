//! Images to feature vectors: a classifier's penultimate features at t = 0 (with its predicted
//! classes), or Inception-v3's pool3 features.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::FeatureSet;
use super::inception::InceptionV3;
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

/// The network whose features FD, KID and precision/recall compare images in.
#[derive(Debug, Clone, Copy)]
pub enum FeatureNetwork<'a> {
    /// A classifier's penultimate features at t = 0; the same pass gives the class accuracy.
    Classifier(&'a NoiseAwareClassifier),
    /// Inception-v3's pool3 features, FID's space; `classifier`, if any, judges class accuracy.
    Inception {
        network: &'a InceptionV3,
        classifier: Option<&'a NoiseAwareClassifier>,
    },
}

impl FeatureNetwork<'_> {
    /// Features of `images` (N × C·H·W values in [−1, 1], as `[C, H, W]` = `shape`) and, when
    /// `classify` and there is a classifier, its predicted classes. Feature batches are reported
    /// to `on_images` as (images done, N).
    pub(crate) fn describe(
        &self,
        images: &[f32],
        shape: [usize; 3],
        classify: bool,
        on_images: &mut dyn FnMut(usize, usize),
    ) -> Result<(FeatureSet, Option<Vec<usize>>)> {
        match *self {
            Self::Classifier(classifier) => {
                let classified = classify_images(classifier, images, shape, on_images)?;
                Ok((classified.features, Some(classified.predicted)))
            }
            Self::Inception {
                network,
                classifier,
            } => {
                let predicted = match classifier.filter(|_| classify) {
                    Some(classifier) => {
                        Some(classify_images(classifier, images, shape, &mut |_, _| {})?.predicted)
                    }
                    None => None,
                };
                Ok((network.features(images, shape, on_images)?, predicted))
            }
        }
    }
}

/// Splits `images` (N × C·H·W values, as `[C, H, W]` = `shape`) into tensors of at most `batch`
/// images on `device`, runs `run` on each in order and reports (images done, N) to `on_images`.
pub(crate) fn for_each_batch(
    images: &[f32],
    shape: [usize; 3],
    batch: usize,
    device: &Device,
    on_images: &mut dyn FnMut(usize, usize),
    mut run: impl FnMut(Tensor<4>) -> Result<()>,
) -> Result<()> {
    let numel: usize = shape.iter().product();
    if images.is_empty() || numel == 0 || !images.len().is_multiple_of(numel) {
        return Err(DiffuseError::config(format!(
            "no whole {shape:?} images in {} values",
            images.len()
        )));
    }
    let count = images.len() / numel;
    for start in (0..count).step_by(batch) {
        let end = (start + batch).min(count);
        let [c, h, w] = shape;
        run(host_images(
            images[start * numel..end * numel].to_vec(),
            [end - start, c, h, w],
            device,
        ))?;
        on_images(end, count);
    }
    Ok(())
}

/// Classifies `images` (N × C·H·W values in [−1, 1], as `[C, H, W]` = `shape`) as clean images,
/// reporting batches to `on_images` as (images done, N).
pub fn classify_images(
    classifier: &NoiseAwareClassifier,
    images: &[f32],
    shape: [usize; 3],
    on_images: &mut dyn FnMut(usize, usize),
) -> Result<ClassifiedImages> {
    let config = classifier.config();
    let expected = [config.in_channels, config.sample_size, config.sample_size];
    if shape != expected {
        return Err(DiffuseError::config(format!(
            "the classifier takes {expected:?} images; these are {shape:?}"
        )));
    }
    let network = classifier.valid();
    let device = network.devices()[0].clone();
    let mut features = Vec::new();
    let mut predicted = Vec::new();
    for_each_batch(images, shape, EVAL_BATCH, &device, on_images, |x| {
        let [batch, _, _, _] = x.dims();
        let batch_features = network.features(x, &vec![0.0; batch])?;
        predicted.extend(predictions(network.logits_of(batch_features.clone()))?);
        features.extend(to_host_f64(batch_features)?);
        Ok(())
    })?;
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
