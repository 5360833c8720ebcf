//! Everything that defines a training run, as one serialisable struct: the TOML config file and
//! the command-line flags are two spellings of it, and every checkpoint stores it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ema::EmaSettings;
use super::optimizer::AdamWSettings;
use super::plumbing::{Annealing, LrDecay, LrSchedule};
use super::timesteps::{LossHistory, TimestepSampling};
use crate::data::ColorMode;
use crate::error::{DiffuseError, Result};
use crate::pipeline::SchedulerConfig;
use crate::process::forward::PredictionType;
use crate::process::schedule::NoiseSchedule;
use crate::process::sde::Sde;
use crate::process::variance::DdpmVariance;

/// A training run. Field names are the TOML keys; the CLI flags are the same names in kebab case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// `mnist`, `fashion-mnist`, a folder of images, a `.csv` file or `toy:NAME`.
    pub dataset: String,
    /// Folder holding the MNIST-style idx files (default `../shared/data/<name>/`).
    pub data_dir: Option<PathBuf>,
    /// Image folders: side of the square crop.
    pub resolution: usize,
    /// Image folders: gray or rgb.
    pub color: ColorMode,
    /// Mirror images left-right at random.
    pub horizontal_flip: bool,
    /// Toy sets: points drawn.
    pub toy_samples: usize,
    /// A built-in model (see [`super::model::PRESETS`]); ignored when `model_config` is set.
    pub preset: String,
    /// A diffusers `config.json` (UNet2DModel, DiTTransformer2DModel) or an MlpDenoiser config.
    pub model_config: Option<PathBuf>,
    /// Latent diffusion: a diffusers AutoencoderKL folder; the images are encoded once (cached
    /// in `out/latent-cache/`) and the network trains on the latents.
    pub autoencoder: Option<PathBuf>,
    /// Total optimisation steps, also when resuming.
    pub steps: usize,
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed into one step.
    pub grad_accumulation: usize,
    pub seed: u64,
    /// The run folder; it becomes a diffusers pipeline folder holding the EMA weights.
    pub out: PathBuf,
    /// Steps between checkpoints (0: only at the end).
    pub checkpoint_every: usize,
    /// Steps between metrics lines.
    pub log_every: usize,
    /// Steps between sample grids (0: only at the end).
    pub sample_every: usize,
    /// DDIM steps used for the sample grids.
    pub sample_steps: usize,
    /// `epsilon`, `sample` or `v_prediction`.
    pub prediction_type: String,
    /// Condition on the dataset's classes (with label dropout for classifier-free guidance).
    pub class_conditional: bool,
    pub label_dropout: f64,
    /// `linear`, `scaled_linear`, `squaredcos_cap_v2` or `sigmoid`.
    pub beta_schedule: String,
    pub beta_start: f64,
    pub beta_end: f64,
    pub num_train_timesteps: usize,
    pub learning_rate: f64,
    pub warmup_steps: usize,
    pub lr_schedule: LrDecay,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
    /// Decoupled weight decay of AdamW.
    pub weight_decay: f64,
    /// Global gradient-norm bound (0: no clipping).
    pub max_grad_norm: f64,
    /// The EMA decay reached after its warm-up.
    pub ema_max_decay: f64,
    /// Warm the EMA decay up as 1 − (1 + step/ema_inv_gamma)^(−ema_power).
    pub ema_warmup: bool,
    pub ema_inv_gamma: f64,
    pub ema_power: f64,
    pub min_snr_gamma: Option<f64>,
    pub offset_noise: f64,
    /// DDPM's reverse variance: `fixed_small`, `fixed_large`, or `learned_range` (improved DDPM:
    /// the model outputs 2 × C channels and trains with the hybrid loss).
    pub variance_type: String,
    /// λ of the hybrid loss L_simple + λ L_vlb (learned_range only).
    pub vlb_weight: f64,
    /// `uniform`, or `importance` (t drawn ∝ √E[L_t²] of L_vlb; learned_range only).
    pub timestep_sampler: String,
    /// Train in continuous time on this SDE (`vp`, `subvp` or `ve`): t ~ U(ε, 1), each at the
    /// discrete timestep of the same SNR. Unset: DDPM's discrete timesteps.
    pub continuous_sde: Option<String>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            dataset: String::new(),
            data_dir: None,
            resolution: 32,
            color: ColorMode::Rgb,
            horizontal_flip: false,
            toy_samples: 10_000,
            preset: "unet-28".into(),
            model_config: None,
            autoencoder: None,
            steps: 1000,
            batch_size: 64,
            grad_accumulation: 1,
            seed: 0,
            out: PathBuf::from("out/run"),
            checkpoint_every: 500,
            log_every: 10,
            sample_every: 0,
            sample_steps: 50,
            prediction_type: "epsilon".into(),
            class_conditional: false,
            label_dropout: 0.1,
            beta_schedule: "linear".into(),
            beta_start: 1e-4,
            beta_end: 0.02,
            num_train_timesteps: 1000,
            learning_rate: 1e-3,
            warmup_steps: 100,
            lr_schedule: LrDecay::Constant,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            ema_max_decay: 0.999,
            ema_warmup: true,
            ema_inv_gamma: 1.0,
            ema_power: 2.0 / 3.0,
            min_snr_gamma: None,
            offset_noise: 0.0,
            variance_type: "fixed_small".into(),
            vlb_weight: 0.001,
            timestep_sampler: "uniform".into(),
            continuous_sde: None,
        }
    }
}

