//! The Fréchet distance between two Gaussians fitted to feature sets (Heusel et al. 2017, Eq. 6
//! of the FID paper; Dowson & Landau 1982): ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁^½ Σ₂ Σ₁^½)^½).

use nalgebra::{DMatrix, DVector, SymmetricEigen};

use super::FeatureSet;
use crate::error::{DiffuseError, Result};

/// Mean and covariance (unbiased, n − 1) of a feature set.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianStats {
    pub mean: DVector<f64>,
    pub covariance: DMatrix<f64>,
}

impl GaussianStats {
    /// Fits the Gaussian of `features`; needs at least two rows.
    pub fn fit(features: &FeatureSet) -> Result<Self> {
        let n = features.len();
        if n < 2 {
            return Err(DiffuseError::config(format!(
                "a covariance needs at least 2 samples (got {n})"
            )));
        }
        let rows = features.matrix();
        let mean = rows.row_mean().transpose();
        let mut centred = rows;
        for mut row in centred.row_iter_mut() {
            row -= mean.transpose();
        }
        let covariance = centred.transpose() * &centred / (n as f64 - 1.0);
        Ok(Self { mean, covariance })
    }
}

/// Eq. 6 of Heusel et al. The cross term Tr((Σ₁ Σ₂)^½) is computed as the trace of the square
/// root of the symmetric positive semi-definite Σ₁^½ Σ₂ Σ₁^½, which has the same eigenvalues as
/// Σ₁ Σ₂; symmetric eigendecompositions keep it real where a general matrix square root drifts
/// into complex round-off.
pub fn frechet_distance(a: &GaussianStats, b: &GaussianStats) -> Result<f64> {
    if a.mean.len() != b.mean.len() {
        return Err(DiffuseError::config(format!(
            "feature widths differ: {} vs {}",
            a.mean.len(),
            b.mean.len()
        )));
    }
    let mean_term = (&a.mean - &b.mean).norm_squared();
    let root_a = psd_sqrt(&a.covariance);
    let cross = SymmetricEigen::new(&root_a * &b.covariance * &root_a)
        .eigenvalues
        .iter()
        .map(|&l| l.max(0.0).sqrt())
        .sum::<f64>();
    Ok(mean_term + a.covariance.trace() + b.covariance.trace() - 2.0 * cross)
}

/// The square root of a symmetric positive semi-definite matrix, with eigenvalues that round-off
/// made slightly negative set to zero.
fn psd_sqrt(matrix: &DMatrix<f64>) -> DMatrix<f64> {
    let eigen = SymmetricEigen::new(matrix.clone());
    let roots = eigen.eigenvalues.map(|l| l.max(0.0).sqrt());
    &eigen.eigenvectors * DMatrix::from_diagonal(&roots) * eigen.eigenvectors.transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(mean: &[f64], covariance: &[f64]) -> GaussianStats {
        let dim = mean.len();
        GaussianStats {
            mean: DVector::from_row_slice(mean),
            covariance: DMatrix::from_row_slice(dim, dim, covariance),
        }
    }

    #[test]
    fn one_dimensional_gaussians_have_the_closed_form() {
        // W₂² between N(μ₁, s₁²) and N(μ₂, s₂²) is (μ₁ − μ₂)² + (s₁ − s₂)².
        let d = frechet_distance(&stats(&[1.0], &[4.0]), &stats(&[-2.0], &[9.0])).unwrap();
        assert!((d - (9.0 + 1.0)).abs() < 1e-12, "{d}");
    }

    #[test]
    fn commuting_covariances_compare_their_roots() {
        // Diagonal Σ commute: the distance is Σ_i (√a_i − √b_i)² plus the mean term.
        let a = stats(&[0.0, 0.0], &[4.0, 0.0, 0.0, 1.0]);
        let b = stats(&[0.0, 1.0], &[1.0, 0.0, 0.0, 9.0]);
        let d = frechet_distance(&a, &b).unwrap();
        assert!((d - (1.0 + 1.0 + 4.0)).abs() < 1e-12, "{d}");
        assert!(frechet_distance(&a, &a).unwrap().abs() < 1e-12);
    }

    #[test]
    fn a_rotated_covariance_matches_the_general_formula() {
        // Σ₂ = R Σ₁ Rᵀ for a 45° rotation R; with Σ₁ = diag(4, 1): Tr(Σ₁^½ Σ₂ Σ₁^½)^½ is the
        // sum of the singular values of Σ₁^½ R Σ₁^½ = [[2,0],[0,1]]·R·[[2,0],[0,1]].
        let c = std::f64::consts::FRAC_1_SQRT_2;
        let a = stats(&[0.0, 0.0], &[4.0, 0.0, 0.0, 1.0]);
        let b = stats(&[0.0, 0.0], &[2.5, 1.5, 1.5, 2.5]);
        let product = DMatrix::from_row_slice(2, 2, &[4.0 * c, -2.0 * c, 2.0 * c, c]);
        let singular_sum: f64 = product.singular_values().iter().sum();
        let d = frechet_distance(&a, &b).unwrap();
        assert!((d - (5.0 + 5.0 - 2.0 * singular_sum)).abs() < 1e-10, "{d}");
    }
}
