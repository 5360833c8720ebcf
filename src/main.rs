//! `diffuse`: train, sample and evaluate denoising diffusion models from the command line.
//!
//! A thin layer over `diffuse-core`: each subcommand parses flags, calls the library, and reports.

mod args;
mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "diffuse",
    version,
    about = "Denoising diffusion models: noise schedules, samplers, exact toy denoisers",
    long_about = "Denoising diffusion models on burn: noise schedules that match diffusers, DDPM and \
                  DDIM samplers, and an exact Gaussian-mixture denoiser for sampler experiments.\n\n\
                  Start with `diffuse demo`; every subcommand explains its flags with --help."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a noise schedule (betas, alphas_cumprod) and its inference timesteps.
    Schedule(commands::schedule::ScheduleCommand),
    /// Draw samples with DDPM or DDIM from a diffusers pipeline folder or an exact mixture denoiser.
    Sample(Box<commands::sample::SampleCommand>),
    /// Measure throughput (U-Net forward passes) for comparison with PyTorch.
    Bench(commands::bench::BenchCommand),
    /// Run the built-in demo: sample a 2-D mixture with DDPM and DDIM, write samples and a plot.
    Demo(commands::demo::DemoCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Schedule(cmd) => cmd.run(),
        Command::Sample(cmd) => cmd.run(),
        Command::Demo(cmd) => cmd.run(),
        Command::Bench(cmd) => cmd.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
