//! Training: the denoising objective, AdamW with clipping and accumulation, the EMA, crash-safe
//! checkpoints, metrics and previews, the loop that ties them to the data, and the plumbing every
//! training loop shares (also the classifier's).

pub mod checkpoint;
pub mod config;
pub mod ema;
pub mod latents;
pub mod metrics;
pub mod model;
pub mod objective;
pub mod optimizer;
pub mod params;
pub mod plumbing;
pub mod previews;
pub mod timesteps;
pub mod trainer;

pub use crate::nn::network::ModelConfig;
pub use config::TrainConfig;
pub use metrics::{MetricsLine, StepStats, read_metrics};
pub use model::PRESETS;
pub use objective::LossDraw;
pub use plumbing::{StepReport, StopReason, TrainObserver};
pub use timesteps::DrawnTimesteps;
pub use trainer::{MicroBatch, StepInputs, TrainSummary, Trainer};
