//! `diffuse nll`: the negative log-likelihood of test data under a pipeline, in bits/dim.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use diffuse_core::data::DataKind;
use diffuse_core::eval::{VlbSettings, VlbTimesteps, variational_bound};
use diffuse_core::pipeline::DiffusionPipeline;
use serde_json::json;

use super::{extend, print_table, progress_bar, report_to};
use crate::args::{DataArgs, DeviceArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Method {
    /// The variational bound L_T + Σ L_{t−1} + L_0 (Ho et al. 2020) with a discretised decoder:
    /// an upper bound on the NLL of 8-bit data.
    Vlb,
}

#[derive(Args, Debug)]
pub struct NllCommand {
    /// The pipeline folder whose model to score (a DDPM-style ε, x0 or v model).
    #[arg(long, value_name = "DIR")]
    pipeline: PathBuf,
    /// Image data: its test split (mnist, fashion-mnist) or an image folder. Class-conditional
    /// pipelines are scored on the images' own labels, log p(x | y).
    #[arg(long)]
    dataset: String,
    #[command(flatten)]
    data: DataArgs,
    #[arg(long, value_enum, default_value = "vlb")]
    method: Method,
    /// Score the first COUNT images.
    #[arg(long, default_value_t = 256)]
    n: usize,
    /// Evaluate this many evenly spaced terms L_t of the T − 1 and scale their mean to the sum
    /// (a stratified estimate); --full evaluates all T.
    #[arg(long, default_value_t = 100, conflicts_with = "full")]
    terms: usize,
    /// The whole bound: all T terms (T network evaluations per image).
    #[arg(long)]
    full: bool,
    /// Seed of the noise that draws each x_t.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

impl NllCommand {
    pub fn run(&self) -> Result<()> {
        if self.n == 0 {
            bail!("--n must be at least 1");
        }
        let device = self.device.build()?;
        let pipeline = DiffusionPipeline::load(&self.pipeline, &device)
            .with_context(|| format!("loading pipeline {}", self.pipeline.display()))?;
        let data = self.data.load_test(&self.dataset, 0, 0)?;
        if data.kind != DataKind::Images {
            bail!(
                "`diffuse nll` scores 8-bit images; `{}` is vector data",
                self.dataset
            );
        }
        let shape = pipeline
            .network
            .sample_shape()
            .context("the network config has no sample_size, so the image size is unknown")?;
        if shape != data.sample_shape {
            bail!(
                "the pipeline makes {shape:?} images but `{}` holds {:?} images",
                self.dataset,
                data.sample_shape
            );
        }
        let count = self.n.min(data.len());
        let data = data.subset(&(0..count).collect::<Vec<_>>())?;
        let labels = match pipeline.network.class_table_size() {
            Some(_) => Some(
                data.labels
                    .clone()
                    .context("a class-conditional pipeline needs labelled images")?,
            ),
            None => None,
        };
        let scheduler = &pipeline.scheduler;
        let settings = VlbSettings {
            variance: scheduler.ddpm_variance()?,
            timesteps: if self.full {
                VlbTimesteps::All
            } else {
                VlbTimesteps::Evenly(self.terms)
            },
            seed: self.seed,
            device,
        };
        let x0: Vec<f64> = data.values.iter().map(|&v| f64::from(v)).collect();
        let bar = progress_bar("VLB terms", "steps");
        let report = variational_bound(
            &pipeline.denoiser()?,
            &scheduler.schedule()?,
            &x0,
            [count, shape[0], shape[1], shape[2]],
            labels.as_deref(),
            &settings,
            &mut report_to(&bar),
        )?;
        bar.finish_and_clear();
        let mut out = json!({
            "pipeline": self.pipeline.display().to_string(),
            "dataset": self.dataset,
            "method": "vlb",
            "conditional": labels.is_some(),
        });
        extend(&mut out, serde_json::to_value(&report)?);
        if self.json {
            println!("{out}");
        } else {
            print_table(&out);
        }
        Ok(())
    }
}
