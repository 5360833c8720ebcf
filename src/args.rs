//! Flag groups shared by several subcommands.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::Device;
use clap::Args;
use diffuse_core::data::{ColorMode, Dataset, DatasetSource, LoadOptions, Split};
use diffuse_core::process::schedule::{BetaSchedule, NoiseSchedule};

/// The forward process: which β schedule over how many training steps.
#[derive(Args, Debug, Clone)]
pub struct ScheduleArgs {
    /// β schedule: linear, scaled-linear, cosine (diffusers' squaredcos_cap_v2), sigmoid, or
    /// continuous-sigmoid (Chen 2023; see --sigmoid-start/--sigmoid-end/--sigmoid-tau).
    #[arg(long, default_value = "linear")]
    pub beta_schedule: String,
    /// T, the number of training timesteps.
    #[arg(long, default_value_t = 1000)]
    pub num_train_timesteps: usize,
    /// First β of the linear, scaled-linear and sigmoid schedules.
    #[arg(long, default_value_t = 0.0001)]
    pub beta_start: f64,
    /// Last β of the linear, scaled-linear and sigmoid schedules.
    #[arg(long, default_value_t = 0.02)]
    pub beta_end: f64,
    /// Start of the continuous sigmoid schedule's input range.
    #[arg(long, default_value_t = -3.0, allow_negative_numbers = true)]
    pub sigmoid_start: f64,
    /// End of the continuous sigmoid schedule's input range.
    #[arg(long, default_value_t = 3.0, allow_negative_numbers = true)]
    pub sigmoid_end: f64,
    /// Temperature τ of the continuous sigmoid schedule.
    #[arg(long, default_value_t = 1.0)]
    pub sigmoid_tau: f64,
    /// Rescale the schedule to zero terminal SNR (Lin et al. 2023); pair it with trailing spacing
    /// and v-prediction.
    #[arg(long)]
    pub rescale_zero_snr: bool,
}

impl ScheduleArgs {
    pub fn build(&self) -> Result<NoiseSchedule> {
        let kind = BetaSchedule::from_name(
            &self.beta_schedule,
            self.beta_start,
            self.beta_end,
            (self.sigmoid_start, self.sigmoid_end, self.sigmoid_tau),
        )?;
        Ok(NoiseSchedule::new(
            &kind,
            self.num_train_timesteps,
            self.rescale_zero_snr,
        )?)
    }
}

/// Where tensors live.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Compute device: flex (pure-Rust CPU), or vulkan / cuda in builds with that feature.
    #[arg(long, default_value = "flex")]
    pub device: String,
}

impl DeviceArgs {
    pub fn build(&self) -> Result<Device> {
        Ok(diffuse_core::device::parse_device(&self.device)?)
    }
}

/// Where a dataset's files are and how image folders are decoded.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Folder of the mnist/fashion-mnist idx files [default: ../shared/data/<name>/].
    #[arg(long = "data", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Image folders: resize and center-crop to this square size.
    #[arg(long, default_value_t = 32)]
    pub resolution: usize,
    /// Image folders: gray or rgb.
    #[arg(long, default_value = "rgb")]
    pub color: String,
}

impl DataArgs {
    /// The test split of `dataset` (an image folder or .csv whole; a toy set drawn with
    /// `toy_samples` points by `seed`).
    pub fn load_test(&self, dataset: &str, toy_samples: usize, seed: u64) -> Result<Dataset> {
        let source = DatasetSource::parse(dataset, self.data_dir.as_deref())?;
        let options = LoadOptions {
            split: Split::Test,
            resolution: self.resolution,
            color: self.color.parse::<ColorMode>()?,
            toy_samples,
            seed,
        };
        source
            .load(&options)
            .with_context(|| format!("loading the data `{dataset}`"))
    }
}

/// Parses a number flag, refusing NaN and ±∞: `--learning-rate NaN` must be an error, not a
/// value that poisons a run (or that the settings' JSON turns into null, i.e. "not given").
pub fn finite_number(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        Ok(_) => Err("must be a finite number".into()),
        Err(e) => Err(e.to_string()),
    }
}
