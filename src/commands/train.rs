//! `diffuse train`: flags and an optional TOML file into a [`TrainConfig`], then the library's
//! trainer with a progress bar and Ctrl-C handling.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use diffuse_core::train::checkpoint::load_state;
use diffuse_core::train::{
    StepReport, StopReason, TrainConfig, TrainObserver, TrainSummary, Trainer,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::args::{DeviceArgs, finite_number};

/// Settings of a run. Every one can also be set in the --config TOML file under the same name
/// with underscores (`batch_size = 128`); flags win over the file.
#[derive(Args, Debug, Serialize, Default)]
pub struct TrainSettings {
    /// Data: mnist, fashion-mnist, a folder of PNG/JPEG images (sub-folders = classes), a .csv
    /// file of float rows, or toy:moons | toy:swiss-roll | toy:8gaussians | toy:checkerboard.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Folder of the mnist/fashion-mnist idx files [default: ../shared/data/<name>/].
    #[arg(long = "data", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Image folders: resize and center-crop to this square size [default: 32].
    #[arg(long)]
    pub resolution: Option<usize>,
    /// Image folders: gray or rgb [default: rgb].
    #[arg(long)]
    pub color: Option<String>,
    /// Mirror training images left-right at random.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub horizontal_flip: Option<bool>,
    /// Toy sets: number of points drawn [default: 10000].
    #[arg(long)]
    pub toy_samples: Option<usize>,
    /// Latent diffusion: a diffusers AutoencoderKL folder (e.g. a pipeline's vae/). The images are
    /// encoded once (cached in OUT/latent-cache/), the model trains on their latents (scaled by
    /// the autoencoder's scaling_factor, or 1/std of the latents when its config has none), and
    /// the exported pipeline includes the autoencoder.
    #[arg(long, value_name = "DIR")]
    pub autoencoder: Option<PathBuf>,
    /// Built-in model: tiny, unet-28, ddpm-cifar10, dit-small, mlp [default: unet-28].
    #[arg(long, conflicts_with = "model_config")]
    pub preset: Option<String>,
    /// A diffusers config.json (UNet2DModel, DiTTransformer2DModel) or an MlpDenoiser config;
    /// its channels and size must match the data.
    #[arg(long, value_name = "config.json")]
    pub model_config: Option<PathBuf>,
    /// Total optimisation steps (also when resuming) [default: 1000].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Samples per micro-batch [default: 64].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches summed into one step [default: 1].
    #[arg(long)]
    pub grad_accumulation: Option<usize>,
    /// Seed of the initial weights, data order and noise [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run folder: checkpoints, metrics.jsonl, loss.png, samples, and the diffusers pipeline
    /// (EMA weights) that `diffuse sample --pipeline DIR` reads [default: out/run].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Steps between checkpoints; 0 = only at the end [default: 500].
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Steps between metrics.jsonl lines [default: 10].
    #[arg(long)]
    pub log_every: Option<usize>,
    /// Steps between sample grids in DIR/samples/; 0 = only at the end [default: 0].
    #[arg(long)]
    pub sample_every: Option<usize>,
    /// DDIM steps of the sample grids [default: 50].
    #[arg(long)]
    pub sample_steps: Option<usize>,
    /// What the network predicts: epsilon, sample or v_prediction [default: epsilon].
    #[arg(long)]
    pub prediction_type: Option<String>,
    /// Condition on the dataset's classes, dropping labels at random for classifier-free guidance.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub class_conditional: Option<bool>,
    /// Probability of training a sample unconditionally (null class) [default: 0.1].
    #[arg(long, value_parser = finite_number)]
    pub label_dropout: Option<f64>,
    /// β schedule: linear, scaled_linear, squaredcos_cap_v2, sigmoid [default: linear].
    #[arg(long)]
    pub beta_schedule: Option<String>,
    /// First β [default: 0.0001].
    #[arg(long, value_parser = finite_number)]
    pub beta_start: Option<f64>,
    /// Last β [default: 0.02].
    #[arg(long, value_parser = finite_number)]
    pub beta_end: Option<f64>,
    /// T, the training timesteps [default: 1000].
    #[arg(long)]
    pub num_train_timesteps: Option<usize>,
    /// Peak AdamW learning rate [default: 0.001].
    #[arg(long, value_parser = finite_number)]
    pub learning_rate: Option<f64>,
    /// Steps of linear learning-rate warm-up [default: 100].
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// After the warm-up: constant or cosine (to zero at the last step) [default: constant].
    #[arg(long)]
    pub lr_schedule: Option<String>,
    /// AdamW β1 [default: 0.9].
    #[arg(long, value_parser = finite_number)]
    pub adam_beta1: Option<f64>,
    /// AdamW β2 [default: 0.999].
    #[arg(long, value_parser = finite_number)]
    pub adam_beta2: Option<f64>,
    /// AdamW ε [default: 1e-8].
    #[arg(long, value_parser = finite_number)]
    pub adam_epsilon: Option<f64>,
    /// AdamW decoupled weight decay [default: 0].
    #[arg(long, value_parser = finite_number)]
    pub weight_decay: Option<f64>,
    /// Clip the global gradient norm to this; 0 = no clipping [default: 1].
    #[arg(long, value_parser = finite_number)]
    pub max_grad_norm: Option<f64>,
    /// EMA decay after its warm-up [default: 0.999].
    #[arg(long, value_parser = finite_number)]
    pub ema_max_decay: Option<f64>,
    /// Warm the EMA decay up as 1 − (1 + step)^(−2/3) [default: true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub ema_warmup: Option<bool>,
    /// Min-SNR-γ loss weighting (Hang et al. 2023), e.g. 5 [default: off].
    #[arg(long, value_parser = finite_number)]
    pub min_snr_gamma: Option<f64>,
    /// Offset-noise scale (per-channel constant added to ε), e.g. 0.1 [default: 0].
    #[arg(long, value_parser = finite_number)]
    pub offset_noise: Option<f64>,
    /// DDPM's reverse variance: fixed_small, fixed_large, or learned_range (improved DDPM: the
    /// model also outputs its variance and trains with L_simple + λ L_vlb) [default: fixed_small].
    #[arg(long)]
    pub variance_type: Option<String>,
    /// λ of the hybrid loss, learned_range only [default: 0.001].
    #[arg(long, value_parser = finite_number)]
    pub vlb_weight: Option<f64>,
    /// uniform, or importance: t drawn ∝ √E[L_t²] of L_vlb, learned_range only [default:
    /// uniform].
    #[arg(long)]
    pub timestep_sampler: Option<String>,
    /// Train in continuous time on the vp, subvp or ve SDE (t ~ U(ε, 1), each at the discrete
    /// timestep of equal SNR); the model samples with every discrete sampler and --sde alike
    /// [default: discrete DDPM timesteps].
    #[arg(long, value_name = "SDE")]
    pub continuous_sde: Option<String>,
}

#[derive(Args, Debug)]
pub struct TrainCommand {
    /// A TOML file of settings (the flag names with underscores); flags override it.
    #[arg(long, value_name = "run.toml")]
    config: Option<PathBuf>,
    /// Continue the run in DIR (a run folder or one of its checkpoints/step-N folders) up to
    /// --steps; only --steps and the reporting intervals may change.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Stop after this many minutes (a checkpoint and the samples are written; resume later).
    #[arg(long)]
    minutes: Option<f64>,
    #[command(flatten)]
    settings: TrainSettings,
    #[command(flatten)]
    device: DeviceArgs,
}

/// A struct or table as a JSON object, to merge settings key by key.
fn as_object(value: &impl Serialize) -> Result<Map<String, Value>> {
    match serde_json::to_value(value)? {
        Value::Object(map) => Ok(map),
        _ => bail!("settings must be a table of key = value"),
    }
}

/// The settings given as flags, as a JSON object without the ones left out.
fn given(settings: &TrainSettings) -> Result<Map<String, Value>> {
    Ok(as_object(settings)?
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .collect())
}

fn read_toml(path: &Path) -> Result<Map<String, Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    as_object(&table)
}

