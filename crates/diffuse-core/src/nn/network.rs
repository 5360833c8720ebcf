//! The registry of denoising networks. Each network's own file implements [`Architecture`]; the
//! one list in [`architectures!`] below turns them into [`ModelConfig`] (what a run builds and
//! checkpoints) and [`DenoisingNetwork`] (what training updates and a pipeline folder holds), so
//! the two cannot drift apart. Adding a network is its file plus one line of that list.

use std::fmt::Debug;
use std::path::Path;

use burn::module::Module;
use burn::store::ModuleSnapshot;
use burn::tensor::{Device, Tensor};
use serde_json::Value;

use crate::data::DataKind;
use crate::error::{DiffuseError, Result};
use crate::limits::{check_parameter_count, check_sample_values};
use crate::nn::dit::DiTTransformer2DModel;
use crate::nn::mlp::MlpDenoiser;
use crate::nn::unet::UNet2DModel;
use crate::nn::weights::{KeyRenames, load_component, save_component};

/// A denoising network as a pipeline component: its diffusers names, its config.json, and how it
/// is built, fitted to a run's data, stored and run.
pub trait Architecture: Module + ModuleSnapshot + Sized {
    /// The network's config.json.
    type Config: Debug + Clone + PartialEq;
    /// The folder of a pipeline the network is stored in (`unet`, `transformer`, `mlp`).
    const COMPONENT: &'static str;
    /// The library model_index.json names for the component (`diffusers`, or `diffuse` for
    /// networks diffusers lacks).
    const LIBRARY: &'static str;
    /// The config's `_class_name`, which model_index.json repeats.
    const CLASS_NAME: &'static str;
    /// The model_index.json `_class_name`s of the pipelines around this network.
    const PIPELINES: &'static [&'static str];
    /// Renames between the network's parameter paths and diffusers' tensor names.
    const KEY_RENAMES: KeyRenames = KeyRenames::NONE;

    /// The pipeline class written for this network sampled by `scheduler_class`.
    fn pipeline_class(_scheduler_class: &str) -> &'static str {
        Self::PIPELINES[0]
    }

    /// Parses config.json text; missing, unknown and unsupported fields are errors.
    fn parse_config(text: &str) -> Result<Self::Config>;

    /// The config.json text of `config`.
    fn config_json(config: &Self::Config) -> String;

    /// A randomly initialised network for `config` (validated first).
    fn new(config: &Self::Config, device: &Device) -> Result<Self>;

    /// The config this network was built from.
    fn config(&self) -> &Self::Config;

    /// The network output for `x_t` [B, C, H, W]; vectors of width D travel as [B, D, 1, 1].
    fn forward_nchw(
        &self,
        x_t: Tensor<4>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
    ) -> Result<Tensor<4>>;

    /// C of one sample [C, H, W] (D for vectors).
    fn sample_channels(config: &Self::Config) -> usize;

    /// [H, W] of one sample, when the config fixes it.
    fn sample_size(config: &Self::Config) -> Option<[usize; 2]>;

    /// Rows of the class table (classes + the null class), for class-conditional configs.
    fn class_table_size(config: &Self::Config) -> Option<usize>;

    /// Sets the config's shape fields from the data when it is a preset, or checks that a user's
    /// config already agrees with it.
    fn fit(config: &mut Self::Config, data: &DataFit) -> Result<()>;

    /// [`Architecture::new`] for a config within [`crate::limits`]: one sample of at most
    /// `MAX_SAMPLE_VALUES` values and at most `MAX_PARAMETERS` parameters, counted before any
    /// weight is allocated (burn initialises parameters lazily).
    fn new_within_limits(config: &Self::Config, device: &Device) -> Result<Self> {
        if let Some(size) = Self::sample_size(config) {
            check_sample_values(Self::CLASS_NAME, Self::sample_channels(config), size)?;
        }
        let network = Self::new(config, device)?;
        check_parameter_count(Self::CLASS_NAME, network.num_params())?;
        Ok(network)
    }

    /// Reads `config.json` and the weights from a component folder.
    fn load(dir: &Path, device: &Device) -> Result<Self> {
        load_component(
            dir,
            Self::parse_config,
            |config| Self::new_within_limits(config, device),
            &Self::KEY_RENAMES,
        )
    }

    /// Writes the component folder diffusers' `from_pretrained` reads.
    fn save(&self, dir: &Path) -> Result<()> {
        save_component(
            self,
            dir,
            &Self::config_json(self.config()),
            &Self::KEY_RENAMES,
        )
    }
}

/// What a run's data asks of the network it trains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DataFit {
    pub kind: DataKind,
    /// One sample's [C, H, W].
    pub sample_shape: [usize; 3],
    /// The classes of a class-conditional run.
    pub classes: Option<usize>,
    /// Whether the network also predicts a variance (twice the output channels).
    pub learned_variance: bool,
    /// A preset takes its shape from the data; a user's config must already agree with it.
    pub is_preset: bool,
}

