//! Where on the noise axis each training sample lands, and its loss weight.
//!
//! Uniform t ∈ {0, …, T−1} is DDPM's Algorithm 1. Importance sampling draws t with probability
//! p_t ∝ √E[L_t²] from a history of the last ten L_vlb terms per t, uniformly until every t has
//! ten (Nichol & Dhariwal 2021, Eq. 18), and weighs each sample by 1/(T p_t), so the loss stays an
//! unbiased estimate of the uniform one. Continuous time draws t ~ U(ε, 1) of a score SDE (Song et
//! al. 2021, Eq. 7) and lands at the discrete timestep of the same signal-to-noise ratio.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{DiffuseError, Result};
use crate::process::schedule::NoiseSchedule;
use crate::process::sde::Sde;
use crate::process::sigmas::{schedule_sigmas, sigma_to_t};

/// L_t values remembered per timestep (improved DDPM's `history_per_term`).
const HISTORY_PER_TERM: usize = 10;
/// The share of probability spread uniformly, so no timestep starves (improved DDPM's value).
const UNIFORM_SHARE: f64 = 0.001;
/// Where continuous training time starts (Song et al.'s ε for VP-type SDEs).
const CONTINUOUS_START: f64 = 1e-5;

/// How timesteps are drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum TimestepSampling {
    Uniform,
    /// Importance sampling of L_vlb with its per-timestep history.
    Importance(LossHistory),
    /// Continuous time on this SDE, mapped onto the schedule's timesteps by SNR.
    Continuous(Sde),
}

/// The last [`HISTORY_PER_TERM`] L_vlb values of every timestep, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossHistory {
    terms: Vec<Vec<f64>>,
}

/// Timesteps of one batch with their loss weights.
#[derive(Debug, Clone, PartialEq)]
pub struct DrawnTimesteps {
    /// Training timesteps, fractional in continuous time.
    pub timesteps: Vec<f64>,
    /// 1 for uniform draws; 1/(T p_t) for importance-sampled ones.
    pub weights: Vec<f64>,
}

impl LossHistory {
    pub fn new(num_train_timesteps: usize) -> Self {
        Self {
            terms: vec![Vec::new(); num_train_timesteps],
        }
    }

    /// Whether every timestep has a full history.
    fn is_warm(&self) -> bool {
        self.terms.iter().all(|h| h.len() == HISTORY_PER_TERM)
    }

    /// p_t ∝ √E[L_t²] mixed with a little of the uniform distribution (Eq. 18); uniform until
    /// warm.
    pub fn probabilities(&self) -> Vec<f64> {
        let n = self.terms.len() as f64;
        if !self.is_warm() {
            return vec![1.0 / n; self.terms.len()];
        }
        let root_mean_squares: Vec<f64> = self
            .terms
            .iter()
            .map(|h| (h.iter().map(|l| l * l).sum::<f64>() / h.len() as f64).sqrt())
            .collect();
        let total: f64 = root_mean_squares.iter().sum();
        root_mean_squares
            .iter()
            .map(|r| (1.0 - UNIFORM_SHARE) * r / total + UNIFORM_SHARE / n)
            .collect()
    }

    /// Remembers the L_vlb term of each drawn timestep, dropping the oldest beyond the history.
    pub fn record(&mut self, timesteps: &[usize], terms: &[f64]) -> Result<()> {
        for (&t, &term) in timesteps.iter().zip(terms) {
            let history = self.terms.get_mut(t).ok_or_else(|| {
                DiffuseError::config(format!("timestep {t} is beyond the loss history"))
            })?;
            if history.len() == HISTORY_PER_TERM {
                history.remove(0);
            }
            history.push(term);
        }
        Ok(())
    }
}

/// t ~ U{0, …, T−1}, one per sample (DDPM Algorithm 1, line 3).
pub(crate) fn draw_uniform_timesteps(
    rng: &mut ChaCha8Rng,
    batch: usize,
    num_train_timesteps: usize,
) -> Vec<usize> {
    (0..batch)
        .map(|_| rng.random_range(0..num_train_timesteps))
        .collect()
}

/// One index drawn from the discrete distribution `probabilities` (summing to one).
fn draw_index(rng: &mut ChaCha8Rng, probabilities: &[f64]) -> usize {
    let u: f64 = rng.random();
    let mut cumulative = 0.0;
    for (i, p) in probabilities.iter().enumerate() {
        cumulative += p;
        if u < cumulative {
            return i;
        }
    }
    probabilities.len() - 1
}

