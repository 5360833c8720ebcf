//! Noise schedules {β_1..β_T} of the forward process and the inference timesteps drawn from them.
//!
//! All schedule arithmetic happens on the host in f64. The discrete schedules reproduce diffusers'
//! `DDPMScheduler` (which computes them in f32); `ContinuousSigmoid` is Chen (2023), discretised the
//! same way diffusers discretises the cosine schedule.

use std::str::FromStr;

use crate::error::{DiffuseError, Result};

/// diffusers' cap on β for schedules defined through ᾱ(t) (improved DDPM, §3.2).
pub const MAX_BETA: f64 = 0.999;

/// Which β schedule the forward process uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BetaSchedule {
    /// β linear from `beta_start` to `beta_end` (Ho et al. 2020).
    Linear { beta_start: f64, beta_end: f64 },
    /// √β linear from √`beta_start` to √`beta_end` (latent diffusion).
    ScaledLinear { beta_start: f64, beta_end: f64 },
    /// ᾱ(t) = cos²((t + s)/(1 + s)·π/2), s = 0.008, β capped at 0.999 (improved DDPM, Eq. 17).
    Cosine,
    /// β = sigmoid(x)·(end − start) + start for x linear in [−6, 6] (diffusers' `sigmoid`).
    Sigmoid { beta_start: f64, beta_end: f64 },
    /// ᾱ(t) = (v_end − sigmoid((t(end − start) + start)/τ)) / (v_end − v_start) (Chen 2023, Algorithm 1).
    ContinuousSigmoid { start: f64, end: f64, tau: f64 },
}

/// The schedule names accepted on the command line and in configs.
pub const BETA_SCHEDULE_NAMES: &str =
    "linear, scaled-linear, cosine (squaredcos_cap_v2), sigmoid, continuous-sigmoid";

impl BetaSchedule {
    /// Builds a schedule from its name; `beta_start`/`beta_end` are used by the β-range schedules,
    /// `(start, end, tau)` by `continuous-sigmoid`. diffusers' spellings are accepted too.
    pub fn from_name(
        name: &str,
        beta_start: f64,
        beta_end: f64,
        sigmoid: (f64, f64, f64),
    ) -> Result<Self> {
        let (start, end, tau) = sigmoid;
        match name {
            "linear" => Ok(Self::Linear {
                beta_start,
                beta_end,
            }),
            "scaled-linear" | "scaled_linear" => Ok(Self::ScaledLinear {
                beta_start,
                beta_end,
            }),
            "cosine" | "squaredcos_cap_v2" => Ok(Self::Cosine),
            "sigmoid" => Ok(Self::Sigmoid {
                beta_start,
                beta_end,
            }),
            "continuous-sigmoid" | "continuous_sigmoid" => {
                Ok(Self::ContinuousSigmoid { start, end, tau })
            }
            other => Err(DiffuseError::UnknownName {
                kind: "beta schedule",
                name: other.to_string(),
                expected: BETA_SCHEDULE_NAMES,
            }),
        }
    }

