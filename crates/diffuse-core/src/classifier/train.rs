//! Training a noise-aware classifier: cross-entropy on x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε with
//! t ~ U{0, …, T−1} for a fraction of each batch and clean images for the rest, so that one
//! network both guides sampling at every noise level and classifies clean images well; AdamW
//! with warm-up and cosine decay; accuracy on held-out images at a few noise levels at the end.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::tensor::{DType, Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::config::{ClassifierConfig, ClassifierSchedule, NORM_GROUPS};
use super::guidance::{log_likelihood, one_hot};
use super::model::{CONFIG_FILE, NoiseAwareClassifier, WEIGHTS_FILE};
use crate::data::loader::{BatchLoader, DataOrder};
use crate::data::{ColorMode, DataKind, Dataset, DatasetSource, LoadOptions, Split};
use crate::error::{DiffuseError, Result};
use crate::noise::SeededNoise;
use crate::process::forward::q_sample;
use crate::process::schedule::NoiseSchedule;
use crate::tensor_ops::to_host_f64;
use crate::train::objective::draw_noise;
use crate::train::optimizer::{AdamW, AdamWSettings, FlatGradients, clip_factor};
use crate::train::plumbing::{
    Annealing, LossGuard, LrSchedule, StepReport, StopConditions, StopReason, TrainObserver,
    prepare_out_dir, seeded_init, write_summary,
};
use crate::train::timesteps::draw_uniform_timesteps;

/// Salts of the step noise, the evaluation noise and the held-out split, so that none of them
/// coincides with the data-order streams of the same seed.
const STEP_NOISE_SALT: u64 = 0xc1a5_51f1_e4ee_d001;
const EVAL_NOISE_SALT: u64 = 0xc1a5_51f1_e4a1_0002;
const HELD_OUT_SALT: u64 = 0xc1a5_51f1_e4e1_d003;
/// Share of an image folder held out for evaluation (it has no test split).
const HELD_OUT_FRACTION: f64 = 0.1;
/// Steps the reported loss and accuracy are averaged over.
const REPORT_WINDOW: usize = 50;
pub(crate) const EVAL_BATCH: usize = 256;
/// What to change when the loss diverges.
const LOSS_ADVICE: &str = "lower --learning-rate";

/// Everything that defines a classifier run.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierTrainSettings {
    /// `mnist`, `fashion-mnist` or a folder of images in class sub-folders.
    pub dataset: String,
    /// Folder of the mnist/fashion-mnist idx files (default `../shared/data/<name>/`).
    pub data_dir: Option<PathBuf>,
    /// Image folders: side of the square crop.
    pub resolution: usize,
    /// Image folders: gray or rgb.
    pub color: ColorMode,
    /// The classifier folder to write; it must not hold one already.
    pub out: PathBuf,
    /// Optimisation steps; `None` trains until the time budget.
    pub steps: Option<usize>,
    /// Wall-clock limit of the training steps (the evaluation not included). With both limits,
    /// whichever comes first ends the run, and the learning rate anneals to zero by it.
    pub time_budget: Option<Duration>,
    pub batch_size: usize,
    /// Peak AdamW learning rate.
    pub learning_rate: f64,
    pub warmup_steps: usize,
    /// Decoupled weight decay of AdamW.
    pub weight_decay: f64,
    /// Global gradient-norm bound (0: no clipping).
    pub max_grad_norm: f64,
    /// Share of each batch noised to a random t; the rest is seen clean (t = 0).
    pub noisy_fraction: f64,
    /// Seed of the initial weights, data order and noise.
    pub seed: u64,
    pub schedule: ClassifierSchedule,
    /// The network's level widths (multiples of 8) and residual blocks per level.
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    /// Timesteps the final accuracy is measured at (default 0, T/4, T/2, 3T/4).
    pub eval_timesteps: Option<Vec<usize>>,
    /// Evaluate on the first N held-out images only (default: all of them).
    pub eval_samples: Option<usize>,
}

