//! The denoiser's training loop: batches from the background loader, the denoising loss, AdamW
//! with global clipping and accumulation, the EMA, metrics, sample grids, checkpoints and the
//! exported pipeline folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::tensor::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::ModelConfig;
use super::checkpoint::{self, CheckpointTensors, TrainingState};
use super::config::TrainConfig;
use super::ema::ema_update;
use super::latents;
use super::metrics::{MetricsLine, MetricsLog, StepStats};
use super::objective::{CleanBatch, LossDraw, Objective, ObjectiveSettings};
use super::optimizer::{AdamW, FlatGradients, clip_factor};
use super::params::{parameters_from_host, parameters_to_host};
use super::plumbing::{
    LossGuard, RunLock, StepReport, StopConditions, StopReason, TrainObserver, prepare_out_dir,
    seeded_init, write_summary,
};
use super::previews::{SamplePreview, write_loss_curve};
use super::timesteps::TimestepSampling;
use crate::data::loader::{BatchLoader, DataOrder};
use crate::data::{DataKind, Dataset, DatasetSource, LoadOptions};
use crate::error::{DiffuseError, Result};
use crate::io::write_atomically;
use crate::nn::autoencoder::AutoencoderKL;
use crate::nn::network::DenoisingNetwork;
use crate::pipeline::DiffusionPipeline;

/// Salt of the step-noise streams, so they never coincide with the data-order streams.
const STEP_NOISE_SALT: u64 = 0x7ea1_5eed_0f5b_edaa;
/// What to change when the loss diverges.
const LOSS_ADVICE: &str = "lower --learning-rate or set --max-grad-norm";
const METRICS_FILE: &str = "metrics.jsonl";
/// Where a latent run keeps its encoded data set.
const LATENT_CACHE: &str = "latent-cache";

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

/// The network being trained (on the autodiff device), its EMA, and AdamW's moments.
struct Weights {
    network: DenoisingNetwork,
    ema: DenoisingNetwork,
    optimizer: AdamW,
}

impl Weights {
    /// One AdamW step of the network with `grads` at `lr`, then the EMA's update with `decay`.
    fn update(&mut self, grads: &mut FlatGradients, lr: f64, decay: f64) -> Result<()> {
        let network = std::mem::replace(&mut self.network, self.ema.clone());
        self.network = self.optimizer.step(network, grads, lr)?;
        let ema = std::mem::replace(&mut self.ema, self.network.valid());
        self.ema = ema_update(ema, &self.network, decay)?;
        Ok(())
    }
}

/// Where a run stands: the steps done, and the data order after them.
#[derive(Debug, Clone, Copy)]
struct Position {
    step: usize,
    order: DataOrder,
}

