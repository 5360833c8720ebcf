//! diffusers pipeline folders: `model_index.json`, the network's component and `scheduler/`
//! ([`folder`]), scheduler configs and the samplers they name ([`scheduler_config`]), and the
//! network as a sampler's denoiser ([`denoiser`]).

pub mod denoiser;
pub mod folder;
pub mod scheduler_config;

pub use denoiser::NetworkDenoiser;
pub use folder::DiffusionPipeline;
pub use scheduler_config::{SamplerOverrides, SchedulerConfig, SolverFields};
