//! Throughput measurements behind `diffuse bench`.

use std::time::Instant;

use burn::tensor::{DType, Device};

use crate::error::Result;
use crate::nn::network::Architecture;
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
    let unet = UNet2DModel::new_within_limits(config, device)?;
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

/// What a training-step benchmark measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainThroughput {
    pub implementation: &'static str,
    pub parameters: usize,
    pub batch_size: usize,
    pub steps: usize,
    /// Mean wall-clock seconds of one full step: loss, backward, clipping, AdamW, EMA.
    pub seconds_per_step: f64,
    pub images_per_second: f64,
    /// The process's peak resident memory (Linux VmHWM; `None` elsewhere).
    pub peak_rss_bytes: Option<u64>,
}

/// Peak resident set size of this process, from /proc/self/status.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Times `steps` training steps (after `warmup` untimed ones) of the model `config` describes
/// (its `preset` or `model_config`) on random data of the shape that model config states, with
/// class labels when the model is class-conditional.
pub fn train_throughput(
    mut config: crate::train::TrainConfig,
    warmup: usize,
    steps: usize,
    device: &Device,
) -> Result<TrainThroughput> {
    use crate::data::{DataKind, Dataset};
    use crate::train::ModelConfig;
    let model = match &config.model_config {
        Some(path) => ModelConfig::from_file(path)?,
        None => ModelConfig::preset(&config.preset, DataKind::Images)
            .or_else(|_| ModelConfig::preset(&config.preset, DataKind::Vectors))?,
    };
    let sample_shape = model.sample_shape();
    let classes = model
        .class_table_size()
        .map_or(10, |rows| rows.saturating_sub(1).max(1));
    config.class_conditional = model.class_table_size().is_some();
    let count = config.batch_size.max(1) * 4;
    let numel: usize = sample_shape.iter().product();
    let values = SeededNoise::new(config.seed, 0..count)
        .next_host(numel)
        .into_iter()
        .map(|v| v.clamp(-1.0, 1.0) as f32)
        .collect();
    let labels = (0..count).map(|i| i % classes).collect();
    let names = (0..classes).map(|k| k.to_string()).collect();
    let kind = if sample_shape[1..] == [1, 1] {
        DataKind::Vectors
    } else {
        DataKind::Images
    };
    let dataset = Dataset::new(sample_shape, values, Some(labels), names, kind)?;
    let batch_size = config.batch_size;
    let mut trainer = crate::train::Trainer::from_dataset(config, dataset, device)?;
    let seconds = trainer.time_steps(warmup, steps.max(1))?.as_secs_f64() / steps.max(1) as f64;
    Ok(TrainThroughput {
        implementation: "diffuse",
        parameters: trainer.num_parameters(),
        batch_size,
        steps,
        seconds_per_step: seconds,
        images_per_second: batch_size as f64 / seconds,
        peak_rss_bytes: peak_rss_bytes(),
    })
}
