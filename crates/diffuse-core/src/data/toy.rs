//! 2-D toy sets.
//!
//! The classic low-dimensional targets of diffusion and flow papers, each scaled to roughly
//! zero mean and unit spread so that one noise schedule suits them all. The draw depends only
//! on the seed (ChaCha8), so runs and plots are reproducible.

use std::f32::consts::PI;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::{DataKind, Dataset};
use crate::error::{DiffuseError, Result};
use crate::gmm::{GaussianMixture, MixtureSpec};

/// The toy distributions, named on the command line as `toy:NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToySet {
    /// Two interleaved half circles (sklearn's `make_moons`, noise 0.05), recentred.
    Moons,
    /// A 2-D spiral (sklearn's `make_swiss_roll` projected to its x/z plane), scaled by 1/5.
    SwissRoll,
    /// Eight Gaussians of std 0.1 on a circle of radius 2.
    EightGaussians,
    /// Uniform on the 8 "on" squares of a 4×4 checkerboard over [-2, 2]² (as in FFJORD).
    Checkerboard,
}

impl ToySet {
    /// The names `FromStr` accepts, for help and error messages.
    pub const NAMES: &'static str = "moons, swiss-roll, 8gaussians, checkerboard";

    /// Draws `n` points; the same `(n, seed)` always gives the same points.
    pub fn sample(self, n: usize, seed: u64) -> Result<Dataset> {
        if n == 0 {
            return Err(DiffuseError::config(
                "a toy data set needs at least one sample",
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let draw: fn(&mut ChaCha8Rng) -> [f32; 2] = match self {
            Self::Moons => moon_point,
            Self::SwissRoll => swiss_roll_point,
            Self::EightGaussians => eight_gaussians_point,
            Self::Checkerboard => checkerboard_point,
        };
        let values = (0..n).flat_map(|_| draw(&mut rng)).collect();
        Dataset::new([2, 1, 1], values, None, Vec::new(), DataKind::Vectors)
    }
}

impl FromStr for ToySet {
    type Err = DiffuseError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "moons" => Ok(Self::Moons),
            "swiss-roll" | "swissroll" => Ok(Self::SwissRoll),
            "8gaussians" | "eight-gaussians" => Ok(Self::EightGaussians),
            "checkerboard" => Ok(Self::Checkerboard),
            other => Err(DiffuseError::UnknownName {
                kind: "toy set",
                name: other.into(),
                expected: Self::NAMES,
            }),
        }
    }
}

/// One draw of N(0, std²).
fn normal(rng: &mut ChaCha8Rng, std: f32) -> f32 {
    std * rng.sample::<f32, _>(StandardNormal)
}

/// sklearn's moons, with the arc position drawn uniformly (instead of sklearn's evenly spaced
/// points) so every point is an independent draw. The raw set spans x ∈ [-1, 2],
/// y ∈ [-0.5, 1] with mean (0.5, 0.25); it is returned as `(x - 0.5, 2 (y - 0.25))`, which
/// centres it and gives both axes the range [-1.5, 1.5].
fn moon_point(rng: &mut ChaCha8Rng) -> [f32; 2] {
    let t = rng.random_range(0.0..=PI);
    let (x, y) = if rng.random_bool(0.5) {
        (t.cos(), t.sin())
    } else {
        (1.0 - t.cos(), 0.5 - t.sin())
    };
    let x = x + normal(rng, 0.05);
    let y = y + normal(rng, 0.05);
    [x - 0.5, 2.0 * (y - 0.25)]
}

/// The swiss roll of the diffusion toy examples: t = 1.5π(1 + 2u), u ~ U[0, 1), the point
/// (t cos t, t sin t) / 5, so radii run from about 0.94 to 2.83. The noise, N(0, 0.05²) per
/// axis after scaling, is thinner than FFJORD's (std 0.2) so the turns stay clearly apart.
fn swiss_roll_point(rng: &mut ChaCha8Rng) -> [f32; 2] {
    let t = 1.5 * PI * (1.0 + 2.0 * rng.random::<f32>());
    [
        t * t.cos() / 5.0 + normal(rng, 0.05),
        t * t.sin() / 5.0 + normal(rng, 0.05),
    ]
}

/// The density of 8gaussians as a mixture: eight equally likely centres 2·(cos kπ/4,
/// sin kπ/4), each N(centre, 0.1² I); the other sets have no closed-form mixture.
pub fn known_mixture(set: ToySet) -> Option<GaussianMixture> {
    if set != ToySet::EightGaussians {
        return None;
    }
    let means = (0..8)
        .map(|k| {
            let angle = k as f64 * std::f64::consts::PI / 4.0;
            vec![2.0 * angle.cos(), 2.0 * angle.sin()]
        })
        .collect();
    let spec = MixtureSpec {
        weights: vec![1.0; 8],
        means,
        stds: vec![vec![0.1, 0.1]; 8],
    };
    Some(GaussianMixture::new(spec).expect("the 8gaussians mixture is valid"))
}

/// One of eight centres 2·(cos kπ/4, sin kπ/4), chosen uniformly, plus N(0, 0.1²) per axis.
fn eight_gaussians_point(rng: &mut ChaCha8Rng) -> [f32; 2] {
    let angle = rng.random_range(0..8u8) as f32 * PI / 4.0;
    [
        2.0 * angle.cos() + normal(rng, 0.1),
        2.0 * angle.sin() + normal(rng, 0.1),
    ]
}

/// FFJORD's checkerboard without its final ×2: x ~ U[-2, 2), then y uniform over one of the
/// two unit squares of that column whose `floor(x) + floor(y)` is even. `random_range` keeps
/// y strictly inside its square (adding a [0, 1) draw could round up onto the next one).
fn checkerboard_point(rng: &mut ChaCha8Rng) -> [f32; 2] {
    let x = rng.random_range(-2.0f32..2.0);
    let lower = if rng.random_bool(0.5) { -2.0 } else { 0.0 };
    let row = lower + x.floor().rem_euclid(2.0);
    [x, rng.random_range(row..row + 1.0)]
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ToySet; 4] = [
        ToySet::Moons,
        ToySet::SwissRoll,
        ToySet::EightGaussians,
        ToySet::Checkerboard,
    ];