/// A run ready to train: data loaded, network built or restored, output folder checked.
pub struct Trainer {
    config: TrainConfig,
    model_config: ModelConfig,
    dataset: Arc<Dataset>,
    objective: Objective,
    device: Device,
    train_device: Device,
    weights: Weights,
    position: Position,
    metrics: MetricsLog,
    /// Latent diffusion's autoencoder (scaling factor set); `None` in pixel space.
    vae: Option<AutoencoderKL>,
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

/// The data the network trains on and, for latent diffusion, the autoencoder whose latents they
/// are (encoding reports images done to `progress` unless the run's cache holds them).
fn load_run_data(
    config: &TrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Dataset, Option<AutoencoderKL>)> {
    let dataset = load_dataset(config)?;
    let Some(vae_dir) = &config.autoencoder else {
        return Ok((dataset, None));
    };
    let cache = config.out.join(LATENT_CACHE);
    let latent = latents::encode_dataset(&dataset, vae_dir, &cache, device, progress)
        .map_err(|e| DiffuseError::config(format!("--autoencoder {}: {e}", vae_dir.display())))?;
    Ok((latent.dataset, Some(latent.vae)))
}

/// The classes a run conditions on: the dataset's, when `--class-conditional` asks for them.
fn run_classes(config: &TrainConfig, dataset: &Dataset) -> Result<Option<usize>> {
    match (config.class_conditional, dataset.num_classes()) {
        (false, _) => Ok(None),
        (true, 0) => Err(DiffuseError::config(format!(
            "--class-conditional needs labelled data; `{}` has no classes",
            config.dataset
        ))),
        (true, k) => Ok(Some(k)),
    }
}

/// `model` fitted to the run (a preset) or checked against it (a user's or a pipeline's config).
fn fit_to_run(
    model: ModelConfig,
    config: &TrainConfig,
    dataset: &Dataset,
    is_preset: bool,
) -> Result<ModelConfig> {
    let classes = run_classes(config, dataset)?;
    let learned_variance = config.variance()?.is_learned();
    model.fitted(dataset, classes, learned_variance, is_preset)
}

/// The network `config` asks for (a preset or a config file), fitted to `dataset`.
fn fitted_model_config(config: &TrainConfig, dataset: &Dataset) -> Result<ModelConfig> {
    match &config.model_config {
        Some(path) => fit_to_run(ModelConfig::from_file(path)?, config, dataset, false),
        None => fit_to_run(
            ModelConfig::preset(&config.preset, dataset.kind)?,
            config,
            dataset,
            true,
        ),
    }
}

/// One micro-batch as a training step consumes it: clean samples [B, C, H, W] row-major, their
/// labels, and the randomness of their loss.
#[derive(Debug, Clone, PartialEq)]
pub struct MicroBatch {
    pub values: Vec<f32>,
    pub labels: Option<Vec<usize>>,
    pub draw: LossDraw,
    /// Where the run's data stream stands after this batch (what a checkpoint saves); `None` for
    /// batches from elsewhere, which leave it where it was.
    pub order_after: Option<DataOrder>,
}

/// Where a step's micro-batches come from. [`Trainer::run`] takes them from the data loader and
/// the run's seeded noise streams; a replay of a recorded run (the parity tests against PyTorch
/// + diffusers) hands its own to [`Trainer::step_with`].
pub trait StepInputs {
    /// Micro-batch `micro` of the 0-based step `step`. `objective` draws the randomness of a
    /// fresh one; it may have learned from the previous micro-batch (importance sampling).
    fn micro_batch(&mut self, objective: &Objective, step: usize, micro: usize) -> MicroBatch;
}

/// A run's own inputs: batches from its loader, and for micro-batch k of the run (counted over
/// all steps) the k-th stream of its seeded step-noise generator, so a resumed run draws the
/// same noise.
struct SeededInputs<'a> {
    loader: &'a mut BatchLoader,
    seed: u64,
    accumulation: usize,
    sample_shape: [usize; 3],
    class_table: Option<usize>,
}

impl StepInputs for SeededInputs<'_> {
    fn micro_batch(&mut self, objective: &Objective, step: usize, micro: usize) -> MicroBatch {
        let batch = self.loader.next_batch();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ STEP_NOISE_SALT);
        rng.set_stream((step * self.accumulation + micro) as u64);
        let [c, h, w] = self.sample_shape;
        let clean = CleanBatch {
            values: &batch.values,
            shape: [batch.size, c, h, w],
            labels: batch.labels.as_deref(),
        };
        let draw = objective.draw(&mut rng, &clean, self.class_table);
        MicroBatch {
            values: batch.values,
            labels: batch.labels,
            draw,
            order_after: Some(batch.order_after),
        }
    }
}

impl Trainer {
    /// Starts a new run on `device`. Refuses an `out` folder that already holds checkpoints.
    pub fn new(config: TrainConfig, device: &Device) -> Result<Self> {
        Self::new_reporting(config, device, &mut |_, _| {})
    }

