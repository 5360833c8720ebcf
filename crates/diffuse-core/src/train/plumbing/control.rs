//! What a run tells its caller and how the caller ends it: the observer and the report of each
//! step, the stop conditions, and why the run returned.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Why a run returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopReason {
    /// All steps done.
    Finished,
    /// The time budget ran out (a denoiser run can be resumed with more steps).
    TimeBudget,
    /// Stopped from outside (Ctrl-C): what was trained is saved; a denoiser draws no final
    /// samples.
    Interrupted,
}

/// What one finished step reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// 1-based.
    pub step: usize,
    /// The loss: this step's for a denoiser, the mean of the recent steps for a classifier.
    pub loss: f64,
    /// The learning rate the step was taken with.
    pub lr: f64,
    /// A classifier's share of recent training rows classified right (noisy and clean rows).
    pub accuracy: Option<f64>,
}

/// What the caller (a progress bar, a log) hears about a run.
pub trait TrainObserver {
    /// Training starts (or resumes) at `step`; it runs to step `total`, if it has a step count.
    fn started(&mut self, _step: usize, _total: Option<usize>) {}
    /// A step finished.
    fn step(&mut self, _report: &StepReport) {}
    /// Something worth a line: a checkpoint, a sample grid, the evaluation, the saved folder.
    fn note(&mut self, _message: &str) {}
}

/// A silent observer.
impl TrainObserver for () {}

/// How a run ends before its last step: a flag raised from outside (Ctrl-C) or a wall-clock
/// deadline.
#[derive(Debug, Clone, Copy)]
pub struct StopConditions<'a> {
    pub stop: &'a AtomicBool,
    pub deadline: Option<Instant>,
}

impl StopConditions<'_> {
    /// Why the run must stop before its next step, if it must; the flag is checked first.
    pub fn reached(&self) -> Option<StopReason> {
        if self.stop.load(Ordering::SeqCst) {
            return Some(StopReason::Interrupted);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Some(StopReason::TimeBudget);
        }
        None
    }
}