impl DataFit {
    /// Output channels: the data's, twice over for a learned variance.
    pub fn out_channels(&self) -> usize {
        let channels = self.sample_shape[0];
        if self.learned_variance {
            2 * channels
        } else {
            channels
        }
    }

    /// The class table a preset gets: the classes plus the null class.
    pub fn class_table(&self) -> Option<usize> {
        self.classes.map(|k| k + 1)
    }
}

/// A config field that disagrees with the data.
pub(crate) fn data_mismatch(what: &str, config: String, data: String) -> DiffuseError {
    DiffuseError::config(format!(
        "the model config's {what} is {config}, the data's is {data}"
    ))
}

/// A config's output channels that disagree with what the variance type asks for.
pub(crate) fn check_out_channels(configured: usize, data: &DataFit) -> Result<()> {
    let wanted = data.out_channels();
    if configured != wanted {
        return Err(data_mismatch(
            "output channel count",
            configured.to_string(),
            format!("{wanted} (the variance type asks for it)"),
        ));
    }
    Ok(())
}

/// A class-conditional run needs a table of exactly classes + 1 rows; an unconditional one none.
pub(crate) fn check_class_table(table: Option<usize>, classes: Option<usize>) -> Result<()> {
    match (table, classes) {
        (Some(rows), Some(k)) if rows == k + 1 => Ok(()),
        (None, None) => Ok(()),
        (table, classes) => Err(DiffuseError::config(format!(
            "the model's class table has {table:?} rows, but the run needs {} (classes + the \
             null class; set --class-conditional to match the config)",
            classes.map_or("none".to_string(), |k| (k + 1).to_string())
        ))),
    }
}

/// One sample's shape [C, H, W], when the config fixes it.
fn stated_shape<A: Architecture>(config: &A::Config) -> Option<[usize; 3]> {
    A::sample_size(config).map(|[h, w]| [A::sample_channels(config), h, w])
}

/// One sample's shape [C, H, W], 32 × 32 where the config leaves the size open.
fn shape_or_32<A: Architecture>(config: &A::Config) -> [usize; 3] {
    let [h, w] = A::sample_size(config).unwrap_or([32, 32]);
    [A::sample_channels(config), h, w]
}

