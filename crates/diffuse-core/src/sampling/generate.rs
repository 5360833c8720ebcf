//! The sampling loop: one batch along a plan, and many samples in batches, each from its own
//! seeded noise, sequentially or by ParaDiGMS.

use burn::tensor::{DType, Device, Tensor};

use super::Evaluation;
use super::kind::SamplerKind;
use super::paradigms::{self, ParallelReport, ParallelSettings};
use super::plan::SamplingPlan;
use crate::denoiser::Denoiser;
use crate::error::{DiffuseError, Result};
use crate::noise::{NoiseSource, SeededNoise};
use crate::process::schedule::NoiseSchedule;
use crate::tensor_ops::{from_host_f64, to_host_f64};

/// The model output a step of `plan` takes: with a learned DDPM variance, the prediction and the
/// variance output concatenated on the channel axis (the layout diffusers' step splits).
pub(crate) fn step_model_output<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    plan: &SamplingPlan,
    input: Tensor<D>,
    timesteps: &[f64],
    class_labels: Option<&[usize]>,
) -> Result<Tensor<D>> {
    if !matches!(&plan.sampler, SamplerKind::Ddpm(o) if o.variance.is_learned()) {
        return denoiser.predict(input, timesteps, class_labels);
    }
    match denoiser.predict_with_variance(input, timesteps, class_labels)? {
        (prediction, Some(variance)) => Ok(Tensor::cat(vec![prediction, variance], 1)),
        (_, None) => Err(DiffuseError::config(
            "variance_type learned_range needs a model that outputs its variance (2 × C output \
             channels); this model's variance is fixed: use fixed_small or fixed_large",
        )),
    }
}

/// Runs the reverse process from unit-normal noise `z` (x_T = init_noise_sigma · z) along
/// `plan`, conditioned on `class_labels` (one per row) when given, drawing step noise from
/// `noise`; `on_step(done, total)` is called after every model evaluation (progress bars).
pub fn sample<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    schedule: &NoiseSchedule,
    plan: &SamplingPlan,
    z: Tensor<D>,
    class_labels: Option<&[usize]>,
    noise: &mut impl NoiseSource,
    on_step: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<D>> {
    let ctx = plan.context(schedule, denoiser.prediction_type())?;
    let batch = z.dims()[0];
    let mut state = plan.start::<D>();
    let mut x = z.mul_scalar(plan.init_noise_sigma);
    let total = plan.timesteps.len();
    for (index, &t) in plan.timesteps.iter().enumerate() {
        let input = x.clone().mul_scalar(plan.input_scale(index));
        let model_output = step_model_output(denoiser, plan, input, &vec![t; batch], class_labels)?;
        let evaluation = Evaluation {
            index,
            noise: plan.needs_noise(index).then(|| noise.next_like(&x)),
            sample: x,
            model_output,
        };
        x = state.step(&ctx, evaluation)?;
        on_step(index + 1, total);
    }
    Ok(x)
}

/// Where and how [`generate`] draws its samples.
#[derive(Debug, Clone)]
pub struct GenerationConfig {
    /// How many samples in all.
    pub count: usize,
    /// How many go through the denoiser at once; results do not depend on it.
    pub batch_size: usize,
    /// Sample i draws its noise from stream i of this seed.
    pub seed: u64,
    pub device: Device,
    pub dtype: DType,
    /// Class label of every sample, for class-conditional models.
    pub class_labels: Option<Vec<usize>>,
    /// Unit-normal z of every sample (row-major [count, item_shape…]; x_T = init_noise_sigma · z)
    /// instead of seeded draws, e.g. to reproduce another implementation's run; step noise still
    /// comes from the seed.
    pub init_noise: Option<Vec<f64>>,
}

/// Draws `config.count` samples of shape `item_shape` (one sample, no batch dimension) in
/// batches, each from its own seeded x_T. Returns the samples on the host, row-major
/// [count, item_shape…]. `on_step(done, total)` counts model evaluations over all batches.
pub fn generate<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    schedule: &NoiseSchedule,
    plan: &SamplingPlan,
    item_shape: &[usize],
    config: &GenerationConfig,
    on_step: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>> {
    let total = config.count.div_ceil(config.batch_size.max(1)) * plan.timesteps.len();
    let mut done_before = 0;
    in_batches(item_shape, config, &mut |z, labels, noise| {
        let mut report = |done: usize, _: usize| on_step(done_before + done, total);
        let x0 = sample(denoiser, schedule, plan, z, labels, noise, &mut report)?;
        done_before += plan.timesteps.len();
        Ok(x0)
    })
}

