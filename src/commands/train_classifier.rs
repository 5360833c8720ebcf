//! `diffuse train-classifier`: flags into [`ClassifierTrainSettings`], then the library's
//! classifier training with a progress bar and Ctrl-C handling.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use diffuse_core::classifier::{
    ClassifierData, ClassifierSchedule, ClassifierSummary, ClassifierTrainSettings,
    train_classifier,
};
use diffuse_core::data::ColorMode;
use diffuse_core::train::{StepReport, StopReason, TrainObserver};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::DeviceArgs;

/// The library's defaults, shown in --help.
fn defaults() -> ClassifierTrainSettings {
    ClassifierTrainSettings::default()
}

#[derive(Args, Debug)]
pub struct TrainClassifierCommand {
    /// Data: mnist, fashion-mnist, or a folder with one sub-folder of PNG/JPEG images per class
    /// (a seeded tenth of a folder is held out for the evaluation).
    #[arg(long)]
    dataset: String,
    /// Folder of the mnist/fashion-mnist idx files [default: ../shared/data/<name>/].
    #[arg(long = "data", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Image folders: resize and center-crop to this square size.
    #[arg(long, default_value_t = defaults().resolution)]
    resolution: usize,
    /// Image folders: gray or rgb.
    #[arg(long, default_value = "rgb")]
    color: String,
    /// The classifier folder to write (config.json, model.safetensors, summary.json); it must
    /// not hold a classifier already.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Optimisation steps [default: 4000 without --minutes, no limit with it].
    #[arg(long)]
    steps: Option<usize>,
    /// Stop training after this many minutes (the evaluation runs after). With --steps too,
    /// whichever comes first ends the run; the learning rate anneals to zero by then.
    #[arg(long)]
    minutes: Option<f64>,
    /// Images per step.
    #[arg(long, default_value_t = defaults().batch_size)]
    batch_size: usize,
    /// Peak AdamW learning rate, reached after a short warm-up, then cosine decay to zero.
    #[arg(long, default_value_t = defaults().learning_rate)]
    learning_rate: f64,
    /// Share of each batch noised to a random timestep t ~ U{0..T-1}; the rest is seen clean.
    #[arg(long, default_value_t = defaults().noisy_fraction)]
    noisy_fraction: f64,
    /// Seed of the initial weights, data order and noise.
    #[arg(long, default_value_t = defaults().seed)]
    seed: u64,
    /// Widths of the network's resolution levels, comma-separated (multiples of 8).
    #[arg(long, value_delimiter = ',', default_values_t = defaults().block_out_channels)]
    channels: Vec<usize>,
    /// Residual blocks per resolution level.
    #[arg(long, default_value_t = defaults().layers_per_block)]
    layers_per_block: usize,
    /// Timesteps the final accuracy is measured at, comma-separated [default: 0, T/4, T/2, 3T/4].
    #[arg(long, value_delimiter = ',')]
    eval_timesteps: Option<Vec<usize>>,
    /// Measure the accuracy on the first N test images only [default: all].
    #[arg(long, value_name = "N")]
    eval_samples: Option<usize>,
    /// β schedule of the diffusion model the classifier will guide: linear, scaled_linear,
    /// squaredcos_cap_v2 (cosine) or sigmoid.
    #[arg(long, default_value_t = defaults().schedule.beta_schedule)]
    beta_schedule: String,
    /// First β of the schedule.
    #[arg(long, default_value_t = defaults().schedule.beta_start)]
    beta_start: f64,
    /// Last β of the schedule.
    #[arg(long, default_value_t = defaults().schedule.beta_end)]
    beta_end: f64,
    /// T, the training timesteps of the schedule.
    #[arg(long, default_value_t = defaults().schedule.num_train_timesteps)]
    num_train_timesteps: usize,
    #[command(flatten)]
    device: DeviceArgs,
}

/// A progress bar driven by the classifier training.
struct ProgressObserver {
    bar: ProgressBar,
}