    /// [`Trainer::new`], reporting (images done, total) while a latent run encodes its data.
    pub fn new_reporting(
        config: TrainConfig,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        config.validate()?;
        if config.out.join("checkpoints/LATEST").exists() {
            return Err(DiffuseError::config(format!(
                "{} already holds a run: continue it with --resume {0} or pick another --out",
                config.out.display()
            )));
        }
        let (dataset, vae) = load_run_data(&config, device, progress)?;
        let mut trainer = Self::from_dataset(config, dataset, device)?;
        trainer.vae = vae;
        prepare_out_dir(&trainer.config.out, &["checkpoints"])?;
        Ok(trainer)
    }

    /// A new run on data already in memory; nothing is written until it runs.
    pub fn from_dataset(config: TrainConfig, dataset: Dataset, device: &Device) -> Result<Self> {
        config.validate()?;
        let model_config = fitted_model_config(&config, &dataset)?;
        let network = seeded_init(device, config.seed, |device| model_config.build(device))?;
        Self::starting_from(config, model_config, dataset, network, device)
    }

    /// A new run on data in memory that starts from the network of the pipeline folder `dir`
    /// (its config must fit the data and the run's classes and variance type) instead of a
    /// seeded initialisation; the config's preset and model config are not used.
    pub fn from_pipeline(
        config: TrainConfig,
        dataset: Dataset,
        dir: &Path,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let network = DiffusionPipeline::load(dir, device)?.network;
        let model_config = fit_to_run(network.model_config(), &config, &dataset, false)
            .map_err(|e| DiffuseError::config(format!("pipeline {}: {e}", dir.display())))?;
        Self::starting_from(config, model_config, dataset, network, device)
    }

    /// A run at step 0 from `network`, its EMA a copy of it.
    fn starting_from(
        config: TrainConfig,
        model_config: ModelConfig,
        dataset: Dataset,
        network: DenoisingNetwork,
        device: &Device,
    ) -> Result<Self> {
        let weights = Weights {
            network: network.clone(),
            ema: network,
            optimizer: AdamW::new(config.adam()),
        };
        let position = Position {
            step: 0,
            order: DataOrder::new(config.seed),
        };
        Self::assemble(config, model_config, dataset, weights, position, device)
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
        let (dataset, vae) = load_run_data(&config, device, &mut |_, _| {})?;
        if saved.state.class_names != dataset.class_names {
            return Err(DiffuseError::config(
                "the dataset's classes differ from those the run was started with",
            ));
        }
        let config_path = saved.dir.join(checkpoint::MODEL_CONFIG);
        let model_config = ModelConfig::from_file(&config_path)?;
        prepare_out_dir(&config.out, &["checkpoints"])?;
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
        let weights = Weights {
            network,
            ema,
            optimizer,
        };
        let position = Position {
            step: saved.state.step,
            order: saved.state.data_order,
        };
        let mut trainer = Self::assemble(config, model_config, dataset, weights, position, device)?;
        trainer.vae = vae;
        if let (TimestepSampling::Importance(history), Some(saved)) =
            (&mut trainer.objective.timesteps, saved.state.loss_history)
        {
            *history = saved;
        }
        trainer.metrics =
            MetricsLog::resumed(trainer.config.out.join(METRICS_FILE), position.step)?;
        Ok(trainer)
    }