    /// The name diffusers writes in `scheduler_config.json`, where diffusers has this schedule.
    pub fn diffusers_name(&self) -> Option<&'static str> {
        match self {
            Self::Linear { .. } => Some("linear"),
            Self::ScaledLinear { .. } => Some("scaled_linear"),
            Self::Cosine => Some("squaredcos_cap_v2"),
            Self::Sigmoid { .. } => Some("sigmoid"),
            Self::ContinuousSigmoid { .. } => None,
        }
    }

    /// β_1..β_T for `num_train_timesteps` = T steps.
    pub fn betas(&self, num_train_timesteps: usize) -> Result<Vec<f64>> {
        let t = num_train_timesteps;
        if t == 0 {
            return Err(DiffuseError::config(
                "num_train_timesteps must be at least 1 (got 0)",
            ));
        }
        self.validate()?;
        Ok(match *self {
            Self::Linear {
                beta_start,
                beta_end,
            } => linspace(beta_start, beta_end, t),
            Self::ScaledLinear {
                beta_start,
                beta_end,
            } => linspace(beta_start.sqrt(), beta_end.sqrt(), t)
                .into_iter()
                .map(|b| b * b)
                .collect(),
            Self::Cosine => betas_for_alpha_bar(t, cosine_alpha_bar),
            Self::Sigmoid {
                beta_start,
                beta_end,
            } => linspace(-6.0, 6.0, t)
                .into_iter()
                .map(|x| sigmoid(x) * (beta_end - beta_start) + beta_start)
                .collect(),
            Self::ContinuousSigmoid { start, end, tau } => {
                betas_for_alpha_bar(t, |s| chen_sigmoid_alpha_bar(s, start, end, tau))
            }
        })
    }

    fn validate(&self) -> Result<()> {
        match *self {
            Self::Linear {
                beta_start,
                beta_end,
            }
            | Self::ScaledLinear {
                beta_start,
                beta_end,
            }
            | Self::Sigmoid {
                beta_start,
                beta_end,
            } => {
                let valid = |b: f64| b.is_finite() && b > 0.0 && b < 1.0;
                if !valid(beta_start) || !valid(beta_end) {
                    return Err(DiffuseError::config(format!(
                        "beta_start and beta_end must lie in (0, 1) (got {beta_start} and {beta_end})"
                    )));
                }
            }
            Self::Cosine => {}
            Self::ContinuousSigmoid { start, end, tau } => {
                if !(start.is_finite() && end.is_finite() && start < end) {
                    return Err(DiffuseError::config(format!(
                        "continuous-sigmoid needs start < end (got start {start}, end {end})"
                    )));
                }
                if !(tau.is_finite() && tau > 0.0) {
                    return Err(DiffuseError::config(format!(
                        "continuous-sigmoid needs tau > 0 (got {tau})"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// `n` evenly spaced values from `start` to `end` inclusive (torch/numpy `linspace`).
pub(crate) fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    (0..n).map(|i| start + i as f64 * step).collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Improved DDPM, Eq. 17: ᾱ(t) = cos²((t + 0.008)/1.008 · π/2), t ∈ [0, 1].
fn cosine_alpha_bar(t: f64) -> f64 {
    ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
        .cos()
        .powi(2)
}

/// Chen 2023, Algorithm 1 (sigmoid γ(t)), clipped to [1e-9, 1] as in the paper's code.
fn chen_sigmoid_alpha_bar(t: f64, start: f64, end: f64, tau: f64) -> f64 {
    let v_start = sigmoid(start / tau);
    let v_end = sigmoid(end / tau);
    let v = sigmoid((t * (end - start) + start) / tau);
    ((v_end - v) / (v_end - v_start)).clamp(1e-9, 1.0)
}

/// β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), 0.999): a continuous ᾱ(t) discretised (improved DDPM, §3.2).
fn betas_for_alpha_bar(t: usize, alpha_bar: impl Fn(f64) -> f64) -> Vec<f64> {
    (0..t)
        .map(|i| {
            let t1 = i as f64 / t as f64;
            let t2 = (i + 1) as f64 / t as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(MAX_BETA)
        })
        .collect()
}

/// Lin et al. 2023, Algorithm 1: shift and scale √ᾱ so that ᾱ_T = 0 while ᾱ_1 is kept.
pub fn rescale_zero_terminal_snr(betas: &[f64]) -> Vec<f64> {
    let sqrt_alpha_bar: Vec<f64> = cumprod(betas.iter().map(|b| 1.0 - b))
        .into_iter()
        .map(f64::sqrt)
        .collect();
    let (first, last) = (sqrt_alpha_bar[0], sqrt_alpha_bar[sqrt_alpha_bar.len() - 1]);
    let alpha_bar: Vec<f64> = sqrt_alpha_bar
        .iter()
        .map(|s| ((s - last) * first / (first - last)).powi(2))
        .collect();
    std::iter::once(alpha_bar[0])
        .chain(alpha_bar.windows(2).map(|w| w[1] / w[0]))
        .map(|alpha| 1.0 - alpha)
        .collect()
}

fn cumprod(values: impl Iterator<Item = f64>) -> Vec<f64> {
    values
        .scan(1.0, |acc, v| {
            *acc *= v;
            Some(*acc)
        })
        .collect()
}

/// A discrete forward process: β_t and every quantity derived from it, computed once.
///
/// Index `t` runs over 0..T as in diffusers (t = 0 is the first, least noisy step).
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    betas: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    /// σ_t = √((1 − ᾱ_t)/ᾱ_t), the noise level of the k-diffusion/Karras parameterisation.
    sigmas: Vec<f64>,
    log_snr: Vec<f64>,
}

impl NoiseSchedule {
    /// The schedule `kind` over `num_train_timesteps` steps, optionally rescaled to zero terminal SNR.
    pub fn new(
        kind: &BetaSchedule,
        num_train_timesteps: usize,
        rescale_zero_snr: bool,
    ) -> Result<Self> {
        let betas = kind.betas(num_train_timesteps)?;
        if rescale_zero_snr {
            if num_train_timesteps < 2 {
                return Err(DiffuseError::config(
                    "zero-terminal-SNR rescaling needs at least 2 timesteps",
                ));
            }
            Self::from_betas(rescale_zero_terminal_snr(&betas))
        } else {
            Self::from_betas(betas)
        }
    }

    /// A schedule from explicit β values (diffusers' `trained_betas`); each must lie in (0, 1].
    pub fn from_betas(betas: Vec<f64>) -> Result<Self> {
        if betas.is_empty() {
            return Err(DiffuseError::config("a schedule needs at least one beta"));
        }
        if let Some((i, b)) = betas
            .iter()
            .enumerate()
            .find(|(_, b)| !(b.is_finite() && **b > 0.0 && **b <= 1.0))
        {
            return Err(DiffuseError::config(format!(
                "beta[{i}] = {b} lies outside (0, 1]"
            )));
        }
        let alphas_cumprod = cumprod(betas.iter().map(|b| 1.0 - b));
        Ok(Self::derive(betas, alphas_cumprod))
    }

    /// A schedule from explicit ᾱ_t values (decreasing, in [0, 1)); β_t = 1 − ᾱ_t/ᾱ_{t−1}.
    pub fn from_alphas_cumprod(alphas_cumprod: Vec<f64>) -> Result<Self> {
        let valid = !alphas_cumprod.is_empty()
            && alphas_cumprod
                .iter()
                .all(|a| a.is_finite() && (0.0..1.0).contains(a))
            && alphas_cumprod.windows(2).all(|w| w[1] <= w[0]);
        if !valid {
            return Err(DiffuseError::config(
                "alphas_cumprod must be non-empty, non-increasing and within [0, 1)",
            ));
        }
        let betas = std::iter::once(1.0 - alphas_cumprod[0])
            .chain(alphas_cumprod.windows(2).map(|w| 1.0 - w[1] / w[0]))
            .collect();
        Ok(Self::derive(betas, alphas_cumprod))
    }

    fn derive(betas: Vec<f64>, alphas_cumprod: Vec<f64>) -> Self {
        let sigmas = alphas_cumprod
            .iter()
            .map(|a| ((1.0 - a) / a).sqrt())
            .collect();
        let log_snr = alphas_cumprod
            .iter()
            .map(|a| (a / (1.0 - a)).ln())
            .collect();
        Self {
            betas,
            alphas_cumprod,
            sigmas,
            log_snr,
        }
    }

    /// T, the number of training timesteps.
    pub fn num_train_timesteps(&self) -> usize {
        self.betas.len()
    }

    /// β_t for t in 0..T.
    pub fn betas(&self) -> &[f64] {
        &self.betas
    }

    /// ᾱ_t = Π_{s≤t} (1 − β_s) for t in 0..T.
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// ᾱ_t at one timestep.
    pub fn alpha_bar(&self, t: usize) -> f64 {
        self.alphas_cumprod[t]
    }

    /// SNR_t = ᾱ_t / (1 − ᾱ_t).
    pub fn snr(&self, t: usize) -> f64 {
        self.log_snr[t].exp()
    }

    /// log SNR_t = log(ᾱ_t / (1 − ᾱ_t)).
    pub fn log_snr(&self, t: usize) -> f64 {
        self.log_snr[t]
    }

    /// σ_t = √((1 − ᾱ_t)/ᾱ_t) for t in 0..T (k-diffusion's sigmas).
    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }

    /// ᾱ at a fractional timestep: log σ interpolated linearly between neighbouring steps, as
    /// k-diffusion and diffusers map between σ and t. Integer `t` gives ᾱ_t exactly.
    pub fn alpha_bar_at(&self, t: f64) -> f64 {
        let last = self.num_train_timesteps() - 1;
        let t = t.clamp(0.0, last as f64);
        let (low, high) = (t.floor() as usize, t.ceil() as usize);
        if low == high {
            return self.alphas_cumprod[low];
        }
        let w = t - low as f64;
        let log_sigma = (1.0 - w) * self.sigmas[low].ln() + w * self.sigmas[high].ln();
        1.0 / (1.0 + (2.0 * log_sigma).exp())
    }
}

/// How N inference timesteps are picked from the T training steps (Lin et al. 2023, Table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestepSpacing {
    /// 0, T/N, 2T/N, … reversed, plus `steps_offset` (diffusers' default).
    #[default]
    Leading,
    /// T−1, T−1−T/N, … (starts at the last step; needed with zero terminal SNR).
    Trailing,
    /// round(linspace(0, T−1, N)) reversed.
    Linspace,
}

impl FromStr for TimestepSpacing {
    type Err = DiffuseError;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "leading" => Ok(Self::Leading),
            "trailing" => Ok(Self::Trailing),
            "linspace" => Ok(Self::Linspace),
            other => Err(DiffuseError::UnknownName {
                kind: "timestep spacing",
                name: other.to_string(),
                expected: "leading, trailing, linspace",
            }),
        }
    }
}

impl TimestepSpacing {
    /// The name diffusers uses in `scheduler_config.json`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Leading => "leading",
            Self::Trailing => "trailing",
            Self::Linspace => "linspace",
        }
    }
}