/// `base`, overlaid by the TOML file, overlaid by the flags.
pub fn merged_config(
    base: Map<String, Value>,
    file: Option<&Path>,
    settings: &TrainSettings,
) -> Result<TrainConfig> {
    let mut merged = base;
    if let Some(path) = file {
        merged.extend(read_toml(path)?);
    }
    merged.extend(given(settings)?);
    serde_json::from_value(Value::Object(merged)).context("in the training settings")
}

/// A progress bar driven by the trainer.
struct ProgressObserver {
    bar: ProgressBar,
}

impl ProgressObserver {
    fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "train [{bar:30}] {pos}/{len} steps  {msg}  {per_sec}  eta {eta}",
            )
            .expect("progress template is valid")
            .progress_chars("=> "),
        );
        Self { bar }
    }
}

impl TrainObserver for ProgressObserver {
    fn started(&mut self, step: usize, total: Option<usize>) {
        self.bar.set_length(total.unwrap_or(0) as u64);
        self.bar.set_position(step as u64);
        self.bar.reset_eta();
    }

    fn step(&mut self, report: &StepReport) {
        let (loss, lr) = (report.loss, report.lr);
        self.bar.set_position(report.step as u64);
        self.bar.set_message(format!("loss {loss:.4}  lr {lr:.2e}"));
    }

