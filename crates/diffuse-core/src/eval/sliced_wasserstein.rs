//! The sliced Wasserstein distance between two sets of vectors (Rabin et al. 2011; Bonneel et al.
//! 2015): the root mean square over random unit directions θ of the 1-D Wasserstein-2 distance
//! between the projections θᵀx, each computed from sorted projections (quantile functions).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::FeatureSet;
use crate::error::{DiffuseError, Result};

/// Random directions averaged over.
pub const SLICES: usize = 256;

/// SW₂ between the rows of `a` and `b` with [`SLICES`] directions drawn by `seed`. Sets of
/// different sizes are compared through their quantile functions at max(n_a, n_b) levels.
pub fn sliced_wasserstein(a: &FeatureSet, b: &FeatureSet, seed: u64) -> Result<f64> {
    if a.dim() != b.dim() {
        return Err(DiffuseError::config(format!(
            "vector widths differ: {} vs {}",
            a.dim(),
            b.dim()
        )));
    }
    if a.is_empty() || b.is_empty() {
        return Err(DiffuseError::config(
            "the sliced Wasserstein distance needs samples in both sets",
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let levels = a.len().max(b.len());
    let mut total = 0.0;
    for _ in 0..SLICES {
        let direction = random_direction(a.dim(), &mut rng);
        let (pa, pb) = (
            sorted_projections(a, &direction),
            sorted_projections(b, &direction),
        );
        total += (0..levels)
            .map(|i| {
                let level = (i as f64 + 0.5) / levels as f64;
                (quantile(&pa, level) - quantile(&pb, level)).powi(2)
            })
            .sum::<f64>()
            / levels as f64;
    }
    Ok((total / SLICES as f64).sqrt())
}

/// A direction uniform on the unit sphere: a normalised standard normal vector.
fn random_direction(dim: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let v: Vec<f64> = (0..dim).map(|_| StandardNormal.sample(rng)).collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    v.into_iter().map(|x| x / norm).collect()
}

fn sorted_projections(set: &FeatureSet, direction: &[f64]) -> Vec<f64> {
    let mut p: Vec<f64> = (0..set.len())
        .map(|i| set.row(i).iter().zip(direction).map(|(x, d)| x * d).sum())
        .collect();
    p.sort_by(f64::total_cmp);
    p
}

/// The empirical quantile function of sorted values at level u ∈ (0, 1) (a step function).
fn quantile(sorted: &[f64], level: f64) -> f64 {
    sorted[((level * sorted.len() as f64) as usize).min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shift_moves_every_slice_by_its_projection() {
        // Translating by s changes each projection by θᵀs, so SW₂² = E_θ (θᵀs)² = ‖s‖² / d.
        let a = FeatureSet::new(vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0], 2).unwrap();
        let shifted: Vec<f64> = a.values().iter().map(|v| v + 3.0).collect();
        let b = FeatureSet::new(shifted, 2).unwrap();
        let sw = sliced_wasserstein(&a, &b, 7).unwrap();
        // ‖(3, 3)‖² / 2 = 9; 256 slices have a standard error of about 0.4 around it.
        assert!((sw * sw - 9.0).abs() < 1.2, "{sw}");
        assert_eq!(sliced_wasserstein(&a, &a, 7).unwrap(), 0.0);
    }
}