impl TrainConfig {
    /// Parses a TOML config file's text.
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| DiffuseError::config(format!("training config: {e}")))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a training config always serialises")
    }

    /// Checks every value before any data is read or any file written.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("steps", self.steps),
            ("batch_size", self.batch_size),
            ("grad_accumulation", self.grad_accumulation),
            ("log_every", self.log_every),
            ("sample_steps", self.sample_steps),
            ("num_train_timesteps", self.num_train_timesteps),
            ("resolution", self.resolution),
            ("toy_samples", self.toy_samples),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(DiffuseError::config(format!("`{name}` must be at least 1")));
        }
        if self.dataset.is_empty() {
            return Err(DiffuseError::config("no dataset given (--dataset)"));
        }
        self.check_hyperparameters()?;
        self.prediction()?;
        self.schedule()?;
        self.timestep_sampling()?;
        Ok(())
    }

    /// Every real-valued setting is a finite number in its range (NaN fails every comparison, so
    /// each rule is written as what must hold).
    fn check_hyperparameters(&self) -> Result<()> {
        let unit = |v: f64| (0.0..1.0).contains(&v);
        let positive = |v: f64| v > 0.0 && v.is_finite();
        let non_negative = |v: f64| v >= 0.0 && v.is_finite();
        let rules = [
            (
                unit(self.label_dropout),
                "`label_dropout` must be in [0, 1)",
            ),
            (
                positive(self.learning_rate),
                "`learning_rate` must be positive",
            ),
            (
                unit(self.ema_max_decay),
                "`ema_max_decay` must be in [0, 1)",
            ),
            (
                unit(self.adam_beta1) && unit(self.adam_beta2),
                "AdamW betas must be in [0, 1)",
            ),
            (
                positive(self.adam_epsilon),
                "`adam_epsilon` must be positive",
            ),
            (
                non_negative(self.weight_decay),
                "`weight_decay` must be a non-negative number",
            ),
            (
                self.min_snr_gamma.is_none_or(positive),
                "`min_snr_gamma` must be positive",
            ),
            (
                non_negative(self.max_grad_norm) && non_negative(self.offset_noise),
                "`max_grad_norm` and `offset_noise` must be non-negative numbers",
            ),
            (
                non_negative(self.vlb_weight),
                "`vlb_weight` must be a non-negative number",
            ),
            (
                positive(self.ema_inv_gamma) && positive(self.ema_power),
                "`ema_inv_gamma` and `ema_power` must be positive",
            ),
        ];
        match rules.iter().find(|(holds, _)| !holds) {
            Some((_, rule)) => Err(DiffuseError::config(*rule)),
            None => Ok(()),
        }
    }

    /// The reverse variance the model samples with (and, if learned, trains).
    pub fn variance(&self) -> Result<DdpmVariance> {
        self.variance_type.parse()
    }

    /// How training draws timesteps, checked against the variance: importance sampling and the
    /// hybrid loss need each other's L_vlb, which continuous time does not have.
    pub fn timestep_sampling(&self) -> Result<TimestepSampling> {
        let learned = self.variance()?.is_learned();
        let sampling = match (self.timestep_sampler.as_str(), &self.continuous_sde) {
            ("uniform", None) => TimestepSampling::Uniform,
            ("uniform", Some(name)) => TimestepSampling::Continuous(Sde::from_name(name)?),
            ("importance", None) if learned => {
                TimestepSampling::Importance(LossHistory::new(self.num_train_timesteps))
            }
            ("importance", None) => {
                return Err(DiffuseError::config(
                    "`timestep_sampler = importance` weighs timesteps by their L_vlb, which only \
                     a learned variance (variance_type = learned_range) trains",
                ));
            }
            ("importance", Some(_)) => {
                return Err(DiffuseError::config(
                    "importance sampling draws discrete timesteps; it does not combine with \
                     `continuous_sde`",
                ));
            }
            (other, _) => {
                return Err(DiffuseError::UnknownName {
                    kind: "timestep sampler",
                    name: other.to_string(),
                    expected: "uniform, importance",
                });
            }
        };
        if learned && self.continuous_sde.is_some() {
            return Err(DiffuseError::config(
                "a learned variance trains on the discrete-time bound L_vlb; it does not combine \
                 with `continuous_sde`",
            ));
        }
        Ok(sampling)
    }

    /// The config a resumed run uses: `requested` may change only how long the run goes on and
    /// how often it reports; any other difference is an error naming the fields.
    pub fn checked_resume(&self, requested: TrainConfig) -> Result<TrainConfig> {
        const MAY_CHANGE: [&str; 6] = [
            "steps",
            "checkpoint_every",
            "log_every",
            "sample_every",
            "sample_steps",
            "out",
        ];
        let as_map = |c: &TrainConfig| match serde_json::to_value(c) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => unreachable!("a config serialises to an object"),
        };
        let (saved, wanted) = (as_map(self), as_map(&requested));
        let changed: Vec<&str> = saved
            .iter()
            .filter(|(key, value)| {
                !MAY_CHANGE.contains(&key.as_str()) && wanted.get(*key) != Some(value)
            })
            .map(|(key, _)| key.as_str())
            .collect();
        if !changed.is_empty() {
            return Err(DiffuseError::config(format!(
                "a resumed run keeps its training settings; these differ from the saved run: {}                  (only {} may change)",
                changed.join(", "),
                MAY_CHANGE.join(", ")
            )));
        }
        Ok(requested)
    }

    pub fn adam(&self) -> AdamWSettings {
        AdamWSettings {
            beta1: self.adam_beta1,
            beta2: self.adam_beta2,
            epsilon: self.adam_epsilon,
            weight_decay: self.weight_decay,
        }
    }

    /// Warm-up over `warmup_steps`, then `lr_schedule` until step `steps`.
    pub fn learning_rate_schedule(&self) -> LrSchedule {
        LrSchedule {
            peak: self.learning_rate,
            warmup: self.warmup_steps,
            annealing: match self.lr_schedule {
                LrDecay::Constant => Annealing::Constant,
                LrDecay::Cosine => Annealing::CosineAfterWarmup { total: self.steps },
            },
        }
    }

    pub fn ema(&self) -> EmaSettings {
        EmaSettings {
            max_decay: self.ema_max_decay,
            warmup: self.ema_warmup,
            inv_gamma: self.ema_inv_gamma,
            power: self.ema_power,
        }
    }

    pub fn prediction(&self) -> Result<PredictionType> {
        self.prediction_type.parse()
    }

    /// The diffusers `DDPMScheduler` config of the exported pipeline; it also defines the
    /// forward process the model is trained for.
    pub fn scheduler_config(&self, clip_sample: bool) -> Result<SchedulerConfig> {
        let mut config = SchedulerConfig::ddpm(
            &self.beta_schedule,
            self.num_train_timesteps,
            (self.beta_start, self.beta_end),
            self.prediction()?,
            clip_sample,
        );
        config.variance_type = Some(self.variance()?.name().to_string());
        Ok(config)
    }

    /// The forward process the model is trained for.
    pub fn schedule(&self) -> Result<NoiseSchedule> {
        self.scheduler_config(false)?.schedule()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_and_unknown_keys_are_rejected() {
        let config = TrainConfig {
            dataset: "toy:moons".into(),
            min_snr_gamma: Some(5.0),
            ..TrainConfig::default()
        };
        assert_eq!(TrainConfig::from_toml(&config.to_toml()).unwrap(), config);
        let err = TrainConfig::from_toml("dataset = \"mnist\"\nlearning_rat = 1.0\n").unwrap_err();
        assert!(err.to_string().contains("learning_rat"), "{err}");
    }

    #[test]
    fn zero_steps_and_bad_names_are_errors() {
        let base = TrainConfig {
            dataset: "mnist".into(),
            ..TrainConfig::default()
        };
        assert!(base.validate().is_ok());
        for bad in [
            TrainConfig {
                steps: 0,
                ..base.clone()
            },
            TrainConfig {
                prediction_type: "noise".into(),
                ..base.clone()
            },
            TrainConfig {
                beta_schedule: "cubic".into(),
                ..base.clone()
            },
            TrainConfig {
                label_dropout: 1.0,
                ..base.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn non_finite_hyperparameters_are_refused() {
        let base = TrainConfig {
            dataset: "mnist".into(),
            ..TrainConfig::default()
        };
        type Setter = fn(&mut TrainConfig, f64);
        let setters: [(&str, Setter); 14] = [
            ("label_dropout", |c, v| c.label_dropout = v),
            ("learning_rate", |c, v| c.learning_rate = v),
            ("ema_max_decay", |c, v| c.ema_max_decay = v),
            ("adam_beta1", |c, v| c.adam_beta1 = v),
            ("adam_beta2", |c, v| c.adam_beta2 = v),
            ("adam_epsilon", |c, v| c.adam_epsilon = v),
            ("weight_decay", |c, v| c.weight_decay = v),
            ("min_snr_gamma", |c, v| c.min_snr_gamma = Some(v)),
            ("max_grad_norm", |c, v| c.max_grad_norm = v),
            ("offset_noise", |c, v| c.offset_noise = v),
            ("vlb_weight", |c, v| c.vlb_weight = v),
            ("ema_inv_gamma", |c, v| c.ema_inv_gamma = v),
            ("ema_power", |c, v| c.ema_power = v),
            ("beta_end", |c, v| c.beta_end = v),
        ];
        for (name, set) in setters {
            for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0] {
                let mut bad = base.clone();
                set(&mut bad, value);
                assert!(bad.validate().is_err(), "{name} = {value} accepted");
            }
        }
    }
}
