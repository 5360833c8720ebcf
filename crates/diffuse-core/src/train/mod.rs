//! Training: the denoising objective, AdamW with clipping and accumulation, the EMA, crash-safe
//! checkpoints and the loop that ties them to the data.

pub mod checkpoint;
pub mod config;
pub mod ema;
pub mod model;
pub mod objective;
pub mod optimizer;
pub mod params;
pub mod timesteps;
pub mod trainer;

pub use crate::nn::network::ModelConfig;
pub use config::TrainConfig;
pub use model::PRESETS;
pub use trainer::{MetricsLine, StopReason, TrainObserver, TrainSummary, Trainer, read_metrics};