impl Default for ClassifierTrainSettings {
    fn default() -> Self {
        Self {
            dataset: String::new(),
            data_dir: None,
            resolution: 32,
            color: ColorMode::Rgb,
            out: PathBuf::from("out/classifier"),
            steps: Some(4000),
            time_budget: None,
            batch_size: 64,
            learning_rate: 2e-3,
            warmup_steps: 50,
            weight_decay: 1e-4,
            max_grad_norm: 1.0,
            noisy_fraction: 0.25,
            seed: 0,
            schedule: ClassifierSchedule::default(),
            block_out_channels: vec![16, 32, 64],
            layers_per_block: 1,
            eval_timesteps: None,
            eval_samples: None,
        }
    }
}

impl ClassifierTrainSettings {
    /// Checks every value, and that `out` holds no classifier yet, before any data is read or any
    /// file written.
    pub fn validate(&self) -> Result<()> {
        refuse_existing_classifier(&self.out)?;
        if self.dataset.is_empty() {
            return Err(DiffuseError::config("no dataset given (--dataset)"));
        }
        if self.steps.is_none() && self.time_budget.is_none() {
            return Err(DiffuseError::config(
                "give a step count, a time budget or both",
            ));
        }
        let positive = [
            ("steps", self.steps.unwrap_or(1)),
            ("batch_size", self.batch_size),
            ("resolution", self.resolution),
            ("layers_per_block", self.layers_per_block),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(DiffuseError::config(format!("`{name}` must be at least 1")));
        }
        if self.eval_samples == Some(0) {
            return Err(DiffuseError::config("`eval_samples` must be at least 1"));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(DiffuseError::config("`learning_rate` must be positive"));
        }
        if !(0.0..=1.0).contains(&self.noisy_fraction) {
            return Err(DiffuseError::config("`noisy_fraction` must be in [0, 1]"));
        }
        let non_negative = |v: f64| v >= 0.0 && v.is_finite();
        if !(non_negative(self.weight_decay) && non_negative(self.max_grad_norm)) {
            return Err(DiffuseError::config(
                "`weight_decay` and `max_grad_norm` must be non-negative numbers",
            ));
        }
        if self.time_budget.is_some_and(|b| b.is_zero()) {
            return Err(DiffuseError::config("the time budget must be positive"));
        }
        if self.block_out_channels.is_empty()
            || self
                .block_out_channels
                .iter()
                .any(|&c| c == 0 || !c.is_multiple_of(NORM_GROUPS))
        {
            return Err(DiffuseError::config(format!(
                "the level widths {:?} must be one or more positive multiples of {NORM_GROUPS}",
                self.block_out_channels
            )));
        }
        let last = self.schedule.schedule()?.num_train_timesteps() - 1;
        if let Some(bad) = self.eval_timesteps().iter().find(|&&t| t > last) {
            return Err(DiffuseError::config(format!(
                "evaluation timestep {bad} is outside 0..={last}"
            )));
        }
        Ok(())
    }

    /// The timesteps of the final evaluation: those given, or 0, T/4, T/2 and 3T/4.
    pub fn eval_timesteps(&self) -> Vec<usize> {
        let t = self.schedule.num_train_timesteps;
        self.eval_timesteps
            .clone()
            .unwrap_or_else(|| vec![0, t / 4, t / 2, 3 * t / 4])
    }

    /// Warm-up, then half a cosine to zero over the run: by `steps` or by `time_budget`,
    /// whichever is further along.
    pub fn learning_rate_schedule(&self) -> LrSchedule {
        LrSchedule {
            peak: self.learning_rate,
            warmup: self.warmup_steps,
            annealing: Annealing::CosineOverRun {
                steps: self.steps,
                time_budget: self.time_budget,
            },
        }
    }
}

/// Labelled images to train on and the held-out images to measure accuracy on.
#[derive(Debug, Clone)]
pub struct ClassifierData {
    pub train: Dataset,
    pub eval: Dataset,
    /// What `eval` is, for the summary: the test split, or images held out of the training set.
    pub eval_split: String,
}

