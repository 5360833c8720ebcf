//! The training loop: batches from the background loader, the denoising loss, AdamW with global
//! clipping and accumulation, the EMA, metrics, sample grids, checkpoints and the exported
//! pipeline folder.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{DType, Device};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::ModelConfig;
use super::checkpoint::{self, CheckpointTensors, TrainingState};
use super::config::TrainConfig;
use super::ema::ema_update;
use super::objective::{CleanBatch, ObjectiveSettings, denoising_loss};
use super::optimizer::{AdamW, FlatGradients, clip_factor, learning_rate};
use super::params::{flat_parameters, parameters_from_host, parameters_to_host};
use super::timesteps::TimestepSampling;
use crate::data::loader::{BatchLoader, DataOrder};
use crate::data::{DataKind, Dataset, DatasetSource, LoadOptions};
use crate::error::{DiffuseError, Result};
use crate::io::write_atomically;
use crate::nn::network::DenoisingNetwork;
use crate::pipeline::{DiffusionPipeline, NetworkDenoiser};
use crate::plot::{ScatterLayer, image_grid_png, loss_curve_png, scatter_panels_png};
use crate::sampler::{
    GenerationConfig, SamplerKind, SamplerSettings, SamplingPlan, X0Limit, generate,
};
use crate::schedule::{NoiseSchedule, TimestepSpacing};

/// Salt of the step-noise streams, so they never coincide with the data-order streams.
const STEP_NOISE_SALT: u64 = 0x7ea1_5eed_0f5b_edaa;
/// Samples per class row of the class-conditional grid, and the grid size otherwise.
const GRID_COLUMNS: usize = 8;
const UNCONDITIONAL_GRID: usize = 64;
const VECTOR_SAMPLES: usize = 2000;

/// What the caller (a progress bar, a log) hears about a run.
pub trait TrainObserver {
    /// Training starts (or resumes) at `step` of `total`.
    fn started(&mut self, _step: usize, _total: usize) {}
    /// Step `step` (1-based) finished with this loss and learning rate.
    fn step(&mut self, _step: usize, _loss: f64, _lr: f64) {}
    /// Something worth a line: a checkpoint, a sample grid.
    fn note(&mut self, _message: &str) {}
}

/// A silent observer.
impl TrainObserver for () {}

/// Why [`Trainer::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopReason {
    /// All `steps` done.
    Finished,
    /// The time budget ran out (the run can be resumed with more steps).
    TimeBudget,
    /// Stopped from outside (Ctrl-C): a checkpoint was saved, no final samples drawn.
    Interrupted,
}

/// What a run did, also written as `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    pub stop: StopReason,
    pub step: usize,
    pub total_steps: usize,
    /// Mean loss over the last logged interval.
    pub last_loss: Option<f64>,
    pub seconds: f64,
    pub images_per_second: f64,
    pub parameters: usize,
    pub out: PathBuf,
    pub checkpoint: PathBuf,
    pub samples_png: Option<PathBuf>,
    pub loss_png: PathBuf,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsLine {
    pub step: usize,
    /// The loss of this step.
    pub loss: f64,
    /// Mean loss since the previous line.
    pub loss_mean: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub images_per_second: f64,
}

/// A run ready to train: data loaded, network built or restored, output folder checked.
pub struct Trainer {
    config: TrainConfig,
    model_config: ModelConfig,
    dataset: Arc<Dataset>,
    schedule: NoiseSchedule,
    objective: ObjectiveSettings,
    timestep_sampling: TimestepSampling,
    device: Device,
    train_device: Device,
    network: DenoisingNetwork,
    ema: DenoisingNetwork,
    optimizer: AdamW,
    step: usize,
    order: DataOrder,
    metrics: Vec<MetricsLine>,
}

fn load_dataset(config: &TrainConfig) -> Result<Dataset> {
    let source = DatasetSource::parse(&config.dataset, config.data_dir.as_deref())?;
    source.load(&LoadOptions {
        split: crate::data::Split::Train,
        resolution: config.resolution,
        color: config.color,
        toy_samples: config.toy_samples,
        seed: config.seed,
    })
}

/// Fails early when `out` cannot hold a run, instead of after the first hour of training.
fn prepare_out_dir(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out.join("checkpoints")).map_err(|e| DiffuseError::io(out, e))?;
    let probe = out.join(".write-test");
    write_atomically(&probe, b"ok")?;
    std::fs::remove_file(&probe).map_err(|e| DiffuseError::io(&probe, e))
}

