//! Throughput measurements behind `diffuse bench`.

use std::time::Instant;

use burn::tensor::{DType, Device};

use crate::error::Result;
use crate::nn::unet::{UNet2DConfig, UNet2DModel};
use crate::noise::SeededNoise;
use crate::tensor_ops::to_host_f64;

/// What a forward-pass benchmark measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForwardThroughput {
    pub parameters: usize,
    pub batch_size: usize,
    pub iterations: usize,
    /// Mean wall-clock seconds of one forward pass (output read back to the host).
    pub seconds_per_batch: f64,
    pub images_per_second: f64,
}

/// Times `iterations` forward passes of a randomly initialised U-Net of `config` on batches of
/// `batch_size` (after one untimed warm-up pass).
pub fn unet_forward_throughput(
    config: &UNet2DConfig,
    batch_size: usize,
    iterations: usize,
    device: &Device,
) -> Result<ForwardThroughput> {
    let unet = UNet2DModel::new(config, device)?;
    let [h, w] = config.sample_size.map(|s| s.hw()).unwrap_or([32, 32]);
    let shape = [batch_size, config.in_channels, h, w];
    let x = SeededNoise::new(0, 0..batch_size).next(shape, device, DType::F32);
    let timesteps = vec![500.0; batch_size];
    let labels = config.num_class_embeds.map(|_| vec![0; batch_size]);
    let run = || -> Result<()> {
        to_host_f64(unet.forward(x.clone(), &timesteps, labels.as_deref())?)?;
        Ok(())
    };
    run()?;
    let start = Instant::now();
    for _ in 0..iterations {
        run()?;
    }
    let seconds_per_batch = start.elapsed().as_secs_f64() / iterations as f64;
    Ok(ForwardThroughput {
        parameters: burn::module::Module::num_params(&unet),
        batch_size,
        iterations,
        seconds_per_batch,
        images_per_second: batch_size as f64 / seconds_per_batch,
    })
}
