//! Improved precision and recall (Kynkäänniemi et al. 2019, §2): each set's manifold is the union
//! of balls around its points reaching their k-th nearest neighbour; precision is the fraction of
//! generated samples inside the real manifold, recall the fraction of real samples inside the
//! generated one.

use nalgebra::DMatrix;

use super::{FeatureSet, squared_distances};
use crate::error::{DiffuseError, Result};

/// k of the k-NN radii; the paper's default.
pub const NEIGHBOURHOOD: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrecisionRecall {
    pub precision: f64,
    pub recall: f64,
}

/// A set's k-NN manifold (Eq. 1 of the paper): its points and the squared distance from each to
/// its k-th nearest neighbour. Built once, it serves any number of sets compared with it.
#[derive(Debug, Clone)]
pub struct KnnManifold {
    points: DMatrix<f64>,
    radii: Vec<f64>,
}

impl KnnManifold {
    pub fn new(set: &FeatureSet) -> Result<Self> {
        if set.len() <= NEIGHBOURHOOD {
            return Err(DiffuseError::config(format!(
                "precision and recall need more than {NEIGHBOURHOOD} samples in each set (got {})",
                set.len()
            )));
        }
        let points = set.matrix();
        let radii = kth_neighbour_distances2(&points);
        Ok(Self { points, radii })
    }

    /// The fraction of the rows of `queries` inside the manifold.
    fn coverage(&self, queries: &DMatrix<f64>) -> f64 {
        let mut inside = 0;
        for start in (0..queries.nrows()).step_by(BLOCK) {
            let rows = BLOCK.min(queries.nrows() - start);
            let distances =
                squared_distances(&queries.rows(start, rows).into_owned(), &self.points);
            inside += distances
                .row_iter()
                .filter(|row| row.iter().zip(&self.radii).any(|(d, r)| d <= r))
                .count();
        }
        inside as f64 / queries.nrows() as f64
    }
}

/// Precision and recall of `generated` against `real` with k = 3.
pub fn precision_recall(real: &FeatureSet, generated: &FeatureSet) -> Result<PrecisionRecall> {
    precision_recall_against(&KnnManifold::new(real)?, generated)
}

/// [`precision_recall`] against a real manifold built beforehand.
pub fn precision_recall_against(
    real: &KnnManifold,
    generated: &FeatureSet,
) -> Result<PrecisionRecall> {
    if real.points.ncols() != generated.dim() {
        return Err(DiffuseError::config(format!(
            "feature widths differ: {} vs {}",
            real.points.ncols(),
            generated.dim()
        )));
    }
    let generated_manifold = KnnManifold::new(generated)?;
    Ok(PrecisionRecall {
        precision: real.coverage(&generated_manifold.points),
        recall: generated_manifold.coverage(&real.points),
    })
}

/// Rows per block of the distance matrices, which bounds their memory to BLOCK × N values.
const BLOCK: usize = 1024;

/// Squared distance from each row to its k-th nearest row of the same set, itself not counted
/// (the k-th entry after the zeroth, itself, in each sorted row of distances).
fn kth_neighbour_distances2(set: &DMatrix<f64>) -> Vec<f64> {
    let mut radii = Vec::with_capacity(set.nrows());
    for start in (0..set.nrows()).step_by(BLOCK) {
        let rows = BLOCK.min(set.nrows() - start);
        let distances = squared_distances(&set.rows(start, rows).into_owned(), set);
        for (offset, row) in distances.row_iter().enumerate() {
            let mut others: Vec<f64> = row
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != start + offset)
                .map(|(_, &d)| d)
                .collect();
            let (_, kth, _) = others.select_nth_unstable_by(NEIGHBOURHOOD - 1, f64::total_cmp);
            radii.push(*kth);
        }
    }
    radii
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radii_and_coverage_on_a_line() {
        // Real points 0, 1, 2, 3, 10: 3rd-neighbour distances 3, 2, 2, 3, 9.
        let real = FeatureSet::new(vec![0.0, 1.0, 2.0, 3.0, 10.0], 1).unwrap();
        let radii = kth_neighbour_distances2(&real.matrix());
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