impl ClassifierData {
    /// Checks that both sets are labelled images of the same shape and classes.
    pub fn new(train: Dataset, eval: Dataset, eval_split: impl Into<String>) -> Result<Self> {
        if train.kind != DataKind::Images || train.num_classes() < 2 {
            return Err(DiffuseError::config(
                "a classifier trains on images in at least 2 classes (mnist, fashion-mnist, or a \
                 folder with one sub-folder of images per class)",
            ));
        }
        if eval.sample_shape != train.sample_shape || eval.class_names != train.class_names {
            return Err(DiffuseError::config(format!(
                "the evaluation images ({:?}, classes {:?}) do not match the training images \
                 ({:?}, classes {:?})",
                eval.sample_shape, eval.class_names, train.sample_shape, train.class_names
            )));
        }
        if eval.labels.is_none() {
            return Err(DiffuseError::config("the evaluation images have no labels"));
        }
        Ok(Self {
            train,
            eval,
            eval_split: eval_split.into(),
        })
    }

    /// The training images of `settings.dataset` and its test split, or for an image folder,
    /// a seeded tenth of it held out. `eval_samples` keeps the first N evaluation images.
    pub fn load(settings: &ClassifierTrainSettings) -> Result<Self> {
        let source = DatasetSource::parse(&settings.dataset, settings.data_dir.as_deref())?;
        let options = |split| LoadOptions {
            split,
            resolution: settings.resolution,
            color: settings.color,
            seed: settings.seed,
            ..LoadOptions::default()
        };
        let all = source.load(&options(Split::Train))?;
        let data = match source {
            DatasetSource::Idx { .. } => {
                Self::new(all, source.load(&options(Split::Test))?, "test split")?
            }
            DatasetSource::ImageFolder(_) => Self::held_out(all, settings.seed)?,
            DatasetSource::Csv(_) | DatasetSource::Toy(_) => {
                return Err(DiffuseError::config(format!(
                    "`{}` is vector data; a classifier trains on images",
                    settings.dataset
                )));
            }
        };
        match settings.eval_samples {
            Some(n) if n < data.eval.len() => {
                let first: Vec<usize> = (0..n).collect();
                Ok(Self {
                    eval: data.eval.subset(&first)?,
                    ..data
                })
            }
            _ => Ok(data),
        }
    }

    /// Splits a set without a test split: a seeded permutation, the last tenth held out.
    fn held_out(all: Dataset, seed: u64) -> Result<Self> {
        if all.len() < 2 {
            return Err(DiffuseError::config(
                "a classifier needs at least 2 images: one to train on, one to evaluate",
            ));
        }
        let mut order: Vec<usize> = (0..all.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ HELD_OUT_SALT));
        let held = ((all.len() as f64 * HELD_OUT_FRACTION).round() as usize).max(1);
        let (train, eval) = order.split_at(all.len() - held);
        let split = format!("{held} images held out of the {} in the folder", all.len());
        Self::new(all.subset(train)?, all.subset(eval)?, split)
    }
}

/// The accuracy on the evaluation images noised to one timestep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimestepAccuracy {
    pub timestep: usize,
    pub accuracy: f64,
}

/// What a run did, also written as `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierSummary {
    pub stop: StopReason,
    pub step: usize,
    pub total_steps: Option<usize>,
    /// Seconds of training (the evaluation not included).
    pub seconds: f64,
    pub images_per_second: f64,
    pub parameters: usize,
    pub dataset: String,
    /// Mean cross-entropy and accuracy of the last training batches (noisy and clean rows);
    /// `None` when no step ran.
    pub train_loss: Option<f64>,
    pub train_accuracy: Option<f64>,
    /// What the accuracies were measured on, and how many images.
    pub eval_split: String,
    pub eval_samples: usize,
    /// Accuracy at each evaluation timestep; t = 0 is the clean image.
    pub accuracy: Vec<TimestepAccuracy>,
    pub out: PathBuf,
}

impl ClassifierSummary {
    /// The accuracy on clean images, if it was measured.
    pub fn clean_accuracy(&self) -> Option<f64> {
        self.accuracy
            .iter()
            .find(|a| a.timestep == 0)
            .map(|a| a.accuracy)
    }
}

/// A classifier is never overwritten by another run.
fn refuse_existing_classifier(out: &Path) -> Result<()> {
    if out.join(CONFIG_FILE).exists() || out.join(WEIGHTS_FILE).exists() {
        return Err(DiffuseError::config(format!(
            "{} already holds a classifier; pick another --out",
            out.display()
        )));
    }
    Ok(())
}