impl TimestepSampling {
    /// `batch` timesteps and their weights; all randomness comes from `rng`.
    pub fn draw(
        &self,
        rng: &mut ChaCha8Rng,
        batch: usize,
        schedule: &NoiseSchedule,
    ) -> DrawnTimesteps {
        let steps = schedule.num_train_timesteps();
        match self {
            Self::Uniform => DrawnTimesteps {
                timesteps: draw_uniform_timesteps(rng, batch, steps)
                    .into_iter()
                    .map(|t| t as f64)
                    .collect(),
                weights: vec![1.0; batch],
            },
            Self::Importance(history) => {
                let p = history.probabilities();
                let drawn: Vec<usize> = (0..batch).map(|_| draw_index(rng, &p)).collect();
                DrawnTimesteps {
                    weights: drawn.iter().map(|&t| 1.0 / (steps as f64 * p[t])).collect(),
                    timesteps: drawn.into_iter().map(|t| t as f64).collect(),
                }
            }
            Self::Continuous(sde) => {
                let sigmas = schedule_sigmas(schedule);
                DrawnTimesteps {
                    timesteps: (0..batch)
                        .map(|_| {
                            let t = rng.random_range(CONTINUOUS_START..1.0);
                            let (a, s) = sde.marginal(t);
                            sigma_to_t(s / a, &sigmas)
                        })
                        .collect(),
                    weights: vec![1.0; batch],
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::process::schedule::BetaSchedule;

    fn schedule(steps: usize) -> NoiseSchedule {
        let linear = BetaSchedule::Linear {
            beta_start: 1e-4,
            beta_end: 0.02,
        };
        NoiseSchedule::new(&linear, steps, false).unwrap()
    }

    #[test]
    fn importance_weights_undo_the_sampling_bias() {
        // A warm history whose L_t grows with t: late timesteps are drawn more often, and the
        // weighted mean of any f(t) is the uniform mean.
        let mut history = LossHistory::new(4);
        for _ in 0..HISTORY_PER_TERM {
            history
                .record(&[0, 1, 2, 3], &[1.0, 2.0, 3.0, 4.0])
                .unwrap();
        }
        let p = history.probabilities();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((p[3] / p[0] - (4.0 * 0.999 / 10.0 + 0.00025) / (0.0999 + 0.00025)).abs() < 1e-9);
        let sampling = TimestepSampling::Importance(history);
        let drawn = sampling.draw(&mut ChaCha8Rng::seed_from_u64(0), 200_000, &schedule(4));
        let f = |t: f64| (t + 1.0).powi(2);
        let weighted = drawn
            .timesteps
            .iter()
            .zip(&drawn.weights)
            .map(|(&t, w)| w * f(t))
            .sum::<f64>()
            / drawn.timesteps.len() as f64;
        let uniform = (0..4).map(|t| f(t as f64)).sum::<f64>() / 4.0;
        assert!(
            (weighted - uniform).abs() < 0.02 * uniform,
            "{weighted} vs {uniform}"
        );
        let late = drawn.timesteps.iter().filter(|&&t| t == 3.0).count() as f64;
        assert!(
            (late / 200_000.0 - p[3]).abs() < 0.01,
            "{late} draws of t = 3, p = {}",
            p[3]
        );
    }

    #[test]
    fn the_history_is_uniform_until_warm_and_keeps_the_last_ten() {
        let mut history = LossHistory::new(2);
        history.record(&[0; 12], &[5.0; 12]).unwrap();
        assert_eq!(history.probabilities(), vec![0.5, 0.5]);
        history
            .record(&[1; 10], &(0..10).map(f64::from).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(history.terms[0].len(), HISTORY_PER_TERM);
        assert_ne!(history.probabilities(), vec![0.5, 0.5]);
        assert!(history.record(&[2], &[1.0]).is_err());
    }

    #[test]
    fn continuous_vp_time_lands_on_matching_noise_levels() {
        // VP with β 0.1…20 is the continuum limit of DDPM's linear schedule: t ~ U(ε, 1) lands
        // on timesteps τ ≈ 999 t whose ᾱ equals the SDE's a(t)².
        let s = schedule(1000);
        let sde = Sde::from_name("vp").unwrap();
        let sigmas = schedule_sigmas(&s);
        for t in [0.05, 0.3, 0.6, 0.9] {
            let (a, noise) = sde.marginal(t);
            let tau = sigma_to_t(noise / a, &sigmas);
            let alpha_bar = s.alpha_bar_at(tau);
            assert!(
                (alpha_bar - a * a).abs() < 1e-5 * (1.0 + a * a) / (a * a).max(1e-3),
                "t {t}: ᾱ_τ {alpha_bar}, a² {}",
                a * a
            );
            assert!((tau - 999.0 * t).abs() < 5.0, "t {t} → τ {tau}");
        }
        let drawn =
            TimestepSampling::Continuous(sde).draw(&mut ChaCha8Rng::seed_from_u64(1), 4000, &s);
        let mean = drawn.timesteps.iter().sum::<f64>() / 4000.0;
        assert!((mean - 499.5).abs() < 15.0, "mean timestep {mean}");
        assert!(drawn.timesteps.iter().any(|t| t.fract() != 0.0));
    }
}
