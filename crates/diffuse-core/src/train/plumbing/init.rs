//! Seeded initial weights.

use std::sync::Mutex;

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
    // The device's generator is shared: two initialisations at once (threads of one process)
    // would interleave their draws, so one seeds and draws at a time.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    device.seed(seed);
    let network = build(device)?;
    let _ = flat_parameters(&network);
    Ok(network)
}
