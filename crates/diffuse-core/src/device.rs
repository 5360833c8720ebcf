//! Choosing the compute device by name at run time.

use burn::tensor::{Device, Tensor};

use crate::error::{DiffuseError, Result};

/// Device names this build accepts.
pub fn available_devices() -> &'static str {
    if cfg!(all(feature = "vulkan", feature = "cuda")) {
        "flex, vulkan, cuda"
    } else if cfg!(feature = "vulkan") {
        "flex, vulkan"
    } else if cfg!(feature = "cuda") {
        "flex, cuda"
    } else {
        "flex"
    }
}

/// `flex` (pure-Rust CPU, always built), `vulkan` or `cuda` (when built with that feature). A GPU
/// device is probed once, so a machine without a driver gets an error here instead of a panic later.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "flex" | "cpu" => Ok(Device::flex()),
        #[cfg(feature = "vulkan")]
        "vulkan" => probe(name, || Device::vulkan(Default::default())),
        #[cfg(feature = "cuda")]
        "cuda" => probe(name, || Device::cuda(0)),
        #[cfg(not(feature = "vulkan"))]
        "vulkan" => Err(missing_feature(name)),
        #[cfg(not(feature = "cuda"))]
        "cuda" => Err(missing_feature(name)),
        other => Err(DiffuseError::UnknownName {
            kind: "device",
            name: other.to_string(),
            expected: "flex, vulkan, cuda",
        }),
    }
}

#[cfg_attr(all(feature = "vulkan", feature = "cuda"), allow(dead_code))]
fn missing_feature(name: &str) -> DiffuseError {
    DiffuseError::config(format!(
        "device '{name}' needs a build with `--features {name}` (this build has: {})",
        available_devices()
    ))
}

/// Creates the device and one tensor on it. cubecl panics (on its own threads too) when no adapter
/// or driver exists; the panic is caught and its report silenced so the user gets one error line.
#[cfg_attr(not(any(feature = "vulkan", feature = "cuda")), allow(dead_code))]
fn probe(name: &str, make: impl Fn() -> Device + std::panic::RefUnwindSafe) -> Result<Device> {
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(|| {
        let device = make();
        Tensor::<1>::zeros([1], &device).into_data();
        device
    });
    std::panic::set_hook(previous_hook);
    outcome.map_err(|_| {
        DiffuseError::config(format!(
            "device '{name}' is not usable here: no {name} driver or adapter was found"
        ))
    })
}