    /// The trainer of `weights` at `position`; the network moves to the autodiff device.
    fn assemble(
        config: TrainConfig,
        model_config: ModelConfig,
        dataset: Dataset,
        weights: Weights,
        position: Position,
        device: &Device,
    ) -> Result<Self> {
        let train_device = device.clone().autodiff();
        let settings = ObjectiveSettings {
            prediction_type: config.prediction()?,
            min_snr_gamma: config.min_snr_gamma,
            offset_noise: config.offset_noise,
            label_dropout: config.label_dropout,
            vlb_weight: config.vlb_weight,
        };
        let objective = Objective {
            schedule: config.schedule()?,
            settings,
            timesteps: config.timestep_sampling()?,
        };
        Ok(Self {
            objective,
            weights: Weights {
                network: weights.network.to_device(&train_device).train(),
                ..weights
            },
            position,
            metrics: MetricsLog::new(config.out.join(METRICS_FILE)),
            model_config,
            dataset: Arc::new(dataset),
            device: device.clone(),
            train_device,
            config,
            vae: None,
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
        self.position.step
    }

    pub fn num_parameters(&self) -> usize {
        self.weights.ema.num_params()
    }

    /// The logged metrics, oldest first.
    pub fn metrics(&self) -> &[MetricsLine] {
        self.metrics.lines()
    }

    /// The weights being trained (on the autodiff device).
    pub fn network(&self) -> &DenoisingNetwork {
        &self.weights.network
    }

    /// The EMA of the weights, what the run exports.
    pub fn ema(&self) -> &DenoisingNetwork {
        &self.weights.ema
    }

    /// Trains until `config.steps`, until `deadline`, or until `stop` is raised; every way out
    /// saves a checkpoint and exports the pipeline folder.
    pub fn run(
        mut self,
        observer: &mut dyn TrainObserver,
        stop: &AtomicBool,
        deadline: Option<Instant>,
    ) -> Result<TrainSummary> {
        let _held = RunLock::acquire(&self.config.out)?;
        let total = self.config.steps;
        observer.started(self.position.step, Some(total));
        self.metrics.open()?;
        let mut loader = self.batch_loader();
        let mut inputs = self.seeded_inputs(&mut loader);
        let started = Instant::now();
        let first_step = self.position.step;
        let limits = StopConditions { stop, deadline };
        let mut guard = LossGuard::new(LOSS_ADVICE);
        let stop_reason = loop {
            if self.position.step >= total {
                break StopReason::Finished;
            }
            if let Some(reason) = limits.reached() {
                break reason;
            }
            let stats = self.train_step(&mut inputs, &guard)?;
            self.after_step(stats, &mut guard, observer)?;
        };
        let run = RunEnd {
            stop: stop_reason,
            started,
            first_step,
        };
        self.finish(run, &guard, observer)
    }

    /// Reports the step, and writes its metrics line, checkpoint and sample grid when due.
    fn after_step(
        &mut self,
        stats: StepStats,
        guard: &mut LossGuard,
        observer: &mut dyn TrainObserver,
    ) -> Result<()> {
        let step = self.position.step;
        observer.step(&StepReport {
            step,
            loss: stats.loss,
            lr: stats.lr,
            accuracy: None,
        });
        self.metrics.count(stats.loss);
        if step.is_multiple_of(self.config.log_every) || step == self.config.steps {
            self.metrics.write(step, stats, self.images_per_step())?;
        }
        if self.config.checkpoint_every > 0 && step.is_multiple_of(self.config.checkpoint_every) {
            guard.checkpointed(step, self.save_checkpoint()?);
            observer.note(&format!("checkpoint at step {step}"));
        }
        if self.config.sample_every > 0 && step.is_multiple_of(self.config.sample_every) {
            let path = self.config.out.join(format!("samples/step-{step:08}.png"));
            self.previews().write(&path)?;
            observer.note(&format!("samples at step {step}: {}", path.display()));
        }
        Ok(())
    }

    /// Saves a checkpoint unless the last one is of this step, exports the pipeline, draws the
    /// loss curve and (unless interrupted) the final sample grid, and writes summary.json.
    fn finish(
        &self,
        run: RunEnd,
        guard: &LossGuard,
        observer: &mut dyn TrainObserver,
    ) -> Result<TrainSummary> {
        let checkpoint = match guard.last_checkpoint() {
            Some((step, dir)) if step == self.position.step => dir.to_path_buf(),
            _ => self.save_checkpoint()?,
        };
        self.export()?;
        let loss_png = self.config.out.join("loss.png");
        write_loss_curve(&loss_png, self.metrics.lines())?;
        let samples_png = match run.stop {
            StopReason::Finished | StopReason::TimeBudget => {
                observer.note("drawing the final sample grid");
                let path = self.config.out.join("samples.png");
                self.previews().write(&path)?.then_some(path)
            }
            StopReason::Interrupted => None,
        };
        let seconds = run.started.elapsed().as_secs_f64();
        let summary = TrainSummary {
            stop: run.stop,
            step: self.position.step,
            total_steps: self.config.steps,
            last_loss: self.metrics.lines().last().map(|m| m.loss_mean),
            seconds,
            images_per_second: ((self.position.step - run.first_step) * self.images_per_step())
                as f64
                / seconds.max(1e-9),
            parameters: self.num_parameters(),
            out: self.config.out.clone(),
            checkpoint,
            samples_png,
            loss_png,
        };
        write_summary(&self.config.out, &summary)?;
        Ok(summary)
    }
    /// Batches from where the run stands, a few prepared ahead.
    fn batch_loader(&self) -> BatchLoader {
        const PREFETCH: usize = 4;
        BatchLoader::new(
            self.dataset.clone(),
            self.config.batch_size,
            self.config.horizontal_flip,
            self.position.order,
            PREFETCH,
        )
    }

    /// Times `steps` optimisation steps after `warmup` untimed ones, with no checkpoints,
    /// metrics or samples: the training step alone, for benchmarks.
    pub fn time_steps(&mut self, warmup: usize, steps: usize) -> Result<Duration> {
        let mut loader = self.batch_loader();
        let mut inputs = self.seeded_inputs(&mut loader);
        let guard = LossGuard::new(LOSS_ADVICE);
        for _ in 0..warmup {
            self.train_step(&mut inputs, &guard)?;
        }
        let start = Instant::now();
        for _ in 0..steps {
            self.train_step(&mut inputs, &guard)?;
        }
        Ok(start.elapsed())
    }

    /// The run's own micro-batches, from `loader`.
    fn seeded_inputs<'a>(&self, loader: &'a mut BatchLoader) -> SeededInputs<'a> {
        SeededInputs {
            loader,
            seed: self.config.seed,
            accumulation: self.config.grad_accumulation,
            sample_shape: self.dataset.sample_shape,
            class_table: self.weights.network.class_table_size(),
        }
    }

