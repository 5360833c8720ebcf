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
    about = "Denoising diffusion models: train, sample, and read/write diffusers pipelines",
    long_about = "Denoising diffusion models on burn: train U-Nets, DiTs and MLPs on images or \
                  vectors, sample them with DDPM and DDIM, read and write diffusers pipeline \
                  folders, and experiment with samplers on an exact Gaussian-mixture denoiser.\n\n\
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
    /// Draw samples from a diffusers pipeline folder or an exact mixture denoiser with any of nine
    /// samplers, classifier-free or classifier guidance, and parallel (ParaDiGMS) sampling.
    Sample(Box<commands::sample::SampleCommand>),
    /// Train a model on images, a CSV or a toy set; the run folder becomes a diffusers pipeline.
    Train(Box<commands::train::TrainCommand>),
    /// Train a noise-aware image classifier p(y | x_t, t) for classifier guidance and
    /// evaluation; prints its test accuracy on clean and noised images.
    TrainClassifier(Box<commands::train_classifier::TrainClassifierCommand>),
    /// Measure sample quality against a dataset: FD, KID and precision/recall in a classifier's
    /// (or Inception-v3's) feature space and class accuracy for images; sliced Wasserstein and
    /// log-likelihood for vectors.
    Eval(Box<commands::eval::EvalCommand>),
    /// Negative log-likelihood of test images under a pipeline in bits/dim (the variational
    /// bound with a discretised decoder).
    Nll(Box<commands::nll::NllCommand>),
    /// Encode images to latents or decode latents to images with a diffusers AutoencoderKL folder.
    Vae(commands::vae::VaeCommand),
    /// Measure throughput (U-Net forward passes, training steps) for comparison with PyTorch.
    Bench(commands::bench::BenchCommand),
    /// The built-in demo: train a class-conditional U-Net on Fashion-MNIST for a few minutes on
    /// the CPU, then write a class-by-class sample grid and the loss curve.
    Demo(commands::demo::DemoCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Schedule(cmd) => cmd.run(),
        Command::Sample(cmd) => cmd.run(),
        Command::Train(cmd) => cmd.run(),
        Command::TrainClassifier(cmd) => cmd.run(),
        Command::Eval(cmd) => cmd.run(),
        Command::Nll(cmd) => cmd.run(),
        Command::Vae(cmd) => cmd.run(),
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
