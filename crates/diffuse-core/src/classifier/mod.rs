//! A noise-aware image classifier p_φ(y | x_t, t): trained on images of the forward process at
//! every noise level and on clean ones, it supplies ∇_{x_t} log p_φ(y | x_t, t) for classifier
//! guidance (Dhariwal & Nichol 2021, §4) and, at t = 0, accuracies and penultimate features for
//! evaluating samples.
//!
//! A classifier folder holds `config.json` ([`ClassifierConfig`]: layers, forward process,
//! dataset) and `model.safetensors`; [`train_classifier`] also writes `summary.json` there.

pub mod builtin;
pub mod config;
pub mod guidance;
pub mod model;
pub mod train;

pub use config::{ClassifierConfig, ClassifierSchedule};
pub use guidance::log_prob_gradient;
pub use model::NoiseAwareClassifier;
pub use train::{
    ClassifierData, ClassifierSummary, ClassifierTrainSettings, TimestepAccuracy, accuracy,
    train_classifier,
};
