//! The denoising objective (DDPM Algorithm 1) for ε, x₀ or v prediction, with min-SNR-γ
//! weighting, offset noise and label dropout for classifier-free guidance; for a learned variance
//! the hybrid loss L_simple + λ L_vlb of improved DDPM (Nichol & Dhariwal 2021, §3.1).

use burn::tensor::{DType, Device, Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::timesteps::{DrawnTimesteps, TimestepSampling};
use crate::error::{DiffuseError, Result};
use crate::nn::network::DenoisingNetwork;
use crate::process::bound::{model_log_variance, vlb_terms_bits};
use crate::process::forward::{PredictionType, q_sample};
use crate::process::schedule::NoiseSchedule;
use crate::process::variance::{DdpmVariance, split_variance_output};
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
    /// λ of L_hybrid = L_simple + λ L_vlb when the variance is learned (improved DDPM: 0.001).
    pub vlb_weight: f64,
}

/// One batch of clean samples on the host, row-major [B, C, H, W].
pub struct CleanBatch<'a> {
    pub values: &'a [f32],
    pub shape: [usize; 4],
    pub labels: Option<&'a [usize]>,
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
    /// mean_i w_i · (mean ‖target_i − f(x_t, t)_i‖² + λ T L_vlb,i), on the autodiff device.
    pub loss: Tensor<1>,
    /// The same value summed on the host in a fixed order, so that reported losses do not depend
    /// on how a parallel reduction happened to split the batch.
    pub value: f64,
    /// For a learned variance: each sample's training timestep and its L_vlb term in bits/dim
    /// (what importance sampling learns its distribution from).
    pub vlb_terms: Option<(Vec<usize>, Vec<f64>)>,
}

/// A batch at its training timesteps: x₀ and x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε.
struct NoisedBatch<'a> {
    timesteps: &'a [usize],
    alpha_bars: &'a [f64],
    x0: Tensor<4>,
    x_t: Tensor<4>,
}

/// A learned-variance network's output, split: the mean's prediction and the variance channels.
struct SplitOutput {
    prediction: Tensor<4>,
    variance: Tensor<4>,
}

/// L_vlb's term per sample, in bits/dim, with the mean held constant: through it only the variance
/// output learns (Nichol & Dhariwal 2021, §3.1, "stop-gradient on μ_θ").
fn vlb_term_with_frozen_mean(
    schedule: &NoiseSchedule,
    prediction_type: PredictionType,
    batch: NoisedBatch<'_>,
    output: SplitOutput,
) -> Result<Tensor<1>> {
    let NoisedBatch {
        timesteps,
        alpha_bars,
        x0,
        x_t,
    } = batch;
    let x0_predicted =
        prediction_type.x0_per_row(output.prediction.detach(), x_t.clone(), alpha_bars);
    let log_variance = model_log_variance(
        schedule,
        timesteps,
        DdpmVariance::LearnedRange,
        Some(output.variance),
        &x_t,
    )?;
    Ok(vlb_terms_bits(
        schedule,
        timesteps,
        x0,
        x_t,
        x0_predicted,
        log_variance,
    ))
}

/// A run's denoising objective: the forward process, the options of the loss, and how the
/// timesteps are drawn (importance sampling learns from the losses it sees).
#[derive(Debug, Clone)]
pub struct Objective {
    pub schedule: NoiseSchedule,
    pub settings: ObjectiveSettings,
    pub timesteps: TimestepSampling,
}

/// The randomness of one micro-batch's loss: its timesteps with their weights, ε, and the labels
/// the network is conditioned on after label dropout. Training draws it from the step's seeded
/// stream; a replay (a parity test against PyTorch) supplies a recorded one.
#[derive(Debug, Clone, PartialEq)]
pub struct LossDraw {
    pub timesteps: DrawnTimesteps,
    /// ε, row-major like the batch.
    pub noise: Vec<f32>,
    pub labels: Option<Vec<usize>>,
}

