//! Exponential moving average of the weights, with diffusers' `EMAModel` warm-up.

use std::collections::BTreeMap;

use burn::module::Module;

use super::params::{flat_parameters, update_parameters};
use crate::error::{DiffuseError, Result};
use crate::nn::kernels;

/// The EMA decay and its warm-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmaSettings {
    /// The decay the warm-up rises to.
    pub max_decay: f64,
    /// Warm up as 1 − (1 + step/inv_gamma)^(−power) (diffusers `use_ema_warmup`); without it
    /// the decay follows (1 + step)/(10 + step).
    pub warmup: bool,
    pub inv_gamma: f64,
    pub power: f64,
}

impl Default for EmaSettings {
    fn default() -> Self {
        Self {
            max_decay: 0.9999,
            warmup: true,
            inv_gamma: 1.0,
            power: 2.0 / 3.0,
        }
    }
}

impl EmaSettings {
    /// The decay used at optimisation step `step` (1-based: the first update is step 1, which
    /// copies the weights), as in diffusers' `EMAModel.get_decay`.
    pub fn decay(&self, step: u64) -> f64 {
        let step = step.saturating_sub(1) as f64;
        if step <= 0.0 {
            return 0.0;
        }
        let decay = if self.warmup {
            1.0 - (1.0 + step / self.inv_gamma).powf(-self.power)
        } else {
            (1.0 + step) / (10.0 + step)
        };
        decay.clamp(0.0, self.max_decay)
    }
}

/// θ_ema ← θ_ema − (1 − decay)(θ_ema − θ) for every parameter, matched by path.
pub fn ema_update<M: Module, N: Module>(ema: N, model: &M, decay: f64) -> Result<N> {
    let current: BTreeMap<_, _> = flat_parameters(model)
        .into_iter()
        .map(|(path, _, tensor)| (path, tensor))
        .collect();
    update_parameters(ema, &mut |path, _, average| {
        let value = current.get(path).ok_or_else(|| {
            DiffuseError::config(format!("the EMA has a parameter `{path}` the model lacks"))
        })?;
        Ok(Some(
            kernels::ema_step(&average, value, decay)
                .unwrap_or_else(|| average.clone() - (average - value.clone()) * (1.0 - decay)),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_starts_by_copying_and_approaches_the_maximum() {
        let ema = EmaSettings::default();
        assert_eq!(ema.decay(1), 0.0);
        // step 10 → 1 − 10^(−2/3)
        assert!((ema.decay(11) - (1.0 - 11f64.powf(-2.0 / 3.0))).abs() < 1e-12);
        assert_eq!(ema.decay(10_000_000_000), 0.9999);
        let plain = EmaSettings {
            warmup: false,
            ..ema
        };
        assert!((plain.decay(2) - 2.0 / 11.0).abs() < 1e-12);
    }
}
