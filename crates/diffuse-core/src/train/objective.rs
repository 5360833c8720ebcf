//! The denoising objective (DDPM Algorithm 1) for ε, x₀ or v prediction, with min-SNR-γ
//! weighting, offset noise and label dropout for classifier-free guidance.

use burn::tensor::{DType, Device, Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::error::Result;
use crate::forward::{PredictionType, q_sample};
use crate::pipeline::DenoisingNetwork;
use crate::schedule::NoiseSchedule;
use crate::tensor_ops::{per_sample, to_host_f64};

/// Options of the loss that do not change the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectiveSettings {
    pub prediction_type: PredictionType,
    /// γ of min-SNR-γ weighting (Hang et al. 2023); `None` weighs every timestep equally.
    pub min_snr_gamma: Option<f64>,
    /// Scale of the per-channel constant added to ε (offset noise, Guttenberg 2023).
    pub offset_noise: f64,
    /// Probability of replacing a class label by the null class (Ho & Salimans 2022).
    pub label_dropout: f64,
}

/// One batch of clean samples on the host, row-major [B, C, H, W].
pub struct CleanBatch<'a> {
    pub values: &'a [f32],
    pub shape: [usize; 4],
    pub labels: Option<&'a [usize]>,
}

/// t ~ U{0, …, T−1}, one per sample (Algorithm 1, line 3).
pub(crate) fn draw_timesteps(
    rng: &mut ChaCha8Rng,
    batch: usize,
    num_train_timesteps: usize,
) -> Vec<usize> {
    (0..batch)
        .map(|_| rng.random_range(0..num_train_timesteps))
        .collect()
}

/// ε ~ N(0, I) (Algorithm 1, line 4), plus `offset` × one N(0, 1) draw per sample and channel.
pub(crate) fn draw_noise(rng: &mut ChaCha8Rng, shape: [usize; 4], offset: f64) -> Vec<f32> {
    let [b, c, h, w] = shape;
    let mut noise: Vec<f32> = (0..b * c * h * w)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect();
    if offset != 0.0 {
        for plane in noise.chunks_mut(h * w) {
            let shift = offset as f32 * rng.sample::<f32, _>(StandardNormal);
            plane.iter_mut().for_each(|v| *v += shift);
        }
    }
    noise
}

/// Each label, or the null class `null_class` with probability `p`.
fn drop_labels(rng: &mut ChaCha8Rng, labels: &[usize], null_class: usize, p: f64) -> Vec<usize> {
    labels
        .iter()
        .map(|&l| {
            if rng.random::<f64>() < p {
                null_class
            } else {
                l
            }
        })
        .collect()
}

/// The min-SNR-γ weight of one timestep for the loss on `prediction` (Hang et al. 2023, Eq. 9
/// and its ε and v forms): min(SNR, γ) over the weight that the plain loss already implies.
pub fn min_snr_weight(snr: f64, gamma: f64, prediction: PredictionType) -> f64 {
    let clipped = snr.min(gamma);
    match prediction {
        PredictionType::Epsilon => clipped / snr,
        PredictionType::Sample => clipped,
        PredictionType::VPrediction => clipped / (snr + 1.0),
    }
}

fn host_tensor(values: Vec<f32>, shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, shape), (device, DType::F32))
}

/// The loss of one batch, to differentiate and to report.
pub struct BatchLoss {
    /// mean_i w_i · mean ‖target_i − f(x_t, t)_i‖², on the autodiff device.
    pub loss: Tensor<1>,
    /// The same value summed on the host in a fixed order, so that reported losses do not depend
    /// on how a parallel reduction happened to split the batch.
    pub value: f64,
}

/// The weighted mean squared error of one batch: mean_i w_i · mean ‖target_i − f(x_t, t)_i‖².
/// All randomness comes from `rng`, so a step is reproduced by reseeding it.
pub fn denoising_loss(
    network: &DenoisingNetwork,
    schedule: &NoiseSchedule,
    settings: &ObjectiveSettings,
    batch: &CleanBatch<'_>,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<BatchLoss> {
    let [b, c, _, _] = batch.shape;
    let timesteps = draw_timesteps(rng, b, schedule.num_train_timesteps());
    let noise = draw_noise(rng, batch.shape, settings.offset_noise);
    let labels = match (batch.labels, network.class_table_size()) {
        (Some(labels), Some(table)) => {
            Some(drop_labels(rng, labels, table - 1, settings.label_dropout))
        }
        _ => None,
    };
    let alpha_bars: Vec<f64> = timesteps.iter().map(|&t| schedule.alpha_bar(t)).collect();
    let x0 = host_tensor(batch.values.to_vec(), batch.shape, device);
    let noise = host_tensor(noise, batch.shape, device);
    let x_t = q_sample(x0.clone(), noise.clone(), &alpha_bars);
    let target = settings.prediction_type.target(x0, noise, &alpha_bars);
    let t: Vec<f64> = timesteps.iter().map(|&t| t as f64).collect();
    let output = network.forward(x_t, &t, labels.as_deref())?;
    // A learned-variance network also outputs C variance channels; the simple loss sees the mean.
    let prediction = output.narrow(1, 0, c);
    let per_sample_error = (prediction - target)
        .powi_scalar(2)
        .reshape([b as i32, -1])
        .mean_dim(1);
    let weighted = match settings.min_snr_gamma {
        Some(gamma) => {
            let weights: Vec<f64> = timesteps
                .iter()
                .map(|&t| min_snr_weight(schedule.snr(t), gamma, settings.prediction_type))
                .collect();
            per_sample_error.clone() * per_sample(&weights, &per_sample_error)
        }
        None => per_sample_error,
    };
    let host = to_host_f64(weighted.clone().detach())?;
    Ok(BatchLoss {
        loss: weighted.mean(),
        value: host.iter().sum::<f64>() / b as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_snr_weights_cap_the_effective_x0_weight_at_gamma() {
        // Every parameterisation's weight times its implied x₀ weight is min(SNR, γ).
        for snr in [0.01, 1.0, 5.0, 100.0] {
            let x0 = min_snr_weight(snr, 5.0, PredictionType::Sample);
            let eps = min_snr_weight(snr, 5.0, PredictionType::Epsilon) * snr;
            let v = min_snr_weight(snr, 5.0, PredictionType::VPrediction) * (snr + 1.0);
            assert!((x0 - snr.min(5.0)).abs() < 1e-12);
            assert!((eps - x0).abs() < 1e-12 && (v - x0).abs() < 1e-12);
        }
    }

    #[test]
    fn offset_noise_shifts_whole_channels() {
        use rand::SeedableRng;
        let plain = draw_noise(&mut ChaCha8Rng::seed_from_u64(1), [1, 2, 3, 3], 0.0);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let shifted = draw_noise(&mut rng, [1, 2, 3, 3], 0.5);
        for (p, s) in plain.chunks(9).zip(shifted.chunks(9)) {
            let d: Vec<f32> = p.iter().zip(s).map(|(a, b)| b - a).collect();
            assert!(d.iter().all(|x| (x - d[0]).abs() < 1e-6) && d[0] != 0.0);
        }
    }
}
