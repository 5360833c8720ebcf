//! `diffuse nll`: the negative log-likelihood of test data under a pipeline, in bits/dim.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use diffuse_core::data::{DataKind, Dataset};
use diffuse_core::eval::ode::Tolerances;
use diffuse_core::eval::{
    OdeLikelihoodSettings, ScoredData, TraceEstimator, VlbSettings, VlbTimesteps,
    ode_negative_log_likelihood, variational_bound,
};
use diffuse_core::pipeline::DiffusionPipeline;
use diffuse_core::process::sde::Sde;
use serde_json::{Value, json};

use super::{extend, print_table, progress_bar, report_to};
use crate::args::{DataArgs, DeviceArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Method {
    /// The variational bound L_T + Σ L_{t−1} + L_0 (Ho et al. 2020) with a discretised decoder:
    /// an upper bound on the NLL of 8-bit data.
    Vlb,
    /// The likelihood of the probability-flow ODE (Song et al. 2021), integrated by adaptive
    /// RK45 with a Hutchinson (or exact) trace; images are uniformly dequantised, which bounds
    /// the NLL of the 8-bit data.
    Ode,
}

#[derive(Args, Debug)]
pub struct NllCommand {
    /// The pipeline folder whose model to score (a DDPM-style ε, x0 or v model).
    #[arg(long, value_name = "DIR")]
    pipeline: PathBuf,
    /// Test data: the test split of mnist or fashion-mnist, an image folder, or (--method ode)
    /// vector data for an MLP pipeline. Class-conditional pipelines are scored on the data's
    /// own labels, log p(x | y).
    #[arg(long)]
    dataset: String,
    #[command(flatten)]
    data: DataArgs,
    #[arg(long, value_enum, default_value = "vlb")]
    method: Method,
    /// Score the first COUNT samples.
    #[arg(long, default_value_t = 256)]
    n: usize,
    /// VLB: evaluate this many evenly spaced terms L_t of the T − 1 and scale their mean to the
    /// sum (a stratified estimate); --full evaluates all T.
    #[arg(long, default_value_t = 100, conflicts_with = "full")]
    terms: usize,
    /// VLB: the whole bound, all T terms (T network evaluations per image).
    #[arg(long)]
    full: bool,
    /// ODE: the process whose probability flow is integrated: vp, subvp or ve (the score of
    /// the discrete-time model at the matching noise level).
    #[arg(long, default_value = "vp")]
    sde: String,
    /// ODE: relative tolerance of the RK45 steps.
    #[arg(long, default_value_t = 1e-5)]
    rtol: f64,
    /// ODE: absolute tolerance of the RK45 steps.
    #[arg(long, default_value_t = 1e-5)]
    atol: f64,
    /// ODE: the time ε the integration starts from, the data taken as x(ε).
    #[arg(long, default_value_t = 1e-5)]
    eps: f64,
    /// ODE: the divergence's trace: rademacher or gaussian (Hutchinson, one probe per sample
    /// held for the whole solve), or exact (one VJP per dimension: for low-dimensional data).
    #[arg(long, default_value = "rademacher")]
    probe: String,
    /// ODE: samples solved together (one ODE system, shared steps).
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Seed of the noise: each x_t (VLB), each sample's probe and dequantisation (ODE).
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
        if self.method == Method::Ode && self.full {
            bail!("--full belongs to --method vlb");
        }
        let device = self.device.build()?;
        let pipeline = DiffusionPipeline::load(&self.pipeline, &device)
            .with_context(|| format!("loading pipeline {}", self.pipeline.display()))?;
        let data = self.data.load_test(&self.dataset, self.n, self.seed)?;
        if data.kind != DataKind::Images && self.method == Method::Vlb {
            bail!(
                "the VLB scores 8-bit images; `{}` is vector data (use --method ode)",
                self.dataset
            );
        }
        let shape = pipeline
            .network
            .sample_shape()
            .context("the network config has no sample_size, so the sample shape is unknown")?;
        if shape != data.sample_shape {
            let kind = match data.kind {
                DataKind::Images => "images",
                DataKind::Vectors => "vectors",
            };
            bail!(
                "the pipeline makes {shape:?} samples but `{}` holds {:?} {kind}",
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
                    .context("a class-conditional pipeline needs labelled samples")?,
            ),
            None => None,
        };
        let shape = [count, shape[0], shape[1], shape[2]];
        let report = match self.method {
            Method::Vlb => self.vlb(&pipeline, &data, shape, labels.as_deref(), device)?,
            Method::Ode => self.ode(&pipeline, &data, shape, labels.as_deref(), device)?,
        };
        let mut out = json!({
            "pipeline": self.pipeline.display().to_string(),
            "dataset": self.dataset,
            "method": self.method.to_possible_value().expect("no skipped variants").get_name(),
            "conditional": labels.is_some(),
        });
        extend(&mut out, report);
        if self.json {
            println!("{out}");
        } else {
            print_table(&out);
        }
        Ok(())
    }

    fn vlb(
        &self,
        pipeline: &DiffusionPipeline,
        data: &Dataset,
        shape: [usize; 4],
        labels: Option<&[usize]>,
        device: burn::tensor::Device,
    ) -> Result<Value> {
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
        let bar = progress_bar("VLB terms", "steps");
        let report = variational_bound(
            &pipeline.denoiser()?,
            &scheduler.schedule()?,
            &host_values(data),
            shape,
            labels,
            &settings,
            &mut report_to(&bar),
        )?;
        bar.finish_and_clear();
        Ok(serde_json::to_value(&report)?)
    }

    fn ode(
        &self,
        pipeline: &DiffusionPipeline,
        data: &Dataset,
        shape: [usize; 4],
        labels: Option<&[usize]>,
        device: burn::tensor::Device,
    ) -> Result<Value> {
        let settings = OdeLikelihoodSettings {
            sde: Sde::from_name(&self.sde)?,
            tolerances: Tolerances::new(self.rtol, self.atol)?,
            start_time: self.eps,
            trace: TraceEstimator::from_name(&self.probe)?,
            seed: self.seed,
            device,
        };
        let bar = progress_bar("ODE NLL", "samples");
        let values = host_values(data);
        let scored = ScoredData {
            values: &values,
            shape,
            class_labels: labels,
            kind: data.kind,
        };
        let report = ode_negative_log_likelihood(
            &pipeline.denoiser()?,
            &pipeline.scheduler.schedule()?,
            &scored,
            self.batch_size,
            &settings,
            &mut report_to(&bar),
        )?;
        bar.finish_and_clear();
        Ok(serde_json::to_value(&report)?)
    }
}

fn host_values(data: &Dataset) -> Vec<f64> {
    data.values.iter().map(|&v| f64::from(v)).collect()
}
