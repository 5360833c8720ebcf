//! Throughput measurements behind `diffuse bench`.

use std::time::Instant;

use burn::tensor::{DType, Device};

use crate::error::Result;
use crate::nn::network::Architecture;
use crate::nn::unet::{UNet2DConfig, UNet2DModel};
use crate::noise::SeededNoise;
use crate::tensor_ops::to_host_f64;

/// CPU seconds (user + system, all threads) this process has used, from /proc/self/stat;
/// `None` where that file does not exist.
pub fn process_cpu_seconds() -> Option<f64> {
    // /proc reports times in USER_HZ ticks, which Linux fixes at 100 for this interface.
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the parenthesised command name: utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / TICKS_PER_SECOND)
}

/// Wall-clock time and CPU use of `work`: (result, seconds, cores busy on average).
fn timed<T>(work: impl FnOnce() -> Result<T>) -> Result<(T, f64, Option<f64>)> {
    let cpu_before = process_cpu_seconds();
    let start = Instant::now();
    let value = work()?;
    let seconds = start.elapsed().as_secs_f64();
    let cores = process_cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| (after - before) / seconds);
    Ok((value, seconds, cores))
}

/// What a forward-pass benchmark measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForwardThroughput {
    pub parameters: usize,
    pub batch_size: usize,
    pub iterations: usize,
    /// Mean wall-clock seconds of one forward pass (output read back to the host).
    pub seconds_per_batch: f64,
    pub images_per_second: f64,
    /// CPU time over wall-clock time while timed: how many cores were busy on average.
    pub cores_busy: Option<f64>,
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
    let ((), seconds, cores_busy) = timed(|| (0..iterations).try_for_each(|_| run()))?;
    let seconds_per_batch = seconds / iterations as f64;
    Ok(ForwardThroughput {
        parameters: burn::module::Module::num_params(&unet),
        batch_size,
        iterations,
        seconds_per_batch,
        images_per_second: batch_size as f64 / seconds_per_batch,
        cores_busy,
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
    /// CPU time over wall-clock time while timed: how many cores were busy on average.
    pub cores_busy: Option<f64>,
}

/// Peak resident set size of this process, from /proc/self/status.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The network a benchmark times: a diffusers config.json when given, else the preset `name`
/// (an image preset, or the vector one of that name).
pub fn benchmark_model(
    name: &str,
    model_config: Option<&std::path::Path>,
) -> Result<crate::train::ModelConfig> {
    use crate::data::DataKind;
    use crate::train::ModelConfig;
    match model_config {
        Some(path) => ModelConfig::from_file(path),
        None => ModelConfig::preset(name, DataKind::Images)
            .or_else(|_| ModelConfig::preset(name, DataKind::Vectors)),
    }
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
    let model = benchmark_model(&config.preset, config.model_config.as_deref())?;
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
    trainer.time_steps(warmup, 0)?;
    let steps = steps.max(1);
    let (elapsed, _, cores_busy) = timed(|| trainer.time_steps(0, steps))?;
    let seconds = elapsed.as_secs_f64() / steps as f64;
    Ok(TrainThroughput {
        implementation: "diffuse",
        parameters: trainer.num_parameters(),
        batch_size,
        steps,
        seconds_per_step: seconds,
        images_per_second: batch_size as f64 / seconds,
        peak_rss_bytes: peak_rss_bytes(),
        cores_busy,
    })
}

/// What a sampling benchmark measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SamplingThroughput {
    pub parameters: usize,
    pub batch_size: usize,
    pub steps: usize,
    /// Wall-clock seconds of one whole draw of the batch: `steps` network evaluations and
    /// sampler updates, samples read back to the host.
    pub seconds: f64,
    pub images_per_second: f64,
    /// CPU time over wall-clock time while timed: how many cores were busy on average.
    pub cores_busy: Option<f64>,
}

/// Times a `steps`-step DDIM draw of `batch_size` samples (class 0 for a class-conditional
/// network) from a randomly initialised network of `model`, over DDPM's training schedule
/// (linear β 1e-4…0.02, 1000 steps) with x̂₀ clipped: what tools/reference/bench_sample.py
/// times with diffusers' `DDIMScheduler`. A one-step draw first warms up.
pub fn sampling_throughput(
    model: &crate::train::ModelConfig,
    batch_size: usize,
    steps: usize,
    device: &Device,
) -> Result<SamplingThroughput> {
    use crate::pipeline::{DiffusionPipeline, SamplerOverrides, SchedulerConfig};
    use crate::process::forward::PredictionType;
    use crate::sampling::{GenerationConfig, Recipe, SamplerChoice, SamplerName};
    let pipeline = DiffusionPipeline {
        network: model.build(device)?,
        scheduler: SchedulerConfig::ddpm(
            "linear",
            1000,
            (1e-4, 0.02),
            PredictionType::Epsilon,
            true,
        ),
        vae: None,
    };
    let generation = GenerationConfig {
        count: batch_size,
        batch_size,
        seed: 0,
        device: device.clone(),
        dtype: DType::F32,
        class_labels: pipeline
            .network
            .class_table_size()
            .map(|_| vec![0; batch_size]),
        init_noise: None,
    };
    let draw = |steps: usize| -> Result<()> {
        let choice = SamplerChoice {
            name: Some(SamplerName::Ddim),
            overrides: SamplerOverrides::default(),
            steps,
            spacing: None,
            steps_offset: None,
        };
        let recipe = Recipe::plan(choice.plan(&pipeline.scheduler)?);
        recipe.draw_pipeline(&pipeline, None, &generation, &mut ())?;
        Ok(())
    };
    draw(1)?;
    let ((), seconds, cores_busy) = timed(|| draw(steps))?;
    Ok(SamplingThroughput {
        parameters: burn::module::Module::num_params(&pipeline.network),
        batch_size,
        steps,
        seconds,
        images_per_second: batch_size as f64 / seconds,
        cores_busy,
    })
}