/// ᾱ of the input at timestep `t`: evaluation at t = 0 means the clean image, as in training.
fn eval_alpha_bar(schedule: &NoiseSchedule, t: usize) -> f64 {
    if t == 0 { 1.0 } else { schedule.alpha_bar(t) }
}

pub(crate) fn host_images(values: Vec<f32>, shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, shape), (device, DType::F32))
}

/// The class of the largest logit of each row.
pub(crate) fn predictions(logits: Tensor<2>) -> Result<Vec<usize>> {
    let [_, k] = logits.dims();
    let values = to_host_f64(logits)?;
    Ok(values
        .chunks(k)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                })
                .0
        })
        .collect())
}

pub(crate) fn fraction_correct(predicted: &[usize], labels: &[usize]) -> f64 {
    let hits = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
    hits as f64 / labels.len() as f64
}

/// The classifier's accuracy on `data` noised to timestep `t` (t = 0: clean), with noise
/// seeded per image so the figure does not depend on batching or device.
pub fn accuracy(
    classifier: &NoiseAwareClassifier,
    data: &Dataset,
    t: usize,
    seed: u64,
) -> Result<f64> {
    let labels = data
        .labels
        .as_deref()
        .ok_or_else(|| DiffuseError::config("accuracy needs labelled images"))?;
    let schedule = classifier.config().schedule.schedule()?;
    if t >= schedule.num_train_timesteps() {
        return Err(DiffuseError::config(format!(
            "timestep {t} is outside the classifier's 0..{}",
            schedule.num_train_timesteps()
        )));
    }
    let network = classifier.valid();
    let device = network.devices()[0].clone();
    let [c, h, w] = data.sample_shape;
    let mut predicted = Vec::with_capacity(data.len());
    for start in (0..data.len()).step_by(EVAL_BATCH) {
        let end = (start + EVAL_BATCH).min(data.len());
        let shape = [end - start, c, h, w];
        let n = data.sample_numel();
        let x0 = host_images(data.values[start * n..end * n].to_vec(), shape, &device);
        let noise =
            SeededNoise::new(seed ^ EVAL_NOISE_SALT, start..end).next(shape, &device, DType::F32);
        let x_t = q_sample(x0, noise, &vec![eval_alpha_bar(&schedule, t); end - start]);
        let logits = network.forward(x_t, &vec![t as f64; end - start])?;
        predicted.extend(predictions(logits)?);
    }
    Ok(fraction_correct(&predicted, labels))
}

/// Means of the last [`REPORT_WINDOW`] steps' loss and accuracy.
#[derive(Default)]
struct RecentMeans(VecDeque<(f64, f64)>);

impl RecentMeans {
    fn push(&mut self, loss: f64, accuracy: f64) -> (f64, f64) {
        if self.0.len() == REPORT_WINDOW {
            self.0.pop_front();
        }
        self.0.push_back((loss, accuracy));
        let n = self.0.len() as f64;
        let (l, a) = self
            .0
            .iter()
            .fold((0.0, 0.0), |s, v| (s.0 + v.0, s.1 + v.1));
        (l / n, a / n)
    }
}

/// One batch with its noise drawn: x_t, timesteps and labels, on the host.
struct NoisyBatch {
    x_t: Tensor<4>,
    timesteps: Vec<f64>,
    labels: Vec<usize>,
}

/// The first `noisy_fraction` of the rows get t ~ U{0, …, T−1} and x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε
/// (DDPM Eq. 4); the others stay clean (ᾱ = 1, t = 0). The loader shuffles, so which rows are
/// noisy is random too.
fn noisy_batch(
    settings: &ClassifierTrainSettings,
    schedule: &NoiseSchedule,
    loader: &mut BatchLoader,
    shape: [usize; 4],
    step: usize,
    device: &Device,
) -> NoisyBatch {
    let batch = loader.next_batch();
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed ^ STEP_NOISE_SALT);
    rng.set_stream(step as u64);
    let noisy = (settings.noisy_fraction * shape[0] as f64).round() as usize;
    let mut timesteps = draw_uniform_timesteps(&mut rng, noisy, schedule.num_train_timesteps());
    let mut alpha_bars: Vec<f64> = timesteps.iter().map(|&t| schedule.alpha_bar(t)).collect();
    timesteps.resize(shape[0], 0);
    alpha_bars.resize(shape[0], 1.0);
    let noise = host_images(draw_noise(&mut rng, shape, 0.0), shape, device);
    let x0 = host_images(batch.values, shape, device);
    NoisyBatch {
        x_t: q_sample(x0, noise, &alpha_bars),
        timesteps: timesteps.iter().map(|&t| t as f64).collect(),
        labels: batch
            .labels
            .expect("ClassifierData only holds labelled images"),
    }
}