    fn note(&mut self, message: &str) {
        self.bar.println(message);
    }
}

/// Runs a prepared trainer with a progress bar; Ctrl-C saves a checkpoint and stops.
pub fn run_with_progress(trainer: Trainer, minutes: Option<f64>) -> Result<TrainSummary> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // A second handler cannot be installed in the same process (tests, demo after train).
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    let deadline = match minutes {
        Some(m) if !(m > 0.0 && m.is_finite()) => bail!("--minutes must be positive"),
        Some(m) => Some(Instant::now() + Duration::from_secs_f64(m * 60.0)),
        None => None,
    };
    let mut observer = ProgressObserver::new();
    let summary = trainer.run(&mut observer, &stop, deadline);
    observer.bar.finish_and_clear();
    Ok(summary?)
}

/// The lines printed after a run.
pub fn print_summary(summary: &TrainSummary) {
    let how = match summary.stop {
        StopReason::Finished => "finished",
        StopReason::TimeBudget => "stopped at the time budget",
        StopReason::Interrupted => "interrupted (resume with --resume)",
    };
    println!(
        "Training {how} at step {}/{} in {:.1} s ({:.1} images/s, {} parameters); last loss {}.",
        summary.step,
        summary.total_steps,
        summary.seconds,
        summary.images_per_second,
        summary.parameters,
        summary
            .last_loss
            .map_or("n/a".into(), |l| format!("{l:.4}")),
    );
    println!("  pipeline (EMA weights): {}", summary.out.display());
    println!("  checkpoint:             {}", summary.checkpoint.display());
    println!("  loss curve:             {}", summary.loss_png.display());
    if let Some(samples) = &summary.samples_png {
        println!("  samples:                {}", samples.display());
    }
}

impl TrainCommand {
    pub fn run(&self) -> Result<()> {
        let device = self.device.build()?;
        let trainer = match &self.resume {
            Some(dir) => {
                let (_, state) = load_state(dir)?;
                let base = as_object(&state.config)?;
                let config = merged_config(base, self.config.as_deref(), &self.settings)?;
                Trainer::resume(dir, Some(config), &device)?
            }
            None => {
                let config = merged_config(Map::new(), self.config.as_deref(), &self.settings)?;
                let bar = super::progress_bar("encoding", "images");
                let trainer = Trainer::new_reporting(config, &device, &mut super::report_to(&bar))?;
                bar.finish_and_clear();
                trainer
            }
        };
        if let Some(vae) = trainer.autoencoder() {
            let config = vae.config();
            println!(
                "Latent diffusion: {} latents {:?} of {}, scaling_factor {:.5}",
                trainer.dataset().len(),
                trainer.dataset().sample_shape,
                trainer
                    .config()
                    .autoencoder
                    .as_deref()
                    .unwrap_or(Path::new(""))
                    .display(),
                config.scaling()
            );
        }
        println!(
            "Training {} parameters on {} ({} samples) from step {} to {} → {}",
            trainer.num_parameters(),
            trainer.config().dataset,
            trainer.dataset().len(),
            trainer.step(),
            trainer.config().steps,
            trainer.config().out.display()
        );
        let summary = run_with_progress(trainer, self.minutes)?;
        print_summary(&summary);
        Ok(())
    }
}
