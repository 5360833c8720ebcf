//! Where along the noise levels a sampler evaluates the model: each diffusers scheduler family
//! picks its timesteps a little differently, and the σ-based ones interpolate σ between them.
//!
//! σ here is the k-diffusion noise level σ_t = √((1 − ᾱ_t)/ᾱ_t) of x_t/√ᾱ_t.

use crate::error::{DiffuseError, Result};
use crate::process::schedule::{
    NoiseSchedule, TimestepSpacing, check_inference_steps, descending_arange_rounded,
    inference_timesteps, linspace,
};
use crate::process::sigmas::{interpolate_sigma, schedule_sigmas, sigma_to_t};

/// Karras et al. 2022 (EDM), Eq. 5 with ρ = 7: σ_i = (σ_max^{1/ρ} + i/(N−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ.
pub fn karras_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    const RHO: f64 = 7.0;
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / RHO), sigma_max.powf(1.0 / RHO));
    linspace(0.0, 1.0, n)
        .into_iter()
        .map(|ramp| (max_inv + ramp * (min_inv - max_inv)).powf(RHO))
        .collect()
}

/// Timesteps of the multistep solvers (diffusers' `DPMSolverMultistepScheduler` and
/// `UniPCMultistepScheduler`): N + 1 points are spaced and the last dropped, so the solver ends
/// at σ = 0 instead of at timestep 0. `last_timestep` is T, or lower when λ is clipped.
pub fn solver_timesteps(
    num_train_timesteps: usize,
    last_timestep: usize,
    n: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
) -> Result<Vec<f64>> {
    check_inference_steps(num_train_timesteps, n)?;
    let timesteps: Vec<f64> = match spacing {
        TimestepSpacing::Linspace => linspace(0.0, last_timestep as f64 - 1.0, n + 1)
            .into_iter()
            .rev()
            .take(n)
            .map(f64::round_ties_even)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = last_timestep / (n + 1);
            (1..=n)
                .rev()
                .map(|i| (i * ratio + steps_offset) as f64)
                .collect()
        }
        TimestepSpacing::Trailing => {
            descending_arange_rounded(last_timestep as f64, num_train_timesteps as f64 / n as f64)
                .into_iter()
                .map(|t| t - 1.0)
                .collect()
        }
    };
    check_in_range(&timesteps, num_train_timesteps)?;
    Ok(timesteps)
}

/// Timesteps of the σ-based samplers (diffusers' Euler, Euler ancestral and Heun schedulers):
/// DDIM's, except that linspace spacing is not rounded (and is built in float32, as diffusers does).
pub fn sigma_sampler_timesteps(
    num_train_timesteps: usize,
    n: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
) -> Result<Vec<f64>> {
    match spacing {
        TimestepSpacing::Linspace => {
            check_inference_steps(num_train_timesteps, n)?;
            Ok(linspace(0.0, (num_train_timesteps - 1) as f64, n)
                .into_iter()
                .rev()
                .map(|v| v as f32 as f64)
                .collect())
        }
        _ => Ok(
            inference_timesteps(num_train_timesteps, n, spacing, steps_offset)?
                .into_iter()
                .map(|t| t as f64)
                .collect(),
        ),
    }
}

fn check_in_range(timesteps: &[f64], num_train_timesteps: usize) -> Result<()> {
    match timesteps
        .iter()
        .find(|&&t| t < 0.0 || t > (num_train_timesteps - 1) as f64)
    {
        Some(bad) => Err(DiffuseError::config(format!(
            "timestep {bad} (after steps_offset) is outside the schedule's steps 0..{}",
            num_train_timesteps - 1
        ))),
        None => Ok(()),
    }
}

/// Where a σ grid ends after the last step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FinalSigma {
    /// σ = 0: the last step returns x̂_0 (diffusers' default).
    #[default]
    Zero,
    /// σ = σ_0 of the training schedule.
    SigmaMin,
}

impl FinalSigma {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "zero" => Ok(Self::Zero),
            "sigma_min" => Ok(Self::SigmaMin),
            other => Err(DiffuseError::UnknownName {
                kind: "final sigma type",
                name: other.to_string(),
                expected: "zero, sigma_min",
            }),
        }
    }

    fn value(&self, schedule_sigmas: &[f64]) -> f64 {
        match self {
            Self::Zero => 0.0,
            Self::SigmaMin => schedule_sigmas[0],
        }
    }
}

/// How a σ grid is laid over the chosen timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SigmaSpacing {
    /// Replace the σ of the timesteps by Karras et al.'s ρ = 7 spacing between the same ends.
    pub karras: bool,
    /// Override the ends of the Karras spacing (diffusers' `sigma_min` / `sigma_max`).
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    pub final_sigma: FinalSigma,
}

/// The evaluation timesteps and the σ grid (one σ per timestep plus the final one).
#[derive(Debug, Clone, PartialEq)]
pub struct SigmaGrid {
    pub timesteps: Vec<f64>,
    pub sigmas: Vec<f64>,
}

