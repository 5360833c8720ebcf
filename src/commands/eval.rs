//! `diffuse eval`: how close a pipeline's samples (or saved samples) are to a dataset.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use diffuse_core::classifier::NoiseAwareClassifier;
use diffuse_core::classifier::builtin::{builtin_classifier, builtin_datasets};
use diffuse_core::data::toy::known_mixture;
use diffuse_core::data::{DataKind, Dataset, DatasetSource};
use diffuse_core::eval::{
    FeatureNetwork, FeatureSet, ImageReference, InceptionV3, evaluate_images, evaluate_vectors,
    quantize_to_8bit,
};
use diffuse_core::io::read_safetensors;
use diffuse_core::pipeline::DiffusionPipeline;
use serde_json::{Value, json};

use super::sampling::{SamplingArgs, class_labels_for};
use super::{extend, print_table, progress_bar, report_to};
use crate::args::DataArgs;

/// Keeps the reference draw of a toy set apart from the training draw of the same seed.
const REFERENCE_SEED_SALT: u64 = 0x5eed_da7a;

#[derive(Args, Debug)]
pub struct EvalCommand {
    /// A pipeline folder to draw --n samples from (with the sampler flags below) and evaluate.
    /// Class-conditional pipelines draw classes 0, 1, …, K−1 in turn and also report the class
    /// accuracy.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "samples",
        conflicts_with = "samples"
    )]
    pipeline: Option<PathBuf>,
    /// Evaluate saved samples instead: tensor `samples` ([N, C, H, W] or [N, D]) of a
    /// safetensors file, e.g. from `diffuse sample --out-tensor`.
    #[arg(long, value_name = "FILE.safetensors")]
    samples: Option<PathBuf>,
    /// The class each saved sample was drawn for (comma-separated, or one for all): reports the
    /// class accuracy of --samples.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "C1,C2,…",
        requires = "samples"
    )]
    class_labels: Option<Vec<usize>>,
    /// The data to compare with: its test split (mnist, fashion-mnist), the whole folder or
    /// .csv file, or for toy:NAME a fresh draw of as many points as samples.
    #[arg(long)]
    dataset: String,
    #[command(flatten)]
    data: DataArgs,
    /// The classifier whose penultimate features FD, KID and precision/recall use (with
    /// --inception: that judges class accuracy), a folder from `diffuse train-classifier` on
    /// --dataset [default: the built-in one for mnist and fashion-mnist].
    #[arg(long, value_name = "DIR")]
    feature_classifier: Option<PathBuf>,
    /// Compare images in Inception-v3's pool3 features instead, FID's own space: pytorch-fid's
    /// weights converted by tools/reference/convert_inception.py. Images are resized to 299×299,
    /// which is slow on a CPU.
    #[arg(long, value_name = "FILE.safetensors")]
    inception: Option<PathBuf>,
    /// Number of samples to draw from --pipeline.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// Samples to evaluate and where they came from.
struct Drawn {
    values: Vec<f64>,
    /// [C, H, W] of one sample, or [D, 1, 1] for vectors.
    shape: Vec<usize>,
    labels: Option<Vec<usize>>,
    origin: Value,
}

impl EvalCommand {
    pub fn run(&self) -> Result<()> {
        let drawn = match (&self.pipeline, &self.samples) {
            (Some(dir), _) => self.draw_from_pipeline(dir)?,
            (None, Some(path)) => self.read_samples(path)?,
            (None, None) => bail!("give --pipeline DIR or --samples FILE.safetensors"),
        };
        let count = drawn.values.len() / drawn.shape.iter().product::<usize>().max(1);
        let reference = self.reference(count)?;
        let metrics = match reference.kind {
            DataKind::Images => self.image_metrics(&drawn, &reference)?,
            DataKind::Vectors => self.vector_metrics(&drawn, &reference)?,
        };
        let mut report = json!({
            "dataset": self.dataset,
            "seed": self.sampling.seed,
        });
        extend(&mut report, drawn.origin);
        extend(&mut report, metrics);
        if self.json {
            println!("{report}");
        } else {
            print_table(&report);
        }
        Ok(())
    }

    fn draw_from_pipeline(&self, dir: &std::path::Path) -> Result<Drawn> {
        if self.n == 0 {
            bail!("--n must be at least 1");
        }
        let device = self.sampling.device.build()?;
        let pipeline = DiffusionPipeline::load(dir, &device)
            .with_context(|| format!("loading pipeline {}", dir.display()))?;
        let labels = pipeline.network.balanced_class_labels(self.n);
        let config = self
            .sampling
            .generation_config(self.n, labels.clone(), None)?;
        let (samples, recipe) = self.sampling.sample_pipeline(&pipeline, &config)?;
        Ok(Drawn {
            values: samples.drawn.samples,
            shape: samples.shape.to_vec(),
            labels,
            origin: json!({
                "pipeline": dir.display().to_string(),
                "sampler": recipe.sampler_label(),
                "steps": recipe.steps(),
            }),
        })
    }

