//! `diffuse-core`: denoising diffusion models on burn.
//!
//! The modules follow the flow of the method: a [`schedule`] fixes the forward process
//! ([`forward`]); a [`denoiser::Denoiser`] predicts ε, x_0 or v; a [`sampler`] turns predictions
//! into samples, with [`noise`] seeded per sample. [`gmm`] is an exact denoiser for
//! Gaussian-mixture data, used to test samplers without model error. [`nn`] holds the networks
//! (a diffusers-compatible U-Net and DiT, a vector MLP) in a registry ([`nn::network`]) and [`pipeline`] reads and writes diffusers pipeline folders.
//! [`classifier`] is a noise-aware image classifier for classifier guidance and evaluation;
//! [`eval`] measures sample quality (FD, KID, precision/recall, sliced Wasserstein) and a
//! model's likelihood, the probability-flow one integrated by [`ode`]'s adaptive RK45.

pub mod bench;
pub mod bound;
pub mod classifier;
pub mod config;
pub mod data;
pub mod denoiser;
pub mod device;
pub mod error;
pub mod eval;
pub mod forward;
pub mod gmm;
pub mod guidance;
pub mod io;
pub mod nn;
pub mod noise;
pub mod ode;
pub mod pipeline;
pub mod plot;
pub mod sampler;
pub mod schedule;
pub mod tensor_ops;
pub mod train;

pub use error::{DiffuseError, Result};
