//! What a classifier is: its layers, the forward process its inputs come from, and the data it
//! learned. Serialised as the `config.json` of a classifier folder.

use serde::{Deserialize, Serialize};

use crate::error::{DiffuseError, Result};
use crate::limits::{MAX_LAYERS, MAX_LEVELS, check_at_most, check_sample_values};
use crate::pipeline::SchedulerConfig;
use crate::process::forward::PredictionType;
use crate::process::schedule::{BetaSchedule, NoiseSchedule};

/// Groups of every GroupNorm of the built-in network; each level's width must be a multiple.
pub const NORM_GROUPS: usize = 8;

/// The forward process q(x_t | x_0) the classifier was trained on, as the four fields of a
/// diffusers `DDPMScheduler` config that define it (the same four `diffuse train` takes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierSchedule {
    /// T: the classifier takes timesteps 0..T.
    pub num_train_timesteps: usize,
    /// diffusers' name: `linear`, `scaled_linear`, `squaredcos_cap_v2` or `sigmoid`.
    pub beta_schedule: String,
    pub beta_start: f64,
    pub beta_end: f64,
}

impl Default for ClassifierSchedule {
    /// DDPM's schedule (and `diffuse train`'s default): linear β from 1e-4 to 0.02 over 1000 steps.
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_schedule: "linear".into(),
            beta_start: 1e-4,
            beta_end: 0.02,
        }
    }
}

impl ClassifierSchedule {
    /// A schedule by any accepted spelling (`scaled-linear`, `cosine`, ...), stored under the name
    /// diffusers writes so it compares equal to a pipeline's scheduler config.
    pub fn new(
        beta_schedule: &str,
        num_train_timesteps: usize,
        (beta_start, beta_end): (f64, f64),
    ) -> Result<Self> {
        let kind = BetaSchedule::from_name(beta_schedule, beta_start, beta_end, (-3.0, 3.0, 1.0))?;
        let name = kind.diffusers_name().ok_or_else(|| {
            DiffuseError::config(format!(
                "beta schedule `{beta_schedule}` has no diffusers scheduler config, so no \
                 diffusion model a classifier guides can use it"
            ))
        })?;
        let schedule = Self {
            num_train_timesteps,
            beta_schedule: name.into(),
            beta_start,
            beta_end,
        };
        schedule.schedule()?;
        Ok(schedule)
    }

    /// The `DDPMScheduler` config of this forward process. The prediction type is irrelevant to
    /// a classifier; ε is diffusers' default.
    pub fn scheduler_config(&self) -> SchedulerConfig {
        SchedulerConfig::ddpm(
            &self.beta_schedule,
            self.num_train_timesteps,
            (self.beta_start, self.beta_end),
            PredictionType::Epsilon,
            false,
        )
    }

    /// ᾱ_t and the rest of the forward process.
    pub fn schedule(&self) -> Result<NoiseSchedule> {
        if self.num_train_timesteps == 0 {
            return Err(DiffuseError::config(
                "the classifier's num_train_timesteps must be at least 1",
            ));
        }
        self.scheduler_config().schedule()
    }
}

/// A [`super::NoiseAwareClassifier`]'s shape, forward process and provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// C of the [C, H, W] images it takes.
    pub in_channels: usize,
    /// H = W of the images it takes.
    pub sample_size: usize,
    /// Stride of the first convolution. 2 halves H and W before the first level, which cuts
    /// every level's cost by four: the classifier decides from shapes, not single pixels.
    pub stem_stride: usize,
    /// Width of each resolution level; each level after the first halves H and W.
    pub block_out_channels: Vec<usize>,
    /// Residual blocks per level.
    pub layers_per_block: usize,
    /// Groups of every GroupNorm; each width must be a multiple of it.
    pub norm_num_groups: usize,
    /// K, the number of logits.
    pub num_classes: usize,
    pub schedule: ClassifierSchedule,
    /// The `--dataset` it was trained on (`mnist`, `fashion-mnist` or a folder).
    pub dataset: String,
    /// Names of the K classes, indexed by label.
    pub class_names: Vec<String>,
}

impl ClassifierConfig {
    /// The built-in network for `[C, H, W]` images of `class_names.len()` classes: a stride-2
    /// stem, then three levels of widths 16, 32, 64 with one residual block each (~0.1M
    /// parameters), small enough to train on a CPU in minutes.
    pub fn for_data(
        sample_shape: [usize; 3],
        class_names: Vec<String>,
        dataset: &str,
        schedule: ClassifierSchedule,
    ) -> Self {
        Self {
            in_channels: sample_shape[0],
            sample_size: sample_shape[1],
            stem_stride: 2,
            block_out_channels: vec![16, 32, 64],
            layers_per_block: 1,
            norm_num_groups: NORM_GROUPS,
            num_classes: class_names.len(),
            schedule,
            dataset: dataset.into(),
            class_names,
        }
    }