impl LossDraw {
    /// Refuses a draw whose sizes do not fit `batch` (a replay's recorded inputs can be wrong).
    fn check_fits(&self, batch: &CleanBatch<'_>, num_train_timesteps: usize) -> Result<()> {
        let b = batch.shape[0];
        let last = (num_train_timesteps - 1) as f64;
        if let Some(t) = self
            .timesteps
            .timesteps
            .iter()
            .find(|t| !(0.0..=last).contains(*t))
        {
            return Err(DiffuseError::config(format!(
                "training timestep {t} is outside 0..={last}"
            )));
        }
        let fits = self.noise.len() == batch.values.len()
            && batch.values.len() == batch.shape.iter().product::<usize>()
            && self.timesteps.timesteps.len() == b
            && self.timesteps.weights.len() == b
            && self.labels.as_ref().is_none_or(|l| l.len() == b);
        if fits {
            Ok(())
        } else {
            Err(DiffuseError::config(format!(
                "a micro-batch of shape {:?} got {} noise values, {} timesteps and {:?} labels",
                batch.shape,
                self.noise.len(),
                self.timesteps.timesteps.len(),
                self.labels.as_ref().map(Vec::len)
            )))
        }
    }
}

impl Objective {
    /// The randomness of one batch's loss, drawn from `rng` in a fixed order: timesteps, noise,
    /// then label dropout (for a network with a class table of `class_table` rows, the last
    /// being the null class).
    pub fn draw(
        &self,
        rng: &mut ChaCha8Rng,
        batch: &CleanBatch<'_>,
        class_table: Option<usize>,
    ) -> LossDraw {
        let timesteps = self.timesteps.draw(rng, batch.shape[0], &self.schedule);
        let noise = draw_noise(rng, batch.shape, self.settings.offset_noise);
        let labels = match (batch.labels, class_table) {
            (Some(labels), Some(table)) => Some(drop_labels(
                rng,
                labels,
                table - 1,
                self.settings.label_dropout,
            )),
            _ => None,
        };
        LossDraw {
            timesteps,
            noise,
            labels,
        }
    }

    /// The loss of one batch under `draw`: mean_i w_i · (mean ‖target_i − f(x_t, t)_i‖² [+ λ T
    /// L_vlb,i for a learned variance, the single-sample estimate of λ Σ_t L_t]).
    pub fn loss(
        &self,
        network: &DenoisingNetwork,
        batch: &CleanBatch<'_>,
        draw: &LossDraw,
        device: &Device,
    ) -> Result<BatchLoss> {
        draw.check_fits(batch, self.schedule.num_train_timesteps())?;
        let (schedule, settings) = (&self.schedule, &self.settings);
        let [b, c, _, _] = batch.shape;
        let drawn = &draw.timesteps;
        let labels = draw.labels.as_ref();
        let t = &drawn.timesteps;
        let alpha_bars: Vec<f64> = t.iter().map(|&t| schedule.alpha_bar_at(t)).collect();
        let x0 = host_tensor(batch.values.to_vec(), batch.shape, device);
        let noise = host_tensor(draw.noise.clone(), batch.shape, device);
        let x_t = q_sample(x0.clone(), noise.clone(), &alpha_bars);
        let target = settings
            .prediction_type
            .target(x0.clone(), noise, &alpha_bars);
        let output = network.forward(x_t.clone(), t, labels.map(Vec::as_slice))?;
        let learned_variance = output.dims()[1] == 2 * c;
        let (prediction, variance) = if learned_variance {
            let (prediction, variance) = split_variance_output(output, c)?;
            (prediction, Some(variance))
        } else {
            (output, None)
        };
        let per_sample_error = (prediction.clone() - target)
            .powi_scalar(2)
            .reshape([b as i32, -1])
            .mean_dim(1);
        let mut weights = drawn.weights.clone();
        if let Some(gamma) = settings.min_snr_gamma {
            for (w, &a) in weights.iter_mut().zip(&alpha_bars) {
                *w *= min_snr_weight(a / (1.0 - a), gamma, settings.prediction_type);
            }
        }
        let (per_sample_loss, vlb_terms) = match variance {
            Some(variance) => {
                let steps: Vec<usize> = t.iter().map(|&t| t as usize).collect();
                let noised = NoisedBatch {
                    timesteps: &steps,
                    alpha_bars: &alpha_bars,
                    x0,
                    x_t,
                };
                let output = SplitOutput {
                    prediction,
                    variance,
                };
                let vlb =
                    vlb_term_with_frozen_mean(schedule, settings.prediction_type, noised, output)?;
                let scale = settings.vlb_weight * schedule.num_train_timesteps() as f64;
                let host = to_host_f64(vlb.clone().detach())?;
                let loss = per_sample_error + vlb.reshape([b, 1]).mul_scalar(scale);
                (loss, Some((steps, host)))
            }
            None => (per_sample_error, None),
        };
        let weighted = if weights.iter().all(|&w| w == 1.0) {
            per_sample_loss
        } else {
            per_sample_loss.clone() * per_sample(&weights, &per_sample_loss)
        };
        let host = to_host_f64(weighted.clone().detach())?;
        Ok(BatchLoss {
            loss: weighted.mean(),
            value: host.iter().sum::<f64>() / b as f64,
            vlb_terms,
        })
    }