    fn points(set: ToySet, n: usize) -> Vec<[f32; 2]> {
        let data = set.sample(n, 7).expect("n > 0");
        data.values.chunks_exact(2).map(|p| [p[0], p[1]]).collect()
    }

    fn mean(points: &[[f32; 2]]) -> [f32; 2] {
        let n = points.len() as f32;
        let sum = points
            .iter()
            .fold([0.0, 0.0], |s, p| [s[0] + p[0], s[1] + p[1]]);
        [sum[0] / n, sum[1] / n]
    }

    #[test]
    fn same_seed_same_points_other_seed_other_points() {
        for set in ALL {
            let a = set.sample(100, 1).expect("n > 0");
            let b = set.sample(100, 1).expect("n > 0");
            let c = set.sample(100, 2).expect("n > 0");
            assert_eq!(a.values, b.values, "{set:?}");
            assert_ne!(a.values, c.values, "{set:?}");
            assert_eq!(a.sample_shape, [2, 1, 1]);
            assert_eq!(a.len(), 100);
            assert_eq!(a.kind, DataKind::Vectors);
            assert_eq!(a.labels, None);
        }
    }

    #[test]
    fn zero_samples_is_an_error() {
        assert!(ToySet::Moons.sample(0, 0).is_err());
    }

    #[test]
    fn sets_are_roughly_centred() {
        for set in [ToySet::Moons, ToySet::EightGaussians, ToySet::Checkerboard] {
            let [mx, my] = mean(&points(set, 20_000));
            assert!(
                mx.abs() < 0.05 && my.abs() < 0.05,
                "{set:?}: mean ({mx}, {my})"
            );
        }
    }