    fn read_samples(&self, path: &std::path::Path) -> Result<Drawn> {
        let tensors = read_safetensors(path)?;
        let samples = tensors
            .get("samples")
            .with_context(|| format!("{}: no tensor named `samples`", path.display()))?;
        let count = *samples.shape.first().unwrap_or(&0);
        if count == 0 || samples.values.is_empty() {
            bail!("{}: the sample set is empty", path.display());
        }
        let shape = samples.shape[1..].to_vec();
        let labels = class_labels_for(self.class_labels.as_deref(), count)?;
        Ok(Drawn {
            values: samples.values.iter().map(|&v| f64::from(v)).collect(),
            shape,
            labels,
            origin: json!({ "samples_file": path.display().to_string() }),
        })
    }

    fn reference(&self, count: usize) -> Result<Dataset> {
        let reference = self.data.load_test(
            &self.dataset,
            count,
            self.sampling.seed ^ REFERENCE_SEED_SALT,
        )?;
        if reference.is_empty() {
            bail!("the reference data `{}` is empty", self.dataset);
        }
        Ok(reference)
    }

    fn image_metrics(&self, drawn: &Drawn, reference: &Dataset) -> Result<Value> {
        if drawn.shape != reference.sample_shape {
            bail!(
                "the samples are {:?} images but `{}` holds {:?} images",
                drawn.shape,
                self.dataset,
                reference.sample_shape
            );
        }
        let device = self.sampling.device.build()?;
        let classifier = self.classifier(&device)?;
        let inception = self
            .inception
            .as_deref()
            .map(|path| InceptionV3::load(path, &device))
            .transpose()
            .context("loading the Inception weights")?;
        let network = match &inception {
            Some(network) => {
                if drawn.labels.is_some() && classifier.is_none() {
                    eprintln!(
                        "no classifier for `{}`: class accuracy is not reported",
                        self.dataset
                    );
                }
                FeatureNetwork::Inception {
                    network,
                    classifier: classifier.as_ref(),
                }
            }
            None => FeatureNetwork::Classifier(classifier.as_ref().with_context(|| {
                format!(
                    "no built-in classifier for `{}` (there are for {}): train one with \
                     `diffuse train-classifier --dataset {0}` and pass --feature-classifier DIR, \
                     or pass --inception FILE",
                    self.dataset,
                    builtin_datasets().join(", ")
                )
            })?),
        };
        let bar = progress_bar("reference", "images");
        let reference = ImageReference::new(network, reference, &mut report_to(&bar))?;
        bar.set_message("samples");
        let metrics = evaluate_images(
            network,
            &quantize_to_8bit(&drawn.values),
            drawn.labels.as_deref(),
            &reference,
            self.sampling.seed,
            &mut report_to(&bar),
        )?;
        bar.finish_and_clear();
        let mut report = json!({
            "features": if inception.is_some() { "inception-v3 pool3" } else { "classifier" },
        });
        extend(&mut report, serde_json::to_value(metrics)?);
        Ok(report)
    }

    /// --feature-classifier, or else the built-in classifier of --dataset if there is one.
    fn classifier(&self, device: &Device) -> Result<Option<NoiseAwareClassifier>> {
        let classifier = match &self.feature_classifier {
            Some(dir) => Some(
                NoiseAwareClassifier::load(dir, device)
                    .with_context(|| format!("loading classifier {}", dir.display()))?,
            ),
            None => builtin_classifier(&self.dataset, device)?,
        };
        if let Some(classifier) = &classifier {
            classifier.config().ensure_trained_on(&self.dataset)?;
        }
        Ok(classifier)
    }

    fn vector_metrics(&self, drawn: &Drawn, reference: &Dataset) -> Result<Value> {
        let dim = reference.sample_numel();
        if drawn.shape.iter().product::<usize>() != dim {
            bail!(
                "the samples have shape {:?} but `{}` holds {dim}-dimensional vectors",
                drawn.shape,
                self.dataset
            );
        }
        let mixture = match DatasetSource::parse(&self.dataset, None)? {
            DatasetSource::Toy(set) => known_mixture(set),
            _ => None,
        };
        let reference_values = reference.values.iter().map(|&v| f64::from(v)).collect();
        let metrics = evaluate_vectors(
            &FeatureSet::new(drawn.values.clone(), dim)?,
            &FeatureSet::new(reference_values, dim)?,
            mixture.as_ref(),
            self.sampling.seed,
        )?;
        Ok(serde_json::to_value(metrics)?)
    }
}
