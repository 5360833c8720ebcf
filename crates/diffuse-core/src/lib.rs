//! `diffuse-core`: denoising diffusion models on burn.
//!
//! The modules follow the flow of the method: [`data`] sources feed the seeded loader; the
//! [`process`] is the forward process (β schedules, q(x_t | x_0), the posterior, the reverse
//! variance, score SDEs, the variational bound's terms); a [`denoiser::Denoiser`] predicts ε, x_0 or
//! v — one of the networks in [`nn`]'s registry ([`nn::network`]), or [`gmm`]'s exact denoiser for
//! Gaussian-mixture data that tests samplers without model error; [`pipeline`] reads and writes
//! diffusers pipeline folders; [`train`] fits a network (with [`classifier`], the noise-aware
//! classifier of classifier guidance and evaluation); [`sampling`] turns predictions into
//! samples (every sampler, guidance, ParaDiGMS, SDE samplers, and the [`sampling::Recipe`] that
//! ties them together), with [`noise`] seeded per sample; [`eval`] measures sample quality (FD,
//! KID, precision/recall, sliced Wasserstein) and likelihood (the variational bound, and the
//! probability-flow ODE integrated by [`eval::ode`]'s adaptive RK45).

pub mod bench;
pub mod classifier;
pub mod config;
pub mod data;
pub mod denoiser;
pub mod device;
pub mod error;
pub mod eval;
pub mod gmm;
pub mod io;
pub mod limits;
pub mod nn;
pub mod noise;
pub mod pipeline;
pub mod plot;
pub mod process;
pub mod sampling;
pub mod tensor_ops;
pub mod train;

pub use error::{DiffuseError, Result};