    /// Rejects a config no network can be built from, naming the field.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("in_channels", self.in_channels),
            ("sample_size", self.sample_size),
            ("stem_stride", self.stem_stride),
            ("layers_per_block", self.layers_per_block),
            ("norm_num_groups", self.norm_num_groups),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(DiffuseError::config(format!(
                "classifier config: `{name}` must be at least 1"
            )));
        }
        let levels = self.block_out_channels.len();
        check_at_most(
            "classifier",
            MAX_LEVELS,
            &[("block_out_channels (levels)", levels)],
        )?;
        check_at_most(
            "classifier",
            MAX_LAYERS,
            &[("layers_per_block", self.layers_per_block)],
        )?;
        check_sample_values(
            "classifier",
            self.in_channels,
            [self.sample_size, self.sample_size],
        )?;
        if self.block_out_channels.is_empty() {
            return Err(DiffuseError::config(
                "classifier config: `block_out_channels` needs at least one level",
            ));
        }
        if let Some(bad) = self
            .block_out_channels
            .iter()
            .find(|&&c| c == 0 || !c.is_multiple_of(self.norm_num_groups))
        {
            return Err(DiffuseError::config(format!(
                "classifier config: width {bad} in `block_out_channels` is not a positive \
                 multiple of norm_num_groups = {}",
                self.norm_num_groups
            )));
        }
        if self.num_classes < 2 {
            return Err(DiffuseError::config(format!(
                "a classifier needs at least 2 classes; `num_classes` is {}",
                self.num_classes
            )));
        }
        if self.class_names.len() != self.num_classes {
            return Err(DiffuseError::config(format!(
                "classifier config: {} class names for num_classes = {}",
                self.class_names.len(),
                self.num_classes
            )));
        }
        self.schedule.schedule()?;
        Ok(())
    }

    /// Fails unless the classifier was trained on `dataset` (the `--dataset` spelling), so that
    /// accuracies and features are never computed on data whose labels mean something else.
    pub fn ensure_trained_on(&self, dataset: &str) -> Result<()> {
        if self.dataset == dataset {
            Ok(())
        } else {
            Err(DiffuseError::config(format!(
                "this classifier was trained on `{}`, not on `{dataset}`; train one on `{dataset}` \
                 with `diffuse train-classifier --dataset {dataset}`",
                self.dataset
            )))
        }
    }

    /// Fails unless this classifier can guide a diffusion model of `[C, H, W]` samples whose
    /// forward process is `schedule`: its gradient is taken at the model's x_t and timesteps, so
    /// both must mean the same noise level.
    pub fn ensure_guides(&self, sample_shape: [usize; 3], schedule: &NoiseSchedule) -> Result<()> {
        let own_shape = [self.in_channels, self.sample_size, self.sample_size];
        if own_shape != sample_shape {
            return Err(DiffuseError::config(format!(
                "the classifier takes {own_shape:?} images but the model makes {sample_shape:?}"
            )));
        }
        let own = self.schedule.schedule()?;
        let same_process = own.num_train_timesteps() == schedule.num_train_timesteps()
            && own
                .alphas_cumprod()
                .iter()
                .zip(schedule.alphas_cumprod())
                .all(|(a, b)| (a - b).abs() <= 1e-9);
        if !same_process {
            return Err(DiffuseError::config(format!(
                "the classifier was trained on another forward process ({} β from {} to {} over \
                 {} steps) than the model's; train one with the model's schedule",
                self.schedule.beta_schedule,
                self.schedule.beta_start,
                self.schedule.beta_end,
                self.schedule.num_train_timesteps
            )));
        }
        Ok(())
    }

    /// Width of the penultimate features (the last level's width).
    pub fn feature_dim(&self) -> usize {
        *self
            .block_out_channels
            .last()
            .expect("validated configs have at least one level")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mnist() -> ClassifierConfig {
        let names = (0..10).map(|k| k.to_string()).collect();
        ClassifierConfig::for_data([1, 28, 28], names, "mnist", ClassifierSchedule::default())
    }

    #[test]
    fn json_round_trip_and_unknown_fields_are_rejected() {
        let config = mnist();
        config.validate().unwrap();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            serde_json::from_str::<ClassifierConfig>(&json).unwrap(),
            config
        );
        let extra = json.replacen('{', "{\"dropout\": 0.1, ", 1);
        let err = serde_json::from_str::<ClassifierConfig>(&extra).unwrap_err();
        assert!(err.to_string().contains("dropout"), "{err}");
    }

    #[test]
    fn schedules_are_stored_under_diffusers_names() {
        let s = ClassifierSchedule::new("cosine", 100, (1e-4, 0.02)).unwrap();
        assert_eq!(s.beta_schedule, "squaredcos_cap_v2");
        assert_eq!(s.schedule().unwrap().num_train_timesteps(), 100);
        assert!(ClassifierSchedule::new("continuous-sigmoid", 100, (1e-4, 0.02)).is_err());
        assert!(ClassifierSchedule::new("cubic", 100, (1e-4, 0.02)).is_err());
        assert!(ClassifierSchedule::new("linear", 0, (1e-4, 0.02)).is_err());
    }

    #[test]
    fn bad_shapes_and_foreign_datasets_are_errors() {
        let ok = mnist();
        for bad in [
            ClassifierConfig {
                block_out_channels: vec![],
                ..ok.clone()
            },
            ClassifierConfig {
                block_out_channels: vec![32, 60],
                ..ok.clone()
            },
            ClassifierConfig {
                num_classes: 1,
                class_names: vec!["a".into()],
                ..ok.clone()
            },
            ClassifierConfig {
                num_classes: 9,
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        ok.ensure_trained_on("mnist").unwrap();
        let err = ok.ensure_trained_on("fashion-mnist").unwrap_err();
        assert!(err.to_string().contains("trained on `mnist`"), "{err}");
    }
}