impl Trainer {
    /// Starts a new run on `device`. Refuses an `out` folder that already holds checkpoints.
    pub fn new(config: TrainConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        if config.out.join("checkpoints/LATEST").exists() {
            return Err(DiffuseError::config(format!(
                "{} already holds a run: continue it with --resume {0} or pick another --out",
                config.out.display()
            )));
        }
        let dataset = load_dataset(&config)?;
        let trainer = Self::from_dataset(config, dataset, device)?;
        prepare_out_dir(&trainer.config.out)?;
        Ok(trainer)
    }

    /// A new run on data already in memory; nothing is written until it runs.
    pub fn from_dataset(config: TrainConfig, dataset: Dataset, device: &Device) -> Result<Self> {
        config.validate()?;
        let classes = match (config.class_conditional, dataset.num_classes()) {
            (false, _) => None,
            (true, 0) => {
                return Err(DiffuseError::config(format!(
                    "--class-conditional needs labelled data; `{}` has no classes",
                    config.dataset
                )));
            }
            (true, k) => Some(k),
        };
        let learned_variance = config.variance()?.is_learned();
        let model_config = match &config.model_config {
            Some(path) => {
                ModelConfig::from_file(path)?.fitted(&dataset, classes, learned_variance, false)?
            }
            None => ModelConfig::preset(&config.preset, dataset.kind)?.fitted(
                &dataset,
                classes,
                learned_variance,
                true,
            )?,
        };
        // Seeding burn's generator and touching every parameter in order makes the initial
        // weights a function of the seed.
        device.seed(config.seed);
        let network = model_config.build(device)?;
        let _ = flat_parameters(&network);
        let optimizer = AdamW::new(config.adam());
        let order = DataOrder::new(config.seed);
        Self::assemble(
            config,
            model_config,
            dataset,
            network.clone(),
            network,
            optimizer,
            0,
            order,
            device,
        )
    }