/// [`generate`] with ParaDiGMS (Picard iteration over a sliding window of steps): the same samples
/// within the tolerance, in fewer sequential rounds of (larger) model batches. `on_round(rounds,
/// steps converged)` reports progress per batch.
pub fn generate_parallel<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    schedule: &NoiseSchedule,
    plan: &SamplingPlan,
    item_shape: &[usize],
    config: &GenerationConfig,
    settings: &ParallelSettings,
    on_round: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<f64>, ParallelReport)> {
    let ctx = plan.context(schedule, denoiser.prediction_type())?;
    let mut total = ParallelReport::default();
    let samples = in_batches(item_shape, config, &mut |z, labels, noise| {
        let (x0, report) =
            paradigms::sample_parallel(denoiser, &ctx, z, labels, noise, settings, on_round)?;
        total.absorb(&report);
        Ok(x0)
    })?;
    Ok((samples, total))
}

/// Samples one batch from its z, class labels and noise streams.
type BatchSampler<'a, const D: usize> =
    dyn FnMut(Tensor<D>, Option<&[usize]>, &mut SeededNoise) -> Result<Tensor<D>> + 'a;

/// Room for `count` samples of `item_len` values each, or an error when they cannot fit in
/// memory (an absurd count or sample shape is refused here, not by an abort on allocation).
fn sample_buffer(count: usize, item_len: usize, item_shape: &[usize]) -> Result<Vec<f64>> {
    let too_many = || {
        DiffuseError::config(format!(
            "{count} samples of shape {item_shape:?} do not fit in memory"
        ))
    };
    let values = count.checked_mul(item_len).ok_or_else(too_many)?;
    let mut buffer = Vec::new();
    buffer.try_reserve_exact(values).map_err(|_| too_many())?;
    Ok(buffer)
}

/// The batch loop shared by [`generate`] and [`generate_parallel`]: checks the config, draws (or
/// takes) each batch's z and noise streams, runs `sample_batch`, and collects the results.
pub(crate) fn in_batches<const D: usize>(
    item_shape: &[usize],
    config: &GenerationConfig,
    sample_batch: &mut BatchSampler<'_, D>,
) -> Result<Vec<f64>> {
    if item_shape.len() + 1 != D {
        return Err(DiffuseError::config(format!(
            "a sample shape of rank {} does not fit tensors of rank {D}",
            item_shape.len()
        )));
    }
    if config.count == 0 || config.batch_size == 0 {
        return Err(DiffuseError::config(
            "the sample count and the batch size must be at least 1",
        ));
    }
    let item_len: usize = item_shape.iter().product();
    let mut samples = sample_buffer(config.count, item_len, item_shape)?;
    let values = config.count * item_len; // sample_buffer checked that this does not overflow
    if let Some(labels) = config
        .class_labels
        .as_ref()
        .filter(|l| l.len() != config.count)
    {
        return Err(DiffuseError::config(format!(
            "{} class labels for {} samples",
            labels.len(),
            config.count
        )));
    }
    if let Some(init) = config
        .init_noise
        .as_ref()
        .filter(|init| init.len() != values)
    {
        return Err(DiffuseError::config(format!(
            "the initial noise holds {} values; {} samples of shape {item_shape:?} need {}",
            init.len(),
            config.count,
            values
        )));
    }
    let batches = config.count.div_ceil(config.batch_size);
    for batch in 0..batches {
        let start = batch * config.batch_size;
        let end = (start + config.batch_size).min(config.count);
        let mut shape = [end - start; D];
        shape[1..].copy_from_slice(item_shape);
        let mut noise = SeededNoise::new(config.seed, start..end);
        let z = match &config.init_noise {
            Some(init) => from_host_f64(
                init[start * item_len..end * item_len].to_vec(),
                shape,
                &config.device,
                config.dtype,
            ),
            None => noise.next(shape, &config.device, config.dtype),
        };
        let labels = config.class_labels.as_ref().map(|l| &l[start..end]);
        samples.extend(to_host_f64(sample_batch(z, labels, &mut noise)?)?);
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_buffers_that_cannot_exist_are_errors_not_aborts() {
        assert_eq!(sample_buffer(4, 6, &[1, 2, 3]).unwrap().capacity(), 24);
        let overflow = sample_buffer(usize::MAX, 2, &[2]).unwrap_err();
        assert!(
            overflow.to_string().contains("do not fit in memory"),
            "{overflow}"
        );
        assert!(sample_buffer(1 << 40, 1 << 20, &[1 << 20]).is_err());
    }
}
