//! Evaluation: how close generated samples are to data, by the numbers the papers report.
//!
//! Images are compared in the penultimate feature space of a [`crate::classifier`] network at
//! t = 0, or in Inception-v3's pool3 space ([`inception`], FID's own) when its weights are given:
//! the Fréchet distance ([`frechet`], FID's formula), KID ([`kid`]), improved precision and recall
//! ([`precision_recall`]), and the accuracy of class-conditional samples under the classifier. Vectors are compared directly: the sliced Wasserstein distance
//! ([`sliced_wasserstein`]) and, when the data's mixture is known, its exact log-likelihood.
//! A model's own likelihood of test data is bounded by the variational bound ([`vlb`]) or
//! computed through its probability-flow ODE ([`ode_likelihood`]).

pub mod features;
pub mod frechet;
pub mod inception;
pub mod kid;
pub mod ode;
pub mod ode_likelihood;
pub mod precision_recall;
pub mod quality;
pub mod report;
pub mod sliced_wasserstein;
pub mod vlb;

pub use features::{ClassifiedImages, FeatureNetwork, classify_images, quantize_to_8bit};
pub use frechet::{GaussianStats, frechet_distance};
pub use inception::InceptionV3;
pub use kid::{Kid, kernel_inception_distance};
pub use ode_likelihood::{
    OdeLikelihoodSettings, OdeNllReport, OdeSolve, ScoredData, TraceEstimator, ode_log_likelihood,
    ode_negative_log_likelihood,
};
pub use precision_recall::{
    KnnManifold, PrecisionRecall, precision_recall, precision_recall_against,
};
pub use quality::{QualityCell, QualitySettings, markdown_table, sampler_quality_table};
pub use report::{ImageMetrics, ImageReference, VectorMetrics, evaluate_images, evaluate_vectors};
pub use sliced_wasserstein::sliced_wasserstein;
pub use vlb::{VlbReport, VlbSettings, VlbTimesteps, variational_bound};

use nalgebra::DMatrix;

use crate::error::{DiffuseError, Result};

/// N feature vectors of width D, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSet {
    values: Vec<f64>,
    dim: usize,
}

impl FeatureSet {
    pub fn new(values: Vec<f64>, dim: usize) -> Result<Self> {
        if dim == 0 || !values.len().is_multiple_of(dim) {
            return Err(DiffuseError::config(format!(
                "{} values do not form rows of width {dim}",
                values.len()
            )));
        }
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(DiffuseError::config(format!(
                "the samples hold a non-finite value ({bad})"
            )));
        }
        Ok(Self { values, dim })
    }

    pub fn len(&self) -> usize {
        self.values.len() / self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The rows as an N × D matrix.
    pub fn matrix(&self) -> DMatrix<f64> {
        DMatrix::from_row_slice(self.len(), self.dim, &self.values)
    }
}

/// Squared Euclidean distances between the rows of `a` [N, D] and `b` [M, D], as the N × M
/// matrix ‖a_i‖² + ‖b_j‖² − 2 a_iᵀb_j: one matrix product instead of N·M loops.
pub(crate) fn squared_distances(a: &DMatrix<f64>, b: &DMatrix<f64>) -> DMatrix<f64> {
    let norms = |m: &DMatrix<f64>| m.row_iter().map(|r| r.norm_squared()).collect::<Vec<_>>();
    let (norms_a, norms_b) = (norms(a), norms(b));
    let mut distances = a * b.transpose();
    for ((i, j), d) in distances
        .iter_mut()
        .enumerate()
        .map(|(index, d)| ((index % norms_a.len(), index / norms_a.len()), d))
    {
        *d = (norms_a[i] + norms_b[j] - 2.0 * *d).max(0.0);
    }
    distances
}
