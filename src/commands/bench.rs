//! `diffuse bench`: throughput measurements (compare with tools/reference/bench_unet.py and
//! tools/reference/bench_train.py).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use diffuse_core::bench::{train_throughput, unet_forward_throughput};
use diffuse_core::config::DiffusersConfig;
use diffuse_core::nn::unet::UNet2DConfig;
use diffuse_core::train::TrainConfig;

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
}

#[derive(Args, Debug)]
struct TrainBench {
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
            preset: self.preset.clone().unwrap_or_default(),
            model_config: self.model_config.clone(),
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