    /// One optimisation step on the micro-batches `inputs` hands out, with nothing logged or
    /// saved: how a replay of a recorded run drives the trainer.
    pub fn step_with(&mut self, inputs: &mut dyn StepInputs) -> Result<StepStats> {
        self.train_step(inputs, &LossGuard::new(LOSS_ADVICE))
    }

    fn images_per_step(&self) -> usize {
        self.config.batch_size * self.config.grad_accumulation
    }

    /// One optimisation step over `grad_accumulation` micro-batches.
    fn train_step(&mut self, inputs: &mut dyn StepInputs, guard: &LossGuard) -> Result<StepStats> {
        let mut grads: Option<FlatGradients> = None;
        let mut loss_sum = 0.0;
        let mut order_after = self.position.order;
        for micro in 0..self.config.grad_accumulation {
            let batch = inputs.micro_batch(&self.objective, self.position.step, micro);
            let (value, step_grads) = self.micro_batch(&batch, guard)?;
            loss_sum += value;
            match grads.as_mut() {
                Some(total) => total.accumulate(step_grads),
                None => grads = Some(step_grads),
            }
            order_after = batch.order_after.unwrap_or(order_after);
        }
        let mut grads = grads.expect("grad_accumulation is at least 1");
        let grad_norm = grads.global_norm()?;
        if self.config.max_grad_norm > 0.0 {
            grads.scale(clip_factor(grad_norm, self.config.max_grad_norm));
        }
        // The denoiser's schedule goes by steps alone.
        let lr = self
            .config
            .learning_rate_schedule()
            .rate(self.position.step, Duration::ZERO);
        let decay = self.config.ema().decay(self.position.step as u64 + 1);
        self.weights.update(&mut grads, lr, decay)?;
        self.position = Position {
            step: self.position.step + 1,
            order: order_after,
        };
        Ok(StepStats {
            loss: loss_sum,
            grad_norm,
            lr,
        })
    }

