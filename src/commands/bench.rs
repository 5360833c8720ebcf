//! `diffuse bench`: throughput measurements (compare with tools/reference/bench_unet.py and
//! tools/reference/bench_train.py).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use diffuse_core::bench::{
    benchmark_model, sampling_throughput, train_throughput, unet_forward_throughput,
};
use diffuse_core::config::DiffusersConfig;
use diffuse_core::nn::unet::UNet2DConfig;
use diffuse_core::train::TrainConfig;

use burn::tensor::DType;
use diffuse_core::classifier::builtin::builtin_classifier;
use diffuse_core::data::{DatasetSource, LoadOptions, Split};
use diffuse_core::eval::{FeatureNetwork, QualitySettings, markdown_table, sampler_quality_table};
use diffuse_core::pipeline::DiffusionPipeline;
use diffuse_core::sampling::{GenerationConfig, SamplerName};
use diffuse_core::train::Trainer;

use super::demo::demo_recipe;
use super::train::{print_summary, run_with_progress};
use crate::args::DeviceArgs;

#[derive(Args, Debug)]
pub struct BenchCommand {
    #[command(subcommand)]
    what: BenchTarget,
}

#[derive(Subcommand, Debug)]
enum BenchTarget {
    /// U-Net forward passes per second for a diffusers UNet2DModel config.json (random weights).
    Unet(UnetBench),
    /// Training steps per second (loss, backward, clipping, AdamW, EMA) on random data shaped
    /// as the model config states; compare with tools/reference/bench_train.py.
    Train(TrainBench),
    /// Sampling throughput: one DDIM draw of a batch from a randomly initialised network (a
    /// preset or a diffusers config.json); compare with tools/reference/bench_sample.py.
    Sample(SampleBench),
    /// Sample quality of the demo recipe: trains it for --minutes (or takes --pipeline), then
    /// fills the sampler × NFE → FD table (built-in Fashion-MNIST classifier, test split) and
    /// writes it to OUT/quality.md and OUT/quality.json.
    Quality(QualityBench),
}

#[derive(Args, Debug)]
struct QualityBench {
    /// Training time budget of the demo recipe, in minutes.
    #[arg(long, default_value_t = 8.0)]
    minutes: f64,
    /// Run folder: the trained pipeline and the table.
    #[arg(long, default_value = "out/quality")]
    out: PathBuf,
    /// Skip training and evaluate this Fashion-MNIST pipeline folder.
    #[arg(long, value_name = "DIR")]
    pipeline: Option<PathBuf>,
    /// Samplers (rows), `diffuse sample --scheduler` names.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ddpm,ddim,dpmsolver++,unipc,euler,euler-ancestral,heun,pndm"
    )]
    samplers: Vec<SamplerName>,
    /// Network evaluations per sample (columns).
    #[arg(long, value_delimiter = ',', default_value = "5,10,20,50,100")]
    nfe: Vec<usize>,
    /// Samples per cell.
    #[arg(long, default_value_t = 300)]
    n: usize,
    /// Compare with the first COUNT test images only [default: all 10000].
    #[arg(long, value_name = "COUNT")]
    reference_n: Option<usize>,
    /// Seed of the training run and of every cell's samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder of the Fashion-MNIST idx files [default: ../shared/data/fashion-mnist/].
    #[arg(long = "data", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

impl QualityBench {
    fn run(&self) -> Result<()> {
        let device = self.device.build()?;
        let pipeline_dir = match &self.pipeline {
            Some(dir) => dir.clone(),
            None => {
                let recipe = demo_recipe(self.out.clone(), self.data_dir.clone(), self.seed);
                let summary =
                    run_with_progress(Trainer::new(recipe, &device)?, Some(self.minutes))?;
                print_summary(&summary);
                summary.out
            }
        };
        let pipeline = DiffusionPipeline::load(&pipeline_dir, &device)
            .with_context(|| format!("loading pipeline {}", pipeline_dir.display()))?;
        let classifier = builtin_classifier("fashion-mnist", &device)?
            .context("the built-in Fashion-MNIST classifier is missing")?;
        let source = DatasetSource::parse("fashion-mnist", self.data_dir.as_deref())?;
        let mut reference = source.load(&LoadOptions {
            split: Split::Test,
            ..LoadOptions::default()
        })?;
        if let Some(count) = self.reference_n.filter(|&c| c < reference.len()) {
            reference = reference.subset(&(0..count).collect::<Vec<_>>())?;
        }
        let settings = QualitySettings {
            samplers: self.samplers.clone(),
            nfes: self.nfe.clone(),
            generation: GenerationConfig {
                count: self.n,
                batch_size: 64,
                seed: self.seed,
                device,
                dtype: DType::F32,
                class_labels: None,
                init_noise: None,
            },
        };
        let cells = sampler_quality_table(
            &pipeline,
            FeatureNetwork::Classifier(&classifier),
            &reference,
            &settings,
            &mut |c| {
                eprintln!(
                    "{} NFE {}: FD {:.3}, class accuracy {:?}",
                    c.sampler, c.nfe, c.metrics.fd, c.metrics.class_accuracy
                )
            },
        )?;
        let table = markdown_table(&cells, &self.samplers, &self.nfe);
        println!("{table}");
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("creating {}", self.out.display()))?;
        let (md, json) = (self.out.join("quality.md"), self.out.join("quality.json"));
        std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
        std::fs::write(&json, serde_json::to_string_pretty(&cells)?)
            .with_context(|| format!("writing {}", json.display()))?;
        eprintln!("wrote {} and {}", md.display(), json.display());
        Ok(())
    }
}

