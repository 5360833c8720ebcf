//! Seeded initial weights.

use burn::module::Module;
use burn::tensor::Device;

use crate::error::Result;
use crate::train::params::flat_parameters;

/// The network `build` makes on `device`, with initial weights that are a function of `seed`:
/// burn's generator is seeded, and every parameter is touched in order so that each draws its
/// values now, in a fixed order, rather than lazily.
pub fn seeded_init<M: Module>(
    device: &Device,
    seed: u64,
    build: impl FnOnce(&Device) -> Result<M>,
) -> Result<M> {
    device.seed(seed);
    let network = build(device)?;
    let _ = flat_parameters(&network);
    Ok(network)
}
