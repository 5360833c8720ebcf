//! The non-finite-loss guard: a NaN or infinite loss stops the run with a message naming the
//! step and the last good checkpoint, instead of training on garbage.

use std::path::{Path, PathBuf};

use crate::error::{DiffuseError, Result};

/// Remembers the run's last complete checkpoint and refuses a loss that is not finite.
#[derive(Debug, Clone)]
pub struct LossGuard {
    advice: &'static str,
    last_checkpoint: Option<(usize, PathBuf)>,
}

impl LossGuard {
    /// `advice` says what to change, in the run's own flag names.
    pub fn new(advice: &'static str) -> Self {
        Self {
            advice,
            last_checkpoint: None,
        }
    }

    /// The checkpoint of step `step` is complete in `dir`.
    pub fn checkpointed(&mut self, step: usize, dir: PathBuf) {
        self.last_checkpoint = Some((step, dir));
    }

    /// The last complete checkpoint: its step and folder.
    pub fn last_checkpoint(&self) -> Option<(usize, &Path)> {
        self.last_checkpoint
            .as_ref()
            .map(|(step, dir)| (*step, dir.as_path()))
    }

    /// Fails unless `loss`, the loss of the 1-based step `step`, is finite.
    pub fn check(&self, loss: f64, step: usize) -> Result<()> {
        if loss.is_finite() {
            return Ok(());
        }
        let kept = match &self.last_checkpoint {
            Some((_, dir)) => format!("the last good checkpoint is {}", dir.display()),
            None => "no checkpoint was written before it".to_string(),
        };
        Err(DiffuseError::Training(format!(
            "the loss became {loss} at step {step}; {kept} ({})",
            self.advice
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_finite_loss_names_the_step_and_the_last_checkpoint() {
        let mut guard = LossGuard::new("lower --learning-rate");
        assert!(guard.check(0.5, 1).is_ok());
        let first = guard.check(f64::NAN, 3).unwrap_err().to_string();
        assert!(first.contains("NaN at step 3; no checkpoint"), "{first}");
        guard.checkpointed(4, PathBuf::from("run/checkpoints/step-4"));
        let later = guard.check(f64::INFINITY, 5).unwrap_err().to_string();
        assert!(
            later.contains("inf at step 5; the last good checkpoint is run/checkpoints/step-4 (lower --learning-rate)"),
            "{later}"
        );
    }
}
