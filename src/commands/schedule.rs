//! `diffuse schedule`: print a noise schedule.

use anyhow::Result;
use clap::Args;
use diffuse_core::process::schedule::{TimestepSpacing, inference_timesteps};
use serde_json::json;

use crate::args::ScheduleArgs;

#[derive(Args, Debug)]
pub struct ScheduleCommand {
    #[command(flatten)]
    schedule: ScheduleArgs,
    /// N: also list the timesteps of an N-step sampler.
    #[arg(long)]
    num_inference_steps: Option<usize>,
    /// Timestep spacing: leading (diffusers' default), trailing, or linspace.
    #[arg(long, default_value = "leading")]
    timestep_spacing: TimestepSpacing,
    /// Offset added to every leading-spaced timestep (diffusers' steps_offset).
    #[arg(long, default_value_t = 0)]
    steps_offset: usize,
    /// Print one JSON object with arrays `betas`, `alphas_cumprod` and (with
    /// --num-inference-steps) `timesteps`, instead of a table.
    #[arg(long)]
    json: bool,
}

impl ScheduleCommand {
    pub fn run(&self) -> Result<()> {
        let schedule = self.schedule.build()?;
        let timesteps = self
            .num_inference_steps
            .map(|n| {
                inference_timesteps(
                    schedule.num_train_timesteps(),
                    n,
                    self.timestep_spacing,
                    self.steps_offset,
                )
            })
            .transpose()?;
        if self.json {
            let mut out = json!({
                "betas": schedule.betas(),
                "alphas_cumprod": schedule.alphas_cumprod(),
            });
            if let Some(ts) = &timesteps {
                out["timesteps"] = json!(ts);
            }
            println!("{out}");
            return Ok(());
        }
        let t = schedule.num_train_timesteps();
        println!(
            "{:>6} {:>12} {:>12} {:>12} {:>10}",
            "t", "beta", "alpha_bar", "sigma", "log_snr"
        );
        let rows: Vec<usize> = match &timesteps {
            Some(ts) => ts.clone(),
            None => (0..t).step_by((t / 10).max(1)).chain([t - 1]).collect(),
        };
        for i in rows {
            println!(
                "{i:>6} {:>12.6e} {:>12.6e} {:>12.6e} {:>10.4}",
                schedule.betas()[i],
                schedule.alpha_bar(i),
                schedule.sigmas()[i],
                schedule.log_snr(i)
            );
        }
        Ok(())
    }
}