    #[test]
    fn moons_lie_on_their_arcs() {
        let pts = points(ToySet::Moons, 5_000);
        let mut upper = 0;
        for &[x, y] in &pts {
            // Undo the recentring, then measure the radial distance to each circle.
            let (x, y) = (x + 0.5, y / 2.0 + 0.25);
            let outer = (x.hypot(y) - 1.0).abs();
            let inner = ((x - 1.0).hypot(y - 0.5) - 1.0).abs();
            assert!(outer.min(inner) < 0.3, "({x}, {y}) is off both moons");
            upper += usize::from(outer < inner);
        }
        assert!(
            (2_200..2_800).contains(&upper),
            "{upper} of 5000 on the upper moon"
        );
    }

    #[test]
    fn swiss_roll_points_lie_near_the_spiral() {
        let curve: Vec<[f32; 2]> = (0..=4_000)
            .map(|i| {
                let t = 1.5 * PI * (1.0 + 2.0 * i as f32 / 4_000.0);
                [t * t.cos() / 5.0, t * t.sin() / 5.0]
            })
            .collect();
        for [x, y] in points(ToySet::SwissRoll, 1_000) {
            let nearest = curve
                .iter()
                .map(|c| (c[0] - x).hypot(c[1] - y))
                .fold(f32::MAX, f32::min);
            assert!(nearest < 0.3, "({x}, {y}) is {nearest} from the spiral");
        }
    }

    #[test]
    fn eight_gaussians_sit_on_radius_two_in_eight_clusters() {
        let mut counts = [0usize; 8];
        for [x, y] in points(ToySet::EightGaussians, 8_000) {
            assert!((x.hypot(y) - 2.0).abs() < 0.5, "({x}, {y})");
            let k = (y.atan2(x) / (PI / 4.0)).round().rem_euclid(8.0) as usize;
            counts[k] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1_200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn checkerboard_points_are_on_the_on_squares() {
        let mut squares = std::collections::HashSet::new();
        for [x, y] in points(ToySet::Checkerboard, 4_000) {
            assert!(
                (-2.0..2.0).contains(&x) && (-2.0..2.0).contains(&y),
                "({x}, {y})"
            );
            let (i, j) = (x.floor() as i32, y.floor() as i32);
            assert_eq!((i + j).rem_euclid(2), 0, "({x}, {y}) is on an off square");
            squares.insert((i, j));
        }
        assert_eq!(squares.len(), 8);
    }

    #[test]
    fn parses_names_and_aliases() {
        assert_eq!(
            "8gaussians".parse::<ToySet>().ok(),
            Some(ToySet::EightGaussians)
        );
        assert_eq!(
            "eight-gaussians".parse::<ToySet>().ok(),
            Some(ToySet::EightGaussians)
        );
        assert_eq!("swissroll".parse::<ToySet>().ok(), Some(ToySet::SwissRoll));
        assert_eq!("swiss-roll".parse::<ToySet>().ok(), Some(ToySet::SwissRoll));
        assert_eq!("moons".parse::<ToySet>().ok(), Some(ToySet::Moons));
        assert_eq!(
            "checkerboard".parse::<ToySet>().ok(),
            Some(ToySet::Checkerboard)
        );
        assert!("spirals".parse::<ToySet>().is_err());
    }

    #[test]
    fn the_8gaussians_mixture_matches_its_sampler() {
        let mixture = known_mixture(ToySet::EightGaussians).unwrap();
        let data = ToySet::EightGaussians.sample(4000, 3).unwrap();
        // E[log p(x)] under the true density is −H = log 8 − log(2π·0.01) − 1 per 2-D point
        // minus log 8 for the choice of centre: −(log 8 + log(2π·0.01) + 1).
        let mean_log_p = data
            .values
            .chunks(2)
            .map(|p| mixture.log_density(&[f64::from(p[0]), f64::from(p[1])]))
            .sum::<f64>()
            / 4000.0;
        let entropy = 8f64.ln() + (2.0 * std::f64::consts::PI * 0.01).ln() + 1.0;
        assert!(
            (mean_log_p + entropy).abs() < 0.05,
            "{mean_log_p} vs {}",
            -entropy
        );
        assert!(known_mixture(ToySet::Moons).is_none());
    }
}
