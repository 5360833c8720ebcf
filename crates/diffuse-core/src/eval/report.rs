//! All metrics of one evaluation, as a serialisable record.

use serde::Serialize;

use super::FeatureSet;
use super::features::FeatureNetwork;
use super::frechet::{GaussianStats, frechet_distance};
use super::kid::kernel_inception_distance;
use super::precision_recall::{KnnManifold, precision_recall_against};
use super::sliced_wasserstein::sliced_wasserstein;
use crate::classifier::train::fraction_correct;
use crate::data::Dataset;
use crate::error::{DiffuseError, Result};
use crate::gmm::GaussianMixture;

/// Image samples against a reference set, in a feature network's space.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageMetrics {
    pub samples: usize,
    pub reference_samples: usize,
    /// Fréchet distance of the features (FID's formula; FID itself under Inception-v3).
    pub fd: f64,
    pub kid: f64,
    pub kid_std: f64,
    pub precision: f64,
    pub recall: f64,
    /// The fraction of samples the classifier assigns to the class they were drawn for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_accuracy: Option<f64>,
}

/// The reference side of an image comparison (e.g. the test split), computed once and reused
/// for every sample set: its features, their Gaussian and their k-NN manifold.
#[derive(Debug, Clone)]
pub struct ImageReference {
    sample_shape: [usize; 3],
    features: FeatureSet,
    stats: GaussianStats,
    manifold: KnnManifold,
}

impl ImageReference {
    /// The reference `data` in `network`'s feature space, reporting (images done, N) to
    /// `on_images`.
    pub fn new(
        network: FeatureNetwork,
        data: &Dataset,
        on_images: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        if data.is_empty() {
            return Err(DiffuseError::config("the reference set is empty"));
        }
        let (features, _) = network.describe(&data.values, data.sample_shape, false, on_images)?;
        Ok(Self {
            sample_shape: data.sample_shape,
            stats: GaussianStats::fit(&features)?,
            manifold: KnnManifold::new(&features)?,
            features,
        })
    }

    pub fn len(&self) -> usize {
        self.features.len()
    }

    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }
}

/// Compares images `samples` (values in [−1, 1], of the reference's shape; `labels`: the class
/// each was drawn for) with `reference` in the space of `network` (the one the reference was
/// built with), reporting (images done, N) to `on_images`. The class accuracy needs labels and a
/// classifier. `seed` draws KID's subsets.
pub fn evaluate_images(
    network: FeatureNetwork,
    samples: &[f32],
    labels: Option<&[usize]>,
    reference: &ImageReference,
    seed: u64,
    on_images: &mut dyn FnMut(usize, usize),
) -> Result<ImageMetrics> {
    if samples.is_empty() {
        return Err(DiffuseError::config("there are no samples to evaluate"));
    }
    let (features, predicted) =
        network.describe(samples, reference.sample_shape, labels.is_some(), on_images)?;
    let class_accuracy = match (labels, predicted) {
        (Some(labels), _) if labels.len() != features.len() => {
            return Err(DiffuseError::config(format!(
                "{} class labels for {} samples",
                labels.len(),
                features.len()
            )));
        }
        (Some(labels), Some(predicted)) => Some(fraction_correct(&predicted, labels)),
        _ => None,
    };
    let fd = frechet_distance(&GaussianStats::fit(&features)?, &reference.stats)?;
    let kid = kernel_inception_distance(&features, &reference.features, seed)?;
    let pr = precision_recall_against(&reference.manifold, &features)?;
    Ok(ImageMetrics {
        samples: features.len(),
        reference_samples: reference.len(),
        fd,
        kid: kid.mean,
        kid_std: kid.std,
        precision: pr.precision,
        recall: pr.recall,
        class_accuracy,
    })
}

/// Vector samples against reference vectors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VectorMetrics {
    pub samples: usize,
    pub reference_samples: usize,
    pub sliced_wasserstein: f64,
    /// Mean log p(x) of the samples under the data's known mixture, and of the reference set
    /// for scale: samples off the data's support score far lower.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_likelihood: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_log_likelihood: Option<f64>,
}

pub fn evaluate_vectors(
    samples: &FeatureSet,
    reference: &FeatureSet,
    mixture: Option<&GaussianMixture>,
    seed: u64,
) -> Result<VectorMetrics> {
    let mean_log_density = |set: &FeatureSet| -> Result<Option<f64>> {
        let Some(mixture) = mixture else {
            return Ok(None);
        };
        if mixture.dim() != set.dim() {
            return Err(DiffuseError::config(format!(
                "the mixture is {}-dimensional; the samples are {}-dimensional",
                mixture.dim(),
                set.dim()
            )));
        }
        let total: f64 = (0..set.len())
            .map(|i| mixture.log_density(set.row(i)))
            .sum();
        Ok(Some(total / set.len() as f64))
    };
    Ok(VectorMetrics {
        samples: samples.len(),
        reference_samples: reference.len(),
        sliced_wasserstein: sliced_wasserstein(samples, reference, seed)?,
        log_likelihood: mean_log_density(samples)?,
        reference_log_likelihood: mean_log_density(reference)?,
    })
}