    /// Lets importance sampling learn from the L_vlb terms of a batch's loss.
    pub fn record(&mut self, loss: &BatchLoss) -> Result<()> {
        match (&mut self.timesteps, &loss.vlb_terms) {
            (TimestepSampling::Importance(history), Some((steps, terms))) => {
                history.record(steps, terms)
            }
            _ => Ok(()),
        }
    }
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
    fn the_vlb_term_trains_the_variance_but_not_the_mean() {
        // Stop-gradient on μ_θ (Nichol & Dhariwal 2021, §3.1): L_vlb reaches the variance output
        // only; the mean learns from L_simple alone.
        use crate::process::schedule::BetaSchedule;
        use burn::tensor::Device;
        let schedule = NoiseSchedule::new(
            &BetaSchedule::Linear {
                beta_start: 1e-4,
                beta_end: 0.02,
            },
            1000,
            false,
        )
        .unwrap();
        let device = Device::default().autodiff();
        let values =
            |offset: f32| -> Vec<f32> { (0..8).map(|i| i as f32 * 0.1 - offset).collect() };
        let leaf = |v: Vec<f32>| host_tensor(v, [2, 1, 2, 2], &device).require_grad();
        let (prediction, variance_output) = (leaf(values(0.3)), leaf(values(0.5)));
        // ε̂ small enough at t = 0 that x̂_0 stays within a bin of x_0.
        let steps = [0, 400];
        let alpha_bars: Vec<f64> = steps.iter().map(|&t| schedule.alpha_bar(t)).collect();
        let x0 = host_tensor(values(0.2), [2, 1, 2, 2], &device);
        // Near x_0, so that the t = 0 decoder's narrow bins hold mass (and gradient).
        let x_t = host_tensor(values(0.199), [2, 1, 2, 2], &device);
        let noised = NoisedBatch {
            timesteps: &steps,
            alpha_bars: &alpha_bars,
            x0,
            x_t,
        };
        let output = SplitOutput {
            prediction: prediction.clone(),
            variance: variance_output.clone(),
        };
        let vlb =
            vlb_term_with_frozen_mean(&schedule, PredictionType::Epsilon, noised, output).unwrap();
        let grads = vlb.sum().backward();
        let variance_grad = to_host_f64(variance_output.grad(&grads).unwrap()).unwrap();
        assert!(
            variance_grad.iter().all(|g| g.abs() > 0.0),
            "{variance_grad:?}"
        );
        let mean_grad = prediction.grad(&grads).map(|g| to_host_f64(g).unwrap());
        assert!(
            mean_grad
                .as_ref()
                .is_none_or(|g| g.iter().all(|&v| v == 0.0)),
            "{mean_grad:?}"
        );
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