    /// The loss of one micro-batch (its share of the step's mean) and its gradients.
    fn micro_batch(
        &mut self,
        batch: &MicroBatch,
        guard: &LossGuard,
    ) -> Result<(f64, FlatGradients)> {
        let accumulation = self.config.grad_accumulation;
        let [c, h, w] = self.dataset.sample_shape;
        let clean = CleanBatch {
            values: &batch.values,
            shape: [batch.values.len() / (c * h * w), c, h, w],
            labels: batch.labels.as_deref(),
        };
        let network = &self.weights.network;
        let batch_loss = self
            .objective
            .loss(network, &clean, &batch.draw, &self.train_device)?;
        self.objective.record(&batch_loss)?;
        let loss = batch_loss.loss / accumulation as f64;
        let value = batch_loss.value / accumulation as f64;
        guard.check(value, self.position.step + 1)?;
        let grads = FlatGradients::from_backward(loss.backward(), &self.weights.network);
        Ok((value, grads))
    }

    /// Writes a checkpoint of the current step and returns its folder.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let (optimizer, optimizer_updates) = self.weights.optimizer.state_to_host()?;
        let tensors = CheckpointTensors {
            model: parameters_to_host(&self.weights.network)?,
            ema: parameters_to_host(&self.weights.ema)?,
            optimizer,
        };
        let state = TrainingState {
            step: self.position.step,
            optimizer_updates,
            data_order: self.position.order,
            rng: format!(
                "ChaCha8, seed {} ^ {STEP_NOISE_SALT:#x}, next stream {}",
                self.config.seed,
                self.position.step * self.config.grad_accumulation
            ),
            class_names: self.dataset.class_names.clone(),
            config: self.config.clone(),
            loss_history: match &self.objective.timesteps {
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
        let dir = checkpoint::commit(&checkpoints, &incomplete, self.position.step)?;
        write_atomically(
            &self.config.out.join("train_config.toml"),
            self.config.to_toml().as_bytes(),
        )?;
        Ok(dir)
    }

    /// Writes `out` as a diffusers pipeline folder holding the EMA weights (and the autoencoder,
    /// its scaling factor recorded, for latent diffusion).
    pub fn export(&self) -> Result<()> {
        DiffusionPipeline {
            network: self.weights.ema.clone(),
            scheduler: self.config.scheduler_config(self.pixel_images())?,
            vae: self.vae.clone(),
        }
        .save(&self.config.out)
    }

    /// Whether the network denoises images in [−1, 1] (whose x̂₀ samplers clip), not latents or
    /// vectors.
    fn pixel_images(&self) -> bool {
        self.dataset.kind == DataKind::Images && self.vae.is_none()
    }

    /// The autoencoder of a latent run.
    pub fn autoencoder(&self) -> Option<&AutoencoderKL> {
        self.vae.as_ref()
    }

    /// What the sample grids are drawn from: the EMA weights of this run.
    pub fn previews(&self) -> SamplePreview<'_> {
        SamplePreview {
            network: &self.weights.ema,
            vae: self.vae.as_ref(),
            prediction_type: self.objective.settings.prediction_type,
            schedule: &self.objective.schedule,
            dataset: &self.dataset,
            config: &self.config,
            device: &self.device,
        }
    }
}

/// How the step loop of [`Trainer::run`] ended: why, when the run began, and at which step.
struct RunEnd {
    stop: StopReason,
    started: Instant,
    first_step: usize,
}