impl TrainObserver for ProgressObserver {
    fn started(&mut self, _step: usize, total: Option<usize>) {
        let template = match total {
            Some(total) => {
                self.bar.set_length(total as u64);
                "classifier [{bar:30}] {pos}/{len} steps  {msg}  {per_sec}  eta {eta}"
            }
            // Only a time budget: no step count to show progress against.
            None => "classifier {pos} steps  {msg}  {per_sec}  {elapsed}",
        };
        self.bar.set_style(
            ProgressStyle::with_template(template)
                .expect("progress template is valid")
                .progress_chars("=> "),
        );
        self.bar.reset_eta();
    }

    fn step(&mut self, report: &StepReport) {
        let mut message = format!("loss {:.4}", report.loss);
        if let Some(accuracy) = report.accuracy {
            message.push_str(&format!("  acc {:.1}%", 100.0 * accuracy));
        }
        self.bar.set_position(report.step as u64);
        self.bar.set_message(message);
    }

    fn note(&mut self, message: &str) {
        self.bar.println(message);
    }
}

impl TrainClassifierCommand {
    fn settings(&self) -> Result<ClassifierTrainSettings> {
        let time_budget = match self.minutes {
            Some(m) if !(m > 0.0 && m.is_finite()) => bail!("--minutes must be positive"),
            Some(m) => Some(Duration::from_secs_f64(m * 60.0)),
            None => None,
        };
        let color: ColorMode = self.color.parse()?;
        Ok(ClassifierTrainSettings {
            dataset: self.dataset.clone(),
            data_dir: self.data_dir.clone(),
            resolution: self.resolution,
            color,
            out: self.out.clone(),
            steps: match (self.steps, self.minutes) {
                (None, Some(_)) => None,
                (None, None) => defaults().steps,
                (steps, _) => steps,
            },
            time_budget,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            noisy_fraction: self.noisy_fraction,
            seed: self.seed,
            schedule: ClassifierSchedule::new(
                &self.beta_schedule,
                self.num_train_timesteps,
                (self.beta_start, self.beta_end),
            )?,
            block_out_channels: self.channels.clone(),
            layers_per_block: self.layers_per_block,
            eval_timesteps: self.eval_timesteps.clone(),
            eval_samples: self.eval_samples,
            ..ClassifierTrainSettings::default()
        })
    }

    pub fn run(&self) -> Result<()> {
        let settings = self.settings()?;
        settings.validate()?;
        let device = self.device.build()?;
        let data = ClassifierData::load(&settings)?;
        let limits = match (settings.steps, self.minutes) {
            (Some(steps), Some(m)) => format!("{steps} steps or {m} minutes"),
            (Some(steps), None) => format!("{steps} steps"),
            (None, _) => format!("{} minutes", self.minutes.unwrap_or_default()),
        };
        println!(
            "Training a classifier on {} ({} images, {} classes) for {limits} → {}",
            settings.dataset,
            data.train.len(),
            data.train.num_classes(),
            settings.out.display()
        );
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // Ctrl-C ends training early; the classifier is still saved and evaluated.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
        let mut observer = ProgressObserver {
            bar: ProgressBar::new(0),
        };
        let summary = train_classifier(&settings, data, &device, &mut observer, &stop);
        observer.bar.finish_and_clear();
        print_summary(&summary?);
        Ok(())
    }
}

fn print_summary(summary: &ClassifierSummary) {
    let how = match summary.stop {
        StopReason::Finished => "finished",
        StopReason::TimeBudget => "stopped at the time budget",
        StopReason::Interrupted => "interrupted",
    };
    let total = summary
        .total_steps
        .map_or(String::new(), |t| format!("/{t}"));
    let last = match (summary.train_loss, summary.train_accuracy) {
        (Some(loss), Some(accuracy)) => format!(
            "; last train loss {loss:.4}, accuracy {:.1}%",
            100.0 * accuracy
        ),
        _ => String::new(),
    };
    println!(
        "Training {how} at step {}{total} in {:.1} s ({:.0} images/s, {} parameters){last}.",
        summary.step, summary.seconds, summary.images_per_second, summary.parameters,
    );
    println!(
        "Accuracy on {} images ({}):",
        summary.eval_samples, summary.eval_split
    );
    for a in &summary.accuracy {
        let what = if a.timestep == 0 { " (clean)" } else { "" };
        println!("  t = {:>4}{what}: {:.2}%", a.timestep, 100.0 * a.accuracy);
    }
    println!("  classifier: {}", summary.out.display());
}