/// The network `settings` describe for `data`, initialised from the seed.
fn initial_network(
    settings: &ClassifierTrainSettings,
    data: &Dataset,
    device: &Device,
) -> Result<NoiseAwareClassifier> {
    let config = ClassifierConfig {
        block_out_channels: settings.block_out_channels.clone(),
        layers_per_block: settings.layers_per_block,
        ..ClassifierConfig::for_data(
            data.sample_shape,
            data.class_names.clone(),
            &settings.dataset,
            settings.schedule.clone(),
        )
    };
    seeded_init(device, settings.seed, |device| {
        NoiseAwareClassifier::new(&config, device)
    })
}

/// AdamW with global-norm clipping, and the guard against a diverging loss.
struct Optimisation {
    adam: AdamW,
    max_grad_norm: f64,
    guard: LossGuard,
}

impl Optimisation {
    /// Step `step` (1-based) of AdamW on the mean cross-entropy −log p(y | x_t, t) of `batch`;
    /// returns the network and the batch's loss and accuracy.
    fn step(
        &mut self,
        network: NoiseAwareClassifier,
        batch: NoisyBatch,
        step: usize,
        lr: f64,
    ) -> Result<(NoiseAwareClassifier, f64, f64)> {
        let logits = network.forward(batch.x_t, &batch.timesteps)?;
        let targets = one_hot(&batch.labels, network.config().num_classes, &logits)?;
        let loss = log_likelihood(logits.clone(), targets).mean().neg();
        let loss_value = to_host_f64(loss.clone().inner())?[0];
        let accuracy = fraction_correct(&predictions(logits.inner())?, &batch.labels);
        self.guard.check(loss_value, step)?;
        let mut grads = FlatGradients::from_backward(loss.backward(), &network);
        if self.max_grad_norm > 0.0 {
            grads.scale(clip_factor(grads.global_norm()?, self.max_grad_norm));
        }
        Ok((
            self.adam.step(network, &mut grads, lr)?,
            loss_value,
            accuracy,
        ))
    }
}

/// The accuracy at every evaluation timestep.
fn evaluate(
    network: &NoiseAwareClassifier,
    data: &Dataset,
    settings: &ClassifierTrainSettings,
    observer: &mut dyn TrainObserver,
) -> Result<Vec<TimestepAccuracy>> {
    settings
        .eval_timesteps()
        .into_iter()
        .map(|t| {
            observer.note(&format!("evaluating on {} images at t = {t}", data.len()));
            Ok(TimestepAccuracy {
                timestep: t,
                accuracy: accuracy(network, data, t, settings.seed)?,
            })
        })
        .collect()
}

/// Trains a classifier on `data`, saves it to `settings.out` (config.json, model.safetensors),
/// measures its accuracy on `data.eval` at the evaluation timesteps and writes summary.json.
/// Stops after `settings.steps`, at the time budget, or when `stop` is raised; every way out
/// saves and evaluates.
pub fn train_classifier(
    settings: &ClassifierTrainSettings,
    data: ClassifierData,
    device: &Device,
    observer: &mut dyn TrainObserver,
    stop: &AtomicBool,
) -> Result<ClassifierSummary> {
    settings.validate()?;
    let network = initial_network(settings, &data.train, device)?;
    prepare_out_dir(&settings.out, &[])?;
    let parameters = network.num_params();
    let ClassifierData {
        train,
        eval,
        eval_split,
    } = data;
    let trained = train_steps(settings, network, train, device, observer, stop)?;
    let network = trained.network.valid();
    network.save(&settings.out)?;
    observer.note(&format!("classifier saved to {}", settings.out.display()));
    let summary = ClassifierSummary {
        stop: trained.stop,
        step: trained.step,
        total_steps: settings.steps,
        seconds: trained.seconds,
        images_per_second: (trained.step * settings.batch_size) as f64 / trained.seconds.max(1e-9),
        parameters,
        dataset: settings.dataset.clone(),
        train_loss: trained.means.map(|m| m.0),
        train_accuracy: trained.means.map(|m| m.1),
        accuracy: evaluate(&network, &eval, settings, observer)?,
        eval_split,
        eval_samples: eval.len(),
        out: settings.out.clone(),
    };
    write_summary(&settings.out, &summary)?;
    Ok(summary)
}

