//! `diffuse demo`: the main job on an embedded default — a class-conditional U-Net trained on
//! Fashion-MNIST within a time budget, nothing to download or prepare.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use diffuse_core::train::{TrainConfig, Trainer};

use super::train::{print_summary, run_with_progress};
use crate::args::DeviceArgs;

#[derive(Args, Debug)]
pub struct DemoCommand {
    /// Training time budget in minutes; the run stops there and samples what it has.
    #[arg(long, default_value_t = 8.0)]
    minutes: f64,
    /// Run folder; a previous demo run in it is replaced.
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// Folder of the Fashion-MNIST idx files [default: ../shared/data/fashion-mnist/].
    #[arg(long = "data", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Seed of the weights, data order and noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    device: DeviceArgs,
}

impl DemoCommand {
    pub fn run(&self) -> Result<()> {
        let checkpoints = self.out.join("checkpoints");
        if checkpoints.exists() {
            std::fs::remove_dir_all(&checkpoints).with_context(|| {
                format!("clearing the previous demo run in {}", self.out.display())
            })?;
        }
        let recipe = demo_recipe(self.out.clone(), self.data_dir.clone(), self.seed);
        let trainer = Trainer::new(recipe, &self.device.build()?)?;
        println!(
            "Training a class-conditional U-Net ({} parameters) on Fashion-MNIST ({} images) for \
             {} minutes on {}; Ctrl-C stops early and still saves.",
            trainer.num_parameters(),
            trainer.dataset().len(),
            self.minutes,
            self.device.device,
        );
        let classes = trainer.dataset().class_names.join(", ");
        let summary = run_with_progress(trainer, Some(self.minutes))?;
        print_summary(&summary);
        if summary.samples_png.is_some() {
            println!("The sample grid has one row per class, top to bottom: {classes}.");
            println!(
                "Sample more: diffuse sample --pipeline {} --class-labels 0,1,2 --out more.png",
                summary.out.display()
            );
        }
        Ok(())
    }
}

/// The demo's recipe: the unet-28 preset, class-conditional (10 garments + the null class), ε
/// prediction, batch 32 (more steps per minute beat bigger batches in a short budget), AdamW
/// 2e-3 after 200 warm-up steps, EMA; the step cap is far beyond what a time budget reaches.
pub fn demo_recipe(out: PathBuf, data_dir: Option<PathBuf>, seed: u64) -> TrainConfig {
    TrainConfig {
        dataset: "fashion-mnist".into(),
        data_dir,
        preset: "unet-28".into(),
        steps: 100_000,
        batch_size: 32,
        seed,
        out,
        checkpoint_every: 500,
        class_conditional: true,
        learning_rate: 2e-3,
        warmup_steps: 200,
        ema_max_decay: 0.995,
        ..TrainConfig::default()
    }
}