/// Checks that N inference steps fit a schedule of T training steps.
pub(crate) fn check_inference_steps(num_train_timesteps: usize, n: usize) -> Result<()> {
    if n == 0 {
        return Err(DiffuseError::config(
            "the number of inference steps must be at least 1",
        ));
    }
    if n > num_train_timesteps {
        return Err(DiffuseError::config(format!(
            "{n} inference steps exceed the {num_train_timesteps} training timesteps of the schedule"
        )));
    }
    Ok(())
}

/// numpy's `arange(start, 0, -step).round()`: its length and increment are computed like this.
pub(crate) fn descending_arange_rounded(start: f64, step: f64) -> Vec<f64> {
    let len = (start / step).ceil() as usize;
    let delta = (start - step) - start;
    (0..len)
        .map(|i| (start + i as f64 * delta).round_ties_even())
        .collect()
}

/// The N inference timesteps, from noisiest to cleanest, exactly as diffusers 0.42's
/// `DDPMScheduler.set_timesteps` / `DDIMScheduler.set_timesteps` compute them.
pub fn inference_timesteps(
    num_train_timesteps: usize,
    num_inference_steps: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
) -> Result<Vec<usize>> {
    let (t, n) = (num_train_timesteps, num_inference_steps);
    check_inference_steps(t, n)?;
    let timesteps: Vec<usize> = match spacing {
        TimestepSpacing::Linspace => linspace(0.0, (t - 1) as f64, n)
            .into_iter()
            .rev()
            .map(|v| v.round_ties_even() as usize)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = t / n;
            (0..n).rev().map(|i| i * ratio + steps_offset).collect()
        }
        TimestepSpacing::Trailing => descending_arange_rounded(t as f64, t as f64 / n as f64)
            .into_iter()
            .map(|v| v as usize - 1)
            .collect(),
    };
    if let Some(&bad) = timesteps.iter().find(|&&ts| ts >= t) {
        return Err(DiffuseError::config(format!(
            "timestep {bad} (after steps_offset {steps_offset}) is beyond the schedule's last step {}",
            t - 1
        )));
    }
    Ok(timesteps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_schedule_endpoints() {
        let betas = BetaSchedule::Linear {
            beta_start: 1e-4,
            beta_end: 0.02,
        }
        .betas(1000)
        .unwrap();
        assert_eq!(betas.len(), 1000);
        assert!((betas[0] - 1e-4).abs() < 1e-15);
        assert!((betas[999] - 0.02).abs() < 1e-15);
    }

    #[test]
    fn zero_snr_rescale_ends_at_zero_and_keeps_first() {
        let kind = BetaSchedule::ScaledLinear {
            beta_start: 0.00085,
            beta_end: 0.012,
        };
        let plain = NoiseSchedule::new(&kind, 1000, false).unwrap();
        let rescaled = NoiseSchedule::new(&kind, 1000, true).unwrap();
        assert!(rescaled.alpha_bar(999).abs() < 1e-12);
        assert!((rescaled.alpha_bar(0) - plain.alpha_bar(0)).abs() < 1e-12);
    }

    #[test]
    fn fractional_alpha_bar_interpolates_between_steps() {
        let s = NoiseSchedule::new(&BetaSchedule::Cosine, 100, false).unwrap();
        assert_eq!(s.alpha_bar_at(10.0), s.alpha_bar(10));
        let mid = s.alpha_bar_at(10.5);
        assert!(mid < s.alpha_bar(10) && mid > s.alpha_bar(11));
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(BetaSchedule::Cosine.betas(0).is_err());
        assert!(inference_timesteps(10, 11, TimestepSpacing::Leading, 0).is_err());
        assert!(inference_timesteps(10, 0, TimestepSpacing::Leading, 0).is_err());
        assert!(inference_timesteps(10, 10, TimestepSpacing::Leading, 1).is_err());
        assert!(BetaSchedule::from_name("quadratic", 1e-4, 0.02, (-3.0, 3.0, 1.0)).is_err());
    }
}