    /// Continues the run saved in `dir` (a run folder or one checkpoint folder). `config` must
    /// equal the saved one except for the fields a resumed run may change (see
    /// [`TrainConfig::resumable_changes`]).
    pub fn resume(dir: &Path, config: Option<TrainConfig>, device: &Device) -> Result<Self> {
        let saved = checkpoint::load(dir)?;
        let mut config = match config {
            Some(config) => saved.state.config.checked_resume(config)?,
            None => saved.state.config.clone(),
        };
        // The run continues where its checkpoints are, even if the folder was moved.
        config.out = checkpoint::run_dir(&saved.dir);
        config.validate()?;
        let dataset = load_dataset(&config)?;
        if saved.state.class_names != dataset.class_names {
            return Err(DiffuseError::config(
                "the dataset's classes differ from those the run was started with",
            ));
        }
        let config_path = saved.dir.join(checkpoint::MODEL_CONFIG);
        let model_config = ModelConfig::from_file(&config_path)?;
        prepare_out_dir(&config.out)?;
        let fresh = model_config.build(device)?;
        let what = format!("checkpoint {}", saved.dir.display());
        let network = parameters_from_host(fresh.clone(), &saved.tensors.model, &what)?;
        let ema = parameters_from_host(fresh, &saved.tensors.ema, &what)?;
        let mut optimizer = AdamW::new(config.adam());
        optimizer.load_state(
            &network,
            &saved.tensors.optimizer,
            saved.state.optimizer_updates,
        )?;
        let mut trainer = Self::assemble(
            config,
            model_config,
            dataset,
            network,
            ema,
            optimizer,
            saved.state.step,
            saved.state.data_order,
            device,
        )?;
        if let (TimestepSampling::Importance(history), Some(saved)) =
            (&mut trainer.timestep_sampling, saved.state.loss_history)
        {
            *history = saved;
        }
        trainer.metrics = read_metrics(&trainer.config.out.join("metrics.jsonl"))?
            .into_iter()
            .filter(|m| m.step <= trainer.step)
            .collect();
        Ok(trainer)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        config: TrainConfig,
        model_config: ModelConfig,
        dataset: Dataset,
        network: DenoisingNetwork,
        ema: DenoisingNetwork,
        optimizer: AdamW,
        step: usize,
        order: DataOrder,
        device: &Device,
    ) -> Result<Self> {
        let train_device = device.clone().autodiff();
        let timestep_sampling = config.timestep_sampling()?;
        let objective = ObjectiveSettings {
            prediction_type: config.prediction()?,
            min_snr_gamma: config.min_snr_gamma,
            offset_noise: config.offset_noise,
            label_dropout: config.label_dropout,
            vlb_weight: config.vlb_weight,
        };
        Ok(Self {
            schedule: config.schedule()?,
            objective,
            timestep_sampling,
            network: network.to_device(&train_device).train(),
            ema,
            optimizer,
            step,
            order,
            metrics: Vec::new(),
            model_config,
            dataset: Arc::new(dataset),
            device: device.clone(),
            train_device,
            config,
        })
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    /// Steps completed so far.
    pub fn step(&self) -> usize {
        self.step
    }

    pub fn num_parameters(&self) -> usize {
        self.ema.num_params()
    }

    /// The logged metrics, oldest first.
    pub fn metrics(&self) -> &[MetricsLine] {
        &self.metrics
    }

    /// Trains until `config.steps`, until `deadline`, or until `stop` is raised; every way out
    /// saves a checkpoint and exports the pipeline folder.
    pub fn run(
        mut self,
        observer: &mut dyn TrainObserver,
        stop: &AtomicBool,
        deadline: Option<Instant>,
    ) -> Result<TrainSummary> {
        let total = self.config.steps;
        observer.started(self.step, total);
        let mut metrics_file = self.open_metrics()?;
        let mut loader = self.batch_loader();
        let started = Instant::now();
        let first_step = self.step;
        let mut interval = (Instant::now(), 0.0, 0usize);
        let mut last_checkpoint = None;
        let mut stop_reason = StopReason::Finished;
        while self.step < total {
            if stop.load(Ordering::SeqCst) {
                stop_reason = StopReason::Interrupted;
                break;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                stop_reason = StopReason::TimeBudget;
                break;
            }
            let kept = last_checkpoint
                .as_ref()
                .map(|(_, path): &(usize, PathBuf)| path.clone());
            let (loss, grad_norm, lr) = self.train_step(&mut loader, kept.as_deref())?;
            observer.step(self.step, loss, lr);
            interval.1 += loss;
            interval.2 += 1;
            if self.step.is_multiple_of(self.config.log_every) || self.step == total {
                let seconds = interval.0.elapsed().as_secs_f64().max(1e-9);
                let line = MetricsLine {
                    step: self.step,
                    loss,
                    loss_mean: interval.1 / interval.2 as f64,
                    lr,
                    grad_norm,
                    images_per_second: (interval.2 * self.images_per_step()) as f64 / seconds,
                };
                let json = serde_json::to_string(&line).expect("metrics always serialise");
                writeln!(metrics_file, "{json}").map_err(|e| self.metrics_error(e))?;
                metrics_file.flush().map_err(|e| self.metrics_error(e))?;
                self.metrics.push(line);
                interval = (Instant::now(), 0.0, 0);
            }
            if self.config.checkpoint_every > 0
                && self.step.is_multiple_of(self.config.checkpoint_every)
            {
                last_checkpoint = Some((self.step, self.save_checkpoint()?));
                observer.note(&format!("checkpoint at step {}", self.step));
            }
            if self.config.sample_every > 0 && self.step.is_multiple_of(self.config.sample_every) {
                let path = self
                    .config
                    .out
                    .join(format!("samples/step-{:08}.png", self.step));
                self.write_samples(&path)?;
                observer.note(&format!(
                    "samples at step {}: {}",
                    self.step,
                    path.display()
                ));
            }
        }
        let checkpoint = match last_checkpoint {
            Some((step, path)) if step == self.step => path,
            _ => self.save_checkpoint()?,
        };
        self.export()?;
        let loss_png = self.config.out.join("loss.png");
        loss_curve_png(&loss_png, &self.metrics_points())?;
        let samples_png = match stop_reason {
            StopReason::Finished | StopReason::TimeBudget => {
                observer.note("drawing the final sample grid");
                let path = self.config.out.join("samples.png");
                self.write_samples(&path)?.then_some(path)
            }
            StopReason::Interrupted => None,
        };
        let seconds = started.elapsed().as_secs_f64();
        let summary = TrainSummary {
            stop: stop_reason,
            step: self.step,
            total_steps: total,
            last_loss: self.metrics.last().map(|m| m.loss_mean),
            seconds,
            images_per_second: ((self.step - first_step) * self.images_per_step()) as f64
                / seconds.max(1e-9),
            parameters: self.num_parameters(),
            out: self.config.out.clone(),
            checkpoint,
            samples_png,
            loss_png,
        };
        let json = serde_json::to_string_pretty(&summary).expect("summaries always serialise");
        write_atomically(&self.config.out.join("summary.json"), json.as_bytes())?;
        Ok(summary)
    }

    /// Batches from where the run stands, a few prepared ahead.
    fn batch_loader(&self) -> BatchLoader {
        const PREFETCH: usize = 4;
        BatchLoader::new(
            self.dataset.clone(),
            self.config.batch_size,
            self.config.horizontal_flip,
            self.order,
            PREFETCH,
        )
    }

    /// Times `steps` optimisation steps after `warmup` untimed ones, with no checkpoints,
    /// metrics or samples: the training step alone, for benchmarks.
    pub fn time_steps(&mut self, warmup: usize, steps: usize) -> Result<std::time::Duration> {
        let mut loader = self.batch_loader();
        for _ in 0..warmup {
            self.train_step(&mut loader, None)?;
        }
        let start = Instant::now();
        for _ in 0..steps {
            self.train_step(&mut loader, None)?;
        }
        Ok(start.elapsed())
    }

    fn images_per_step(&self) -> usize {
        self.config.batch_size * self.config.grad_accumulation
    }

    /// One optimisation step over `grad_accumulation` micro-batches; returns (loss, ‖g‖, lr).
    fn train_step(
        &mut self,
        loader: &mut BatchLoader,
        last_checkpoint: Option<&Path>,
    ) -> Result<(f64, f64, f64)> {
        let accumulation = self.config.grad_accumulation;
        let [c, h, w] = self.dataset.sample_shape;
        let mut grads: Option<FlatGradients> = None;
        let mut loss_sum = 0.0;
        let mut order_after = self.order;
        for micro in 0..accumulation {
            let batch = loader.next_batch();
            let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed ^ STEP_NOISE_SALT);
            rng.set_stream((self.step * accumulation + micro) as u64);
            let clean = CleanBatch {
                values: &batch.values,
                shape: [batch.size, c, h, w],
                labels: batch.labels.as_deref(),
            };
            let batch_loss = denoising_loss(
                &self.network,
                &self.schedule,
                &self.objective,
                &self.timestep_sampling,
                &clean,
                &mut rng,
                &self.train_device,
            )?;
            if let (TimestepSampling::Importance(history), Some((steps, terms))) =
                (&mut self.timestep_sampling, &batch_loss.vlb_terms)
            {
                history.record(steps, terms)?;
            }
            let loss = batch_loss.loss / accumulation as f64;
            let value = batch_loss.value / accumulation as f64;
            if !value.is_finite() {
                let kept = match last_checkpoint {
                    Some(path) => format!("the last good checkpoint is {}", path.display()),
                    None => "no checkpoint was written before it".to_string(),
                };
                return Err(DiffuseError::Training(format!(
                    "the loss became {value} at step {}; {kept} (lower --learning-rate or set \
                     --max-grad-norm)",
                    self.step + 1
                )));
            }
            loss_sum += value;
            let step_grads = FlatGradients::from_backward(loss.backward(), &self.network);
            match grads.as_mut() {
                Some(total) => total.accumulate(step_grads),
                None => grads = Some(step_grads),
            }
            order_after = batch.order_after;
        }
        let mut grads = grads.expect("grad_accumulation is at least 1");
        let grad_norm = grads.global_norm()?;
        if self.config.max_grad_norm > 0.0 {
            grads.scale(clip_factor(grad_norm, self.config.max_grad_norm));
        }
        let lr = learning_rate(
            self.step,
            self.config.learning_rate,
            self.config.warmup_steps,
            self.config.lr_schedule,
            self.config.steps,
        );
        let network = std::mem::replace(&mut self.network, self.ema.clone());
        self.network = self.optimizer.step(network, &mut grads, lr)?;
        self.step += 1;
        let decay = self.config.ema().decay(self.step as u64);
        let ema = std::mem::replace(&mut self.ema, self.network.valid());
        self.ema = ema_update(ema, &self.network, decay)?;
        self.order = order_after;
        Ok((loss_sum, grad_norm, lr))
    }