/// Generates [`ModelConfig`] and [`DenoisingNetwork`], one variant per architecture, and the
/// dispatch from each to the [`Architecture`] of its variant.
macro_rules! architectures {
    ($($(#[$doc:meta])* $variant:ident($network:ty),)+) => {
        /// A network's config: a preset, a user's config.json, or a checkpoint's.
        // One config per run; its size does not matter.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq)]
        pub enum ModelConfig {
            $($(#[$doc])* $variant(<$network as Architecture>::Config),)+
        }

        /// The denoising network of a run or a pipeline. Every network sees samples as
        /// [B, C, H, W]; vectors of width D travel as [B, D, 1, 1].
        // Boxing the variants would hide them from burn's Module derive; there are only ever a few.
        #[allow(clippy::large_enum_variant)]
        #[derive(Module, Debug)]
        pub enum DenoisingNetwork {
            $($(#[$doc])* $variant($network),)+
        }

        impl ModelConfig {
            /// The config `_class_name`s of the registered networks.
            const CLASS_NAMES: &[&str] = &[$(<$network as Architecture>::CLASS_NAME,)+];

            /// Parses config.json text of the network whose config is called `class_name`;
            /// `None` for a class no registered network has.
            fn parse(class_name: &str, text: &str) -> Option<Result<Self>> {
                $(if class_name == <$network as Architecture>::CLASS_NAME {
                    return Some(<$network as Architecture>::parse_config(text).map(Self::$variant));
                })+
                None
            }

            /// The config as its config.json.
            pub fn to_json(&self) -> String {
                match self {
                    $(Self::$variant(c) => <$network as Architecture>::config_json(c),)+
                }
            }

            /// One sample's shape [C, H, W] as the config states it (U-Nets without a sample
            /// size: 32²).
            pub fn sample_shape(&self) -> [usize; 3] {
                match self {
                    $(Self::$variant(c) => shape_or_32::<$network>(c),)+
                }
            }

            /// Rows of the class table (classes + the null class), for class-conditional configs.
            pub fn class_table_size(&self) -> Option<usize> {
                match self {
                    $(Self::$variant(c) => <$network as Architecture>::class_table_size(c),)+
                }
            }

            /// Sets (preset) or checks (user's config) the shape fields against the data.
            pub fn fit(&mut self, data: &DataFit) -> Result<()> {
                match self {
                    $(Self::$variant(c) => <$network as Architecture>::fit(c, data),)+
                }
            }

            /// A freshly initialised network on `device`.
            pub fn build(&self, device: &Device) -> Result<DenoisingNetwork> {
                Ok(match self {
                    $(Self::$variant(c) => {
                        DenoisingNetwork::$variant(<$network as Architecture>::new_within_limits(c, device)?)
                    })+
                })
            }
        }

        impl DenoisingNetwork {
            /// The model_index.json `_class_name`s of every pipeline a registered network is in.
            pub fn pipeline_classes() -> Vec<&'static str> {
                [$(<$network as Architecture>::PIPELINES,)+].concat()
            }

            /// Reads the network of a `pipeline_class` pipeline folder `dir` from its component
            /// folder; `None` when no registered network is in such pipelines.
            pub fn load(pipeline_class: &str, dir: &Path, device: &Device) -> Option<Result<Self>> {
                $(if <$network as Architecture>::PIPELINES.contains(&pipeline_class) {
                    let component = dir.join(<$network as Architecture>::COMPONENT);
                    return Some(<$network as Architecture>::load(&component, device).map(Self::$variant));
                })+
                None
            }

            /// Writes the network's component folder into the pipeline folder `dir`.
            pub fn save(&self, dir: &Path) -> Result<()> {
                match self {
                    $(Self::$variant(n) => {
                        Architecture::save(n, &dir.join(<$network as Architecture>::COMPONENT))
                    })+
                }
            }

            /// The config the network was built from.
            pub fn model_config(&self) -> ModelConfig {
                match self {
                    $(Self::$variant(n) => ModelConfig::$variant(Architecture::config(n).clone()),)+
                }
            }

            /// The network output for `x_t` [B, C, H, W].
            pub fn forward(
                &self,
                x_t: Tensor<4>,
                timesteps: &[f64],
                class_labels: Option<&[usize]>,
            ) -> Result<Tensor<4>> {
                match self {
                    $(Self::$variant(n) => n.forward_nchw(x_t, timesteps, class_labels),)+
                }
            }

            /// The class table size (classes + the null class) of a class-conditional network.
            pub fn class_table_size(&self) -> Option<usize> {
                match self {
                    $(Self::$variant(n) => {
                        <$network as Architecture>::class_table_size(Architecture::config(n))
                    })+
                }
            }

            /// One sample's shape [C, H, W], when the config fixes it.
            pub fn sample_shape(&self) -> Option<[usize; 3]> {
                match self {
                    $(Self::$variant(n) => stated_shape::<$network>(Architecture::config(n)),)+
                }
            }

            /// The pipeline folder the network is stored in.
            pub fn component(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => <$network as Architecture>::COMPONENT,)+
                }
            }

            /// model_index.json's entry for the network: [library, `_class_name`].
            pub fn index_entry(&self) -> [&'static str; 2] {
                match self {
                    $(Self::$variant(_) => [
                        <$network as Architecture>::LIBRARY,
                        <$network as Architecture>::CLASS_NAME,
                    ],)+
                }
            }

            /// The pipeline class of this network sampled by `scheduler_class`.
            pub fn pipeline_class(&self, scheduler_class: &str) -> &'static str {
                match self {
                    $(Self::$variant(_) => {
                        <$network as Architecture>::pipeline_class(scheduler_class)
                    })+
                }
            }
        }
    };
}

architectures! {
    /// `unet/`: diffusers' `UNet2DModel`.
    UNet(UNet2DModel),
    /// `transformer/`: diffusers' `DiTTransformer2DModel` (pixel space).
    DiT(DiTTransformer2DModel),
    /// `mlp/`: `diffuse`'s residual MLP for vector data (no diffusers counterpart).
    Mlp(MlpDenoiser),
}

impl ModelConfig {
    /// Reads a config file, telling the network apart by its `_class_name`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DiffuseError::io(path, e))?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| DiffuseError::bad_file(path, format!("malformed JSON: {e}")))?;
        let class = json["_class_name"].as_str();
        match Self::parse(class.unwrap_or(""), &text) {
            Some(config) => config.map_err(|e| DiffuseError::bad_file(path, e.to_string())),
            None => Err(DiffuseError::bad_file(
                path,
                format!(
                    "`_class_name` {class:?} is not a model diffuse trains ({})",
                    Self::CLASS_NAMES.join(", ")
                ),
            )),
        }
    }
}

impl DenoisingNetwork {
    /// Labels for `count` samples of a class-conditional network: classes 0, 1, …, K−1 in turn
    /// (the null class, the table's last row, is not drawn); `None` for an unconditional one.
    pub fn balanced_class_labels(&self, count: usize) -> Option<Vec<usize>> {
        self.class_table_size()
            .map(|size| (0..count).map(|i| i % (size - 1).max(1)).collect())
    }
}
