//! The plumbing every training loop shares, whatever it trains (the denoiser's [`Trainer`],
//! the noise-aware classifier, an autoencoder): the output folder, the learning-rate schedule,
//! seeded initial weights, the non-finite-loss guard, and how a run reports to and is stopped by
//! its caller.
//!
//! [`Trainer`]: crate::train::Trainer

mod control;
mod guard;
mod init;
mod lr;
mod run_dir;

pub use control::{StepReport, StopConditions, StopReason, TrainObserver};
pub use guard::LossGuard;
pub use init::seeded_init;
pub use lr::{Annealing, LrDecay, LrSchedule};
pub use run_dir::{RunLock, prepare_out_dir, write_summary};
