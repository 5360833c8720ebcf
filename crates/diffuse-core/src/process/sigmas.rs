//! The schedule seen in k-diffusion's noise levels: σ_t = √((1 − ᾱ_t)/ᾱ_t) of x_t/√ᾱ_t at every
//! training timestep, and the fractional timestep of a given σ, as diffusers computes them.

use super::schedule::NoiseSchedule;

/// The smallest ᾱ the σ-based samplers accept: at ᾱ_T = 0 (zero terminal SNR) σ would be
/// infinite, so diffusers' Euler scheduler substitutes 2⁻²⁴ and so do we.
const MIN_ALPHA_BAR: f64 = 1.0 / 16_777_216.0;

/// The fractional training timestep whose σ is `sigma`: log σ interpolated linearly between the
/// neighbouring steps (diffusers' `_sigma_to_t`), the inverse of [`NoiseSchedule::alpha_bar_at`].
pub fn sigma_to_t(sigma: f64, schedule_sigmas: &[f64]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    // diffusers takes these logs of its float32 σ array in float32.
    let log_sigmas: Vec<f64> = schedule_sigmas
        .iter()
        .map(|&s| (s as f32).ln() as f64)
        .collect();
    let last = log_sigmas.len() - 1;
    // The last index whose log σ is at most log σ, kept below the final step so a neighbour exists.
    let low = log_sigmas
        .iter()
        .rposition(|&l| log_sigma - l >= 0.0)
        .unwrap_or(0)
        .min(last.saturating_sub(1));
    let high = (low + 1).min(last);
    if low == high {
        return low as f64;
    }
    let (l, h) = (log_sigmas[low], log_sigmas[high]);
    let w = ((l - log_sigma) / (l - h)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * high as f64
}

/// σ at a fractional timestep, interpolated linearly in σ (numpy `interp`, as diffusers does).
pub fn interpolate_sigma(t: f64, schedule_sigmas: &[f64]) -> f64 {
    let last = schedule_sigmas.len() - 1;
    let t = t.clamp(0.0, last as f64);
    let (low, high) = (t.floor() as usize, t.ceil() as usize);
    let w = t - low as f64;
    (1.0 - w) * schedule_sigmas[low] + w * schedule_sigmas[high]
}

/// Every σ_t of the schedule; a terminal ᾱ of exactly 0 is taken as 2⁻²⁴ so that σ stays finite.
/// Computed in f32 from f32 ᾱ as diffusers does: Karras timesteps are rounded or truncated from
/// these σ, and an ulp decides on which side of an integer a grid end lands.
pub fn schedule_sigmas(schedule: &NoiseSchedule) -> Vec<f64> {
    schedule
        .alphas_cumprod()
        .iter()
        .map(|&a| {
            let a = if a == 0.0 { MIN_ALPHA_BAR } else { a } as f32;
            ((1.0 - a) / a).sqrt() as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::schedule::BetaSchedule;

    #[test]
    fn sigma_to_t_inverts_the_log_sigma_interpolation() {
        let schedule = NoiseSchedule::new(&BetaSchedule::Cosine, 100, false).unwrap();
        let sigmas = schedule_sigmas(&schedule);
        for t in [0.0, 3.0, 10.25, 50.5, 98.75] {
            let ab = schedule.alpha_bar_at(t);
            let sigma = ((1.0 - ab) / ab).sqrt();
            // The table's logs are f32 (as diffusers'), so t is recovered to ~1e-5.
            assert!((sigma_to_t(sigma, &sigmas) - t).abs() < 1e-4, "t = {t}");
        }
    }
}