/// The network a benchmark times.
#[derive(Args, Debug)]
struct BenchModel {
    /// Built-in model: tiny, unet-28, ddpm-cifar10, dit-small, mlp.
    #[arg(
        long,
        conflicts_with = "model_config",
        required_unless_present = "model_config"
    )]
    preset: Option<String>,
    /// A diffusers UNet2DModel / DiTTransformer2DModel config.json (with sample_size).
    #[arg(long, value_name = "config.json")]
    model_config: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct TrainBench {
    #[command(flatten)]
    model: BenchModel,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Print one JSON object instead of a sentence.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

impl TrainBench {
    fn run(&self) -> Result<()> {
        let config = TrainConfig {
            dataset: "random".into(),
            preset: self.model.preset.clone().unwrap_or_default(),
            model_config: self.model.model_config.clone(),
            batch_size: self.batch_size,
            warmup_steps: 0,
            ..TrainConfig::default()
        };
        let result = train_throughput(config, 1, self.steps, &self.device.build()?)?;
        if self.json {
            println!("{}", serde_json::to_string(&result)?);
        } else {
            println!(
                "{} parameters, batch {}: {:.3} s per training step, {:.1} images/s, peak RSS {}",
                result.parameters,
                result.batch_size,
                result.seconds_per_step,
                result.images_per_second,
                result
                    .peak_rss_bytes
                    .map_or("n/a".into(), |b| format!("{:.0} MiB", b as f64 / 1048576.0))
            );
        }
        Ok(())
    }
}

#[derive(Args, Debug)]
struct SampleBench {
    #[command(flatten)]
    model: BenchModel,
    /// Samples drawn together.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// DDIM steps (network evaluations).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Print one JSON object instead of a sentence.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

impl SampleBench {
    fn run(&self) -> Result<()> {
        let preset = self.model.preset.as_deref().unwrap_or_default();
        let model = benchmark_model(preset, self.model.model_config.as_deref())?;
        let result =
            sampling_throughput(&model, self.batch_size, self.steps, &self.device.build()?)?;
        if self.json {
            println!("{}", serde_json::to_string(&result)?);
        } else {
            println!(
                "{} parameters, batch {}, {} DDIM steps: {:.3} s per draw, {:.2} images/s",
                result.parameters,
                result.batch_size,
                result.steps,
                result.seconds,
                result.images_per_second
            );
        }
        Ok(())
    }
}

#[derive(Args, Debug)]
struct UnetBench {
    /// A diffusers UNet2DModel config.json, e.g. benches/configs/ddpm-cifar10-32.json.
    #[arg(long, value_name = "config.json")]
    model_config: PathBuf,
    /// Images per forward pass.
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// Timed forward passes (after one warm-up pass).
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Print one JSON object instead of a sentence.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

impl BenchCommand {
    pub fn run(&self) -> Result<()> {
        match &self.what {
            BenchTarget::Unet(bench) => bench.run(),
            BenchTarget::Train(bench) => bench.run(),
            BenchTarget::Sample(bench) => bench.run(),
            BenchTarget::Quality(bench) => bench.run(),
        }
    }
}

impl UnetBench {
    fn run(&self) -> Result<()> {
        let text = std::fs::read_to_string(&self.model_config)
            .with_context(|| format!("reading {}", self.model_config.display()))?;
        let config = UNet2DConfig::from_json(&text)
            .with_context(|| format!("in {}", self.model_config.display()))?;
        let result = unet_forward_throughput(
            &config,
            self.batch_size,
            self.iters.max(1),
            &self.device.build()?,
        )?;
        if self.json {
            println!("{}", serde_json::to_string(&result)?);
        } else {
            println!(
                "{} parameters, batch {}: {:.3} s per forward pass, {:.1} images/s",
                result.parameters,
                result.batch_size,
                result.seconds_per_batch,
                result.images_per_second
            );
        }
        Ok(())
    }
}
