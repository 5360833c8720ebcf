//! The learning-rate schedule: a linear warm-up to the peak, then constant or half a cosine to
//! zero, as diffusers' `get_scheduler` (transformers' `get_*_schedule_with_warmup`) steps it: the
//! 0-based step s of a warm-up of W steps runs at peak · s/W, so the first step's rate is 0. The
//! denoiser anneals from the end of its warm-up to its last step; the classifier anneals over its
//! whole run, by steps or by time, whichever is further along.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the learning rate moves after the warm-up (`--lr-schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrDecay {
    Constant,
    /// Half a cosine from the peak to zero at the last step.
    Cosine,
}

/// What the learning rate does once warmed up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Annealing {
    /// Stays at the peak.
    Constant,
    /// Half a cosine from the peak at the end of the warm-up to zero at step `total`.
    CosineAfterWarmup { total: usize },
    /// Half a cosine over the run's progress counted from step 0: the larger of the fraction of
    /// `steps` done and the fraction of `time_budget` spent (0 for a limit not given), so that a
    /// run cut short by its time budget still anneals to zero.
    CosineOverRun {
        steps: Option<usize>,
        time_budget: Option<Duration>,
    },
}

/// Linear warm-up from 0 to `peak` over `warmup` steps, then `annealing`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub peak: f64,
    pub warmup: usize,
    pub annealing: Annealing,
}

impl LrSchedule {
    /// The rate of the 0-based step `step`, taken `elapsed` into the run.
    pub fn rate(&self, step: usize, elapsed: Duration) -> f64 {
        if step < self.warmup {
            return self.peak * step as f64 / self.warmup as f64;
        }
        match self.annealing {
            Annealing::Constant => self.peak,
            Annealing::CosineAfterWarmup { total } => {
                let span = total.saturating_sub(self.warmup).max(1) as f64;
                self.half_cosine((step - self.warmup) as f64 / span)
            }
            Annealing::CosineOverRun { steps, time_budget } => {
                let time_fraction =
                    time_budget.map_or(0.0, |b| elapsed.as_secs_f64() / b.as_secs_f64());
                let step_fraction = steps.map_or(0.0, |total| step as f64 / total as f64);
                self.half_cosine(step_fraction.max(time_fraction))
            }
        }
    }

    /// From the peak at `progress` 0 to zero at 1 and after.
    fn half_cosine(&self, progress: f64) -> f64 {
        self.peak * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after_warmup(peak: f64, warmup: usize, annealing: Annealing) -> LrSchedule {
        LrSchedule {
            peak,
            warmup,
            annealing,
        }
    }

    #[test]
    fn warmup_rises_linearly_and_cosine_reaches_zero() {
        let cosine = after_warmup(1.0, 4, Annealing::CosineAfterWarmup { total: 14 });
        let lr = |s| cosine.rate(s, Duration::ZERO);
        assert_eq!(lr(0), 0.0);
        assert_eq!(lr(1), 0.25);
        assert_eq!(lr(3), 0.75);
        assert_eq!(lr(4), 1.0);
        assert!((lr(9) - 0.5).abs() < 1e-12);
        assert!(lr(14).abs() < 1e-12);
        let constant = after_warmup(2.0, 4, Annealing::Constant);
        assert_eq!(constant.rate(100, Duration::ZERO), 2.0);
    }

    #[test]
    fn the_learning_rate_warms_up_then_anneals_with_progress() {
        // A 10 s budget: the progress is the time fraction.
        let by_time = after_warmup(
            1.0,
            4,
            Annealing::CosineOverRun {
                steps: None,
                time_budget: Some(Duration::from_secs(10)),
            },
        );
        let lr = |step, seconds| by_time.rate(step, Duration::from_secs(seconds));
        assert_eq!(lr(1, 0), 0.25);
        assert_eq!(lr(4, 0), 1.0);
        assert!((lr(10, 5) - 0.5).abs() < 1e-12);
        assert!(lr(10, 15).abs() < 1e-12);
        // With a step count too, whichever fraction is further along sets the progress.
        let both = Annealing::CosineOverRun {
            steps: Some(20),
            time_budget: Some(Duration::from_secs(10)),
        };
        let both = after_warmup(1.0, 4, both);
        assert!((both.rate(10, Duration::ZERO) - 0.5).abs() < 1e-12);
        assert!(both.rate(10, Duration::from_secs(10)).abs() < 1e-12);
    }
}