/// What the training steps leave: the network (on the autodiff device), why they stopped, how
/// many ran in how many seconds, and the last recent means of loss and accuracy.
struct Trained {
    network: NoiseAwareClassifier,
    stop: StopReason,
    step: usize,
    seconds: f64,
    means: Option<(f64, f64)>,
}

/// Trains `network` on `train` until the step count, the time budget or `stop`.
fn train_steps(
    settings: &ClassifierTrainSettings,
    network: NoiseAwareClassifier,
    train: Dataset,
    device: &Device,
    observer: &mut dyn TrainObserver,
    stop: &AtomicBool,
) -> Result<Trained> {
    let schedule = settings.schedule.schedule()?;
    let train_device = device.clone().autodiff();
    let mut network = network.to_device(&train_device).train();
    let mut optimisation = Optimisation {
        adam: AdamW::new(AdamWSettings {
            weight_decay: settings.weight_decay,
            ..AdamWSettings::default()
        }),
        max_grad_norm: settings.max_grad_norm,
        guard: LossGuard::new(LOSS_ADVICE),
    };
    let [c, h, w] = train.sample_shape;
    let shape = [settings.batch_size, c, h, w];
    let order = DataOrder::new(settings.seed);
    let mut loader = BatchLoader::new(Arc::new(train), settings.batch_size, false, order, 4);
    let lr_schedule = settings.learning_rate_schedule();

    observer.started(0, settings.steps);
    let started = Instant::now();
    let limits = StopConditions {
        stop,
        deadline: settings.time_budget.and_then(|b| started.checked_add(b)),
    };
    let mut recent = RecentMeans::default();
    let (mut step, mut means) = (0, None);
    let stop_reason = loop {
        if settings.steps.is_some_and(|total| step >= total) {
            break StopReason::Finished;
        }
        if let Some(reason) = limits.reached() {
            break reason;
        }
        let lr = lr_schedule.rate(step, started.elapsed());
        let batch = noisy_batch(settings, &schedule, &mut loader, shape, step, &train_device);
        step += 1;
        let (updated, loss, accuracy) = optimisation.step(network, batch, step, lr)?;
        network = updated;
        let (mean_loss, mean_accuracy) = recent.push(loss, accuracy);
        means = Some((mean_loss, mean_accuracy));
        observer.step(&StepReport {
            step,
            loss: mean_loss,
            lr,
            accuracy: Some(mean_accuracy),
        });
    };
    Ok(Trained {
        network,
        stop: stop_reason,
        step,
        seconds: started.elapsed().as_secs_f64(),
        means,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_without_a_test_split_holds_out_a_seeded_tenth() {
        let names = vec!["a".to_string(), "b".to_string()];
        let values = (0..20).map(|i| i as f32).collect();
        let labels = Some((0..20).map(|i| i % 2).collect());
        let all = Dataset::new([1, 1, 1], values, labels, names, DataKind::Images).unwrap();
        let data = ClassifierData::held_out(all.clone(), 7).unwrap();
        assert_eq!((data.train.len(), data.eval.len()), (18, 2));
        let mut seen: Vec<f32> = [data.train.values, data.eval.values.clone()].concat();
        seen.sort_by(f32::total_cmp);
        assert_eq!(seen, all.values);
        let again = ClassifierData::held_out(all, 7).unwrap();
        assert_eq!(again.eval.values, data.eval.values);
    }

    #[test]
    fn recent_means_forget_old_steps() {
        let mut means = RecentMeans::default();
        assert_eq!(means.push(2.0, 0.0), (2.0, 0.0));
        for _ in 0..REPORT_WINDOW {
            means.push(1.0, 1.0);
        }
        assert_eq!(means.push(1.0, 1.0), (1.0, 1.0));
    }
}