    /// Writes a checkpoint of the current step and returns its folder.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let (optimizer, optimizer_updates) = self.optimizer.state_to_host()?;
        let tensors = CheckpointTensors {
            model: parameters_to_host(&self.network)?,
            ema: parameters_to_host(&self.ema)?,
            optimizer,
        };
        let state = TrainingState {
            step: self.step,
            optimizer_updates,
            data_order: self.order,
            rng: format!(
                "ChaCha8, seed {} ^ {STEP_NOISE_SALT:#x}, next stream {}",
                self.config.seed,
                self.step * self.config.grad_accumulation
            ),
            class_names: self.dataset.class_names.clone(),
            config: self.config.clone(),
            loss_history: match &self.timestep_sampling {
                TimestepSampling::Importance(history) => Some(history.clone()),
                _ => None,
            },
        };
        let checkpoints = self.config.out.join("checkpoints");
        let incomplete = checkpoint::write_incomplete(
            &checkpoints,
            &state,
            &self.model_config.to_json(),
            &tensors,
        )?;
        let dir = checkpoint::commit(&checkpoints, &incomplete, self.step)?;
        write_atomically(
            &self.config.out.join("train_config.toml"),
            self.config.to_toml().as_bytes(),
        )?;
        Ok(dir)
    }

    /// Writes `out` as a diffusers pipeline folder holding the EMA weights.
    pub fn export(&self) -> Result<()> {
        DiffusionPipeline {
            network: self.ema.clone(),
            scheduler: self
                .config
                .scheduler_config(self.dataset.kind == DataKind::Images)?,
        }
        .save(&self.config.out)
    }

    /// Samples the EMA model with DDIM into a picture at `path`: one row per class for a
    /// class-conditional model, a scatter over the data for 2-D vectors. Returns false when the
    /// data cannot be pictured (vectors wider than 2).
    pub fn write_samples(&self, path: &Path) -> Result<bool> {
        let [c, h, w] = self.dataset.sample_shape;
        let images = self.dataset.kind == DataKind::Images;
        if !images && c * h * w != 2 {
            return Ok(false);
        }
        let labels = match self.ema.class_table_size() {
            Some(_) if self.config.class_conditional => Some(
                (0..self.dataset.num_classes())
                    .flat_map(|k| std::iter::repeat_n(k, GRID_COLUMNS))
                    .collect::<Vec<_>>(),
            ),
            Some(table) => Some(vec![table - 1; UNCONDITIONAL_GRID]),
            None => None,
        };
        let count = match (&labels, images) {
            (Some(l), _) => l.len(),
            (None, true) => UNCONDITIONAL_GRID,
            (None, false) => VECTOR_SAMPLES,
        };
        let sampler = SamplerKind::configured(
            "ddim",
            &SamplerSettings {
                x0_limit: if images {
                    X0Limit::Clip(1.0)
                } else {
                    X0Limit::None
                },
                ..SamplerSettings::default()
            },
        )?;
        let plan = SamplingPlan::new(
            sampler,
            &self.schedule,
            self.config.sample_steps,
            TimestepSpacing::Leading,
            0,
        )?;
        let denoiser = NetworkDenoiser::new(&self.ema, self.objective.prediction_type);
        let generation = GenerationConfig {
            count,
            batch_size: count.min(256),
            seed: self.config.seed,
            device: self.device.clone(),
            dtype: DType::F32,
            class_labels: labels,
            init_noise: None,
        };
        let samples = generate::<4>(
            &denoiser,
            &self.schedule,
            &plan,
            &[c, h, w],
            &generation,
            &mut |_, _| {},
        )?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| DiffuseError::io(dir, e))?;
        }
        if images {
            image_grid_png(path, &samples, [count, c, h, w], GRID_COLUMNS)?;
        } else {
            let data: Vec<f64> = self
                .dataset
                .values
                .iter()
                .take(2 * VECTOR_SAMPLES)
                .map(|&v| f64::from(v))
                .collect();
            let extent = data.iter().fold(1.0_f64, |m, v| m.max(v.abs())) * 1.2;
            scatter_panels_png(
                path,
                &[
                    vec![ScatterLayer {
                        points: &data,
                        color: [120, 120, 120],
                    }],
                    vec![ScatterLayer {
                        points: &samples,
                        color: [200, 30, 30],
                    }],
                ],
                extent,
                400,
            )?;
        }
        Ok(true)
    }

    fn metrics_points(&self) -> Vec<(f64, f64)> {
        self.metrics
            .iter()
            .map(|m| (m.step as f64, m.loss_mean))
            .collect()
    }

    fn metrics_error(&self, e: std::io::Error) -> DiffuseError {
        DiffuseError::io(self.config.out.join("metrics.jsonl"), e)
    }

    /// Opens metrics.jsonl holding exactly the lines up to the current step.
    fn open_metrics(&self) -> Result<std::fs::File> {
        let path = self.config.out.join("metrics.jsonl");
        let mut text = String::new();
        for line in &self.metrics {
            text.push_str(&serde_json::to_string(line).expect("metrics always serialise"));
            text.push('\n');
        }
        write_atomically(&path, text.as_bytes())?;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| DiffuseError::io(&path, e))
    }
}

/// Reads a run's metrics.jsonl (missing file: no lines).
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsLine>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DiffuseError::io(path, e)),
    };
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| DiffuseError::bad_file(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}
