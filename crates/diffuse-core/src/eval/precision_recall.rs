//! Improved precision and recall (Kynkäänniemi et al. 2019, §2): each set's manifold is the union
//! of balls around its points reaching their k-th nearest neighbour; precision is the fraction of
//! generated samples inside the real manifold, recall the fraction of real samples inside the
//! generated one.

use super::FeatureSet;
use crate::error::{DiffuseError, Result};

/// k of the k-NN radii; the paper's default.
pub const NEIGHBOURHOOD: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrecisionRecall {
    pub precision: f64,
    pub recall: f64,
}

/// Precision and recall of `generated` against `real` with k = 3.
pub fn precision_recall(real: &FeatureSet, generated: &FeatureSet) -> Result<PrecisionRecall> {
    if real.dim() != generated.dim() {
        return Err(DiffuseError::config(format!(
            "feature widths differ: {} vs {}",
            real.dim(),
            generated.dim()
        )));
    }
    if real.len() <= NEIGHBOURHOOD || generated.len() <= NEIGHBOURHOOD {
        return Err(DiffuseError::config(format!(
            "precision and recall need more than {NEIGHBOURHOOD} samples in each set (got {} \
             real, {} generated)",
            real.len(),
            generated.len()
        )));
    }
    Ok(PrecisionRecall {
        precision: coverage(real, generated),
        recall: coverage(generated, real),
    })
}

/// The fraction of `queries` inside the k-NN manifold of `support` (Eq. 1 of the paper).
fn coverage(support: &FeatureSet, queries: &FeatureSet) -> f64 {
    let radii: Vec<f64> = (0..support.len())
        .map(|i| kth_neighbour_distance2(support, i))
        .collect();
    let inside = (0..queries.len())
        .filter(|&q| {
            (0..support.len()).any(|i| squared_distance(queries.row(q), support.row(i)) <= radii[i])
        })
        .count();
    inside as f64 / queries.len() as f64
}

/// Squared distance from row i to its k-th nearest other row of the same set.
fn kth_neighbour_distance2(set: &FeatureSet, i: usize) -> f64 {
    let mut nearest = [f64::INFINITY; NEIGHBOURHOOD];
    for j in (0..set.len()).filter(|&j| j != i) {
        let d = squared_distance(set.row(i), set.row(j));
        if d < nearest[NEIGHBOURHOOD - 1] {
            let at = nearest.partition_point(|&n| n <= d);
            nearest.copy_within(at..NEIGHBOURHOOD - 1, at + 1);
            nearest[at] = d;
        }
    }
    nearest[NEIGHBOURHOOD - 1]
}

pub(super) fn squared_distance(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| (a - b).powi(2)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radii_and_coverage_on_a_line() {
        // Real points 0, 1, 2, 3, 10: 3rd-neighbour distances 3, 2, 2, 3, 9.
        let real = FeatureSet::new(vec![0.0, 1.0, 2.0, 3.0, 10.0], 1).unwrap();
        let radii: Vec<f64> = (0..5).map(|i| kth_neighbour_distance2(&real, i)).collect();
        assert_eq!(radii, [9.0, 4.0, 4.0, 9.0, 81.0]);
        // Generated at 4 (inside), 25 (outside every ball: 10 + 9 = 19), −3 (edge of 0's ball)
        // and 100.
        let generated = FeatureSet::new(vec![4.0, 25.0, -3.0, 100.0], 1).unwrap();
        let pr = precision_recall(&real, &generated).unwrap();
        assert_eq!(pr.precision, 0.5);
        // The generated point 4 has its third neighbour at 100, so its ball holds every real one.
        assert_eq!(pr.recall, 1.0);
    }
}
