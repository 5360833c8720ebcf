//! Choosing the compute device by name at run time.

use burn::tensor::Device;

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

/// `flex` (pure-Rust CPU, always built), `vulkan` or `cuda` (when built with that feature).
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "flex" | "cpu" => Ok(Device::flex()),
        #[cfg(feature = "vulkan")]
        "vulkan" => Ok(Device::vulkan(Default::default())),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(0)),
        "vulkan" | "cuda" => Err(DiffuseError::config(format!(
            "device '{name}' needs a build with `--features {name}` (this build has: {})",
            available_devices()
        ))),
        other => Err(DiffuseError::UnknownName {
            kind: "device",
            name: other.to_string(),
            expected: "flex, vulkan, cuda",
        }),
    }
}