/// The σ grid of the multistep solvers: σ at the timesteps, or a Karras spacing from σ_{T−1} to
/// σ_0 whose timesteps are mapped back to integers: rounded when `round_karras`, else truncated
/// (diffusers skips the rounding for the cosine schedule in DPM-Solver, then casts to int64).
pub fn solver_grid(
    schedule: &NoiseSchedule,
    timesteps: Vec<f64>,
    spacing: &SigmaSpacing,
    round_karras: bool,
) -> SigmaGrid {
    let all = schedule_sigmas(schedule);
    let n = timesteps.len();
    let (timesteps, mut sigmas) = if spacing.karras {
        let sigma_min = spacing.sigma_min.unwrap_or(all[0]);
        let sigma_max = spacing.sigma_max.unwrap_or(all[all.len() - 1]);
        let sigmas = karras_sigmas(sigma_min, sigma_max, n);
        let timesteps = sigmas
            .iter()
            .map(|&s| {
                let t = sigma_to_t(s, &all);
                if round_karras {
                    t.round_ties_even()
                } else {
                    t.trunc()
                }
            })
            .collect();
        (timesteps, sigmas)
    } else {
        let sigmas = timesteps
            .iter()
            .map(|&t| interpolate_sigma(t, &all))
            .collect();
        (timesteps, sigmas)
    };
    sigmas.push(spacing.final_sigma.value(&all));
    SigmaGrid { timesteps, sigmas }
}

/// The σ grid of the Euler/Heun samplers: σ interpolated at the timesteps, or a Karras spacing
/// between the first and last of those σ, with fractional timesteps mapped back.
pub fn sigma_sampler_grid(
    schedule: &NoiseSchedule,
    timesteps: Vec<f64>,
    spacing: &SigmaSpacing,
) -> SigmaGrid {
    let all = schedule_sigmas(schedule);
    let interpolated: Vec<f64> = timesteps
        .iter()
        .map(|&t| interpolate_sigma(t, &all))
        .collect();
    let (timesteps, mut sigmas) = if spacing.karras {
        let n = interpolated.len();
        let sigma_min = spacing.sigma_min.unwrap_or(interpolated[n - 1]);
        let sigma_max = spacing.sigma_max.unwrap_or(interpolated[0]);
        let sigmas = karras_sigmas(sigma_min, sigma_max, n);
        let timesteps = sigmas.iter().map(|&s| sigma_to_t(s, &all)).collect();
        (timesteps, sigmas)
    } else {
        (timesteps, interpolated)
    };
    sigmas.push(spacing.final_sigma.value(&all));
    SigmaGrid { timesteps, sigmas }
}

/// Heun evaluates every inner σ twice (EDM Algorithm 2): σ_0, σ_1, σ_1, …, σ_{N−1}, σ_{N−1}, 0.
pub fn heun_grid(grid: SigmaGrid) -> SigmaGrid {
    let SigmaGrid { timesteps, sigmas } = grid;
    let n = timesteps.len();
    let doubled_t = std::iter::once(timesteps[0])
        .chain(timesteps[1..].iter().flat_map(|&t| [t, t]))
        .collect();
    let doubled_s = std::iter::once(sigmas[0])
        .chain(sigmas[1..n].iter().flat_map(|&s| [s, s]))
        .chain(std::iter::once(sigmas[n]))
        .collect();
    SigmaGrid {
        timesteps: doubled_t,
        sigmas: doubled_s,
    }
}

/// diffusers' `init_noise_sigma` of the σ-based samplers: x_T = σ_max z for linspace and trailing
/// spacing, √(σ_max² + 1) z for leading.
pub fn sigma_init_noise(sigmas: &[f64], spacing: TimestepSpacing) -> f64 {
    let max = sigmas.iter().cloned().fold(0.0, f64::max);
    match spacing {
        TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
        TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
    }
}

/// (α_t, σ_t) of the variance-preserving x_t = α_t x_0 + σ_t ε at k-diffusion noise level σ.
pub fn vp_alpha_sigma(sigma: f64) -> (f64, f64) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// λ = log(α_t/σ_t), half the log-SNR (DPM-Solver's time variable); +∞ at σ = 0.
pub fn half_log_snr(sigma: f64) -> f64 {
    let (alpha, sigma_t) = vp_alpha_sigma(sigma);
    alpha.ln() - sigma_t.ln()
}

/// The last timestep the solvers start from when λ is clipped below at `lambda_min`
/// (DPM-Solver's `lambda_min_clipped`, for the cosine schedule): T minus the steps below it.
pub fn clipped_last_timestep(schedule: &NoiseSchedule, lambda_min: f64) -> usize {
    let below = schedule
        .alphas_cumprod()
        .iter()
        .filter(|&&a| 0.5 * (a / (1.0 - a)).ln() < lambda_min)
        .count();
    schedule.num_train_timesteps() - below
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn karras_spacing_hits_both_ends() {
        let s = karras_sigmas(0.002, 80.0, 10);
        assert!((s[0] - 80.0).abs() < 1e-9 && (s[9] - 0.002).abs() < 1e-12);
        assert!(s.windows(2).all(|w| w[1] < w[0]));
    }
}
