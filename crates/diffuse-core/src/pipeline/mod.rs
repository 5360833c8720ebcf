//! diffusers pipeline folders: `model_index.json`, the network's component and `scheduler/`.

mod scheduler_config;

pub use scheduler_config::{
    DenoisingNetwork, DiffusionPipeline, NetworkDenoiser, SamplerOverrides, SchedulerConfig,
    SolverFields,
};
