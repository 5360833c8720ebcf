//! `diffuse-core`: denoising diffusion models on burn.
//!
//! The modules follow the flow of the method: a [`schedule`] fixes the forward process
//! ([`forward`]); a [`denoiser::Denoiser`] predicts ε, x_0 or v; a [`sampler`] turns predictions
//! into samples, with [`noise`] seeded per sample. [`gmm`] is an exact denoiser for
//! Gaussian-mixture data, used to test samplers without model error.

pub mod denoiser;
pub mod device;
pub mod error;
pub mod forward;
pub mod gmm;
pub mod io;
pub mod noise;
pub mod plot;
pub mod sampler;
pub mod schedule;
pub mod tensor_ops;

pub use error::{DiffuseError, Result};
