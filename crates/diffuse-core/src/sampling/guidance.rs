//! Guidance: denoisers that wrap a class-conditional denoiser and steer it towards its class.
//!
//! Classifier-free guidance (Ho & Salimans 2022) extrapolates from the unconditional prediction
//! towards the conditional one; guidance rescale (Lin et al. 2023, §3.4) and a guidance interval
//! (Kynkäänniemi et al. 2024) counter the over-saturation of high weights, and dynamic
//! thresholding lives with the samplers ([`crate::sampling::X0Limit`]). Classifier guidance
//! (Dhariwal & Nichol 2021) shifts the prediction by the gradient of a noise-aware classifier.

use burn::tensor::Tensor;

use crate::denoiser::Denoiser;
use crate::error::{DiffuseError, Result};
use crate::process::forward::PredictionType;
use crate::process::schedule::NoiseSchedule;
use crate::tensor_ops::{from_host_f64, to_host_f64};

/// Settings of classifier-free guidance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CfgSettings {
    /// w: 1 is the conditional model, 0 the unconditional one, > 1 guides.
    pub scale: f64,
    /// φ ∈ [0, 1]: blend of the guided prediction rescaled to the conditional one's standard
    /// deviation (Lin et al. 2023, Algorithm 2); 0 is plain CFG.
    pub rescale: f64,
    /// Apply guidance only where σ_t = √((1 − ᾱ_t)/ᾱ_t) lies in [lo, hi]; elsewhere w = 1.
    pub interval: Option<(f64, f64)>,
}

impl CfgSettings {
    pub fn validate(&self) -> Result<()> {
        if !self.scale.is_finite() {
            return Err(DiffuseError::config(format!(
                "the guidance scale must be a finite number (got {})",
                self.scale
            )));
        }
        if !(0.0..=1.0).contains(&self.rescale) {
            return Err(DiffuseError::config(format!(
                "the guidance rescale φ must lie in [0, 1] (got {})",
                self.rescale
            )));
        }
        if let Some((lo, hi)) = self.interval.filter(|(lo, hi)| !(*lo >= 0.0 && lo <= hi)) {
            return Err(DiffuseError::config(format!(
                "the guidance interval needs 0 ≤ lo ≤ hi in σ (got {lo}, {hi})"
            )));
        }
        Ok(())
    }
}

/// Classifier-free guidance around a class-conditional denoiser whose class `null_class` is
/// "no class" (trained with label dropout).
pub struct ClassifierFreeGuidance<'a, const D: usize> {
    model: &'a dyn Denoiser<D>,
    schedule: &'a NoiseSchedule,
    null_class: usize,
    settings: CfgSettings,
}

impl<'a, const D: usize> ClassifierFreeGuidance<'a, D> {
    pub fn new(
        model: &'a dyn Denoiser<D>,
        schedule: &'a NoiseSchedule,
        null_class: Option<usize>,
        settings: CfgSettings,
    ) -> Result<Self> {
        settings.validate()?;
        let null_class = null_class.ok_or_else(|| {
            DiffuseError::config(
                "classifier-free guidance needs a class-conditional model (this one is \
                 unconditional)",
            )
        })?;
        Ok(Self {
            model,
            schedule,
            null_class,
            settings,
        })
    }

    /// The guidance weight of a row at timestep t: w inside the interval, 1 outside.
    fn weight_at(&self, t: f64) -> f64 {
        match self.settings.interval {
            Some((lo, hi)) => {
                let alpha_bar = self.schedule.alpha_bar_at(t);
                let sigma = ((1.0 - alpha_bar) / alpha_bar).sqrt();
                if (lo..=hi).contains(&sigma) {
                    self.settings.scale
                } else {
                    1.0
                }
            }
            None => self.settings.scale,
        }
    }
}

impl<const D: usize> Denoiser<D> for ClassifierFreeGuidance<'_, D> {
    fn prediction_type(&self) -> PredictionType {
        self.model.prediction_type()
    }

    fn null_class(&self) -> Option<usize> {
        Some(self.null_class)
    }

    fn predict(
        &self,
        x_t: Tensor<D>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
    ) -> Result<Tensor<D>> {
        Ok(self.predict_with_variance(x_t, timesteps, class_labels)?.0)
    }

    /// A learned variance comes from the conditional pass, as in GLIDE.
    fn predict_with_variance(
        &self,
        x_t: Tensor<D>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
    ) -> Result<(Tensor<D>, Option<Tensor<D>>)> {
        let labels = class_labels.ok_or_else(|| {
            DiffuseError::config("classifier-free guidance needs class labels for the samples")
        })?;
        let weights: Vec<f64> = timesteps.iter().map(|&t| self.weight_at(t)).collect();
        if weights.iter().all(|&w| w == 1.0) {
            return self
                .model
                .predict_with_variance(x_t, timesteps, Some(labels));
        }
        // One forward pass over [conditional; unconditional].
        let batch = x_t.dims()[0];
        let both = Tensor::cat(vec![x_t.clone(), x_t], 0);
        let both_t: Vec<f64> = timesteps.iter().chain(timesteps).copied().collect();
        let both_labels: Vec<usize> = labels
            .iter()
            .copied()
            .chain(std::iter::repeat_n(self.null_class, batch))
            .collect();
        let (out, variance) =
            self.model
                .predict_with_variance(both, &both_t, Some(&both_labels))?;
        let conditional = out.clone().narrow(0, 0, batch);
        let unconditional = out.narrow(0, batch, batch);
        let guided = combine(conditional, unconditional, &weights, self.settings.rescale)?;
        Ok((guided, variance.map(|v| v.narrow(0, 0, batch))))
    }
}

/// u + w (c − u) per row (Ho & Salimans 2022, Eq. 6), then guidance rescale with φ.
fn combine<const D: usize>(
    conditional: Tensor<D>,
    unconditional: Tensor<D>,
    weights: &[f64],
    rescale: f64,
) -> Result<Tensor<D>> {
    let (shape, device, dtype) = (
        conditional.dims(),
        conditional.device(),
        conditional.dtype(),
    );
    let c = to_host_f64(conditional)?;
    let u = to_host_f64(unconditional)?;
    let per_row = c.len() / weights.len();
    let mut guided = Vec::with_capacity(c.len());
    for ((c_row, u_row), &w) in c.chunks(per_row).zip(u.chunks(per_row)).zip(weights) {
        let row: Vec<f64> = c_row
            .iter()
            .zip(u_row)
            .map(|(c, u)| u + w * (c - u))
            .collect();
        guided.extend(rescale_row(row, c_row, rescale));
    }
    Ok(from_host_f64(guided, shape, &device, dtype))
}

/// Lin et al. 2023, Algorithm 2: x_rescaled = x_cfg · std(x_cond)/std(x_cfg), blended by φ
/// (standard deviations over the row, unbiased as in diffusers' `rescale_noise_cfg`).
fn rescale_row(guided: Vec<f64>, conditional: &[f64], rescale: f64) -> Vec<f64> {
    if rescale == 0.0 {
        return guided;
    }
    let ratio = std_dev(conditional) / std_dev(&guided);
    if !ratio.is_finite() {
        return guided;
    }
    guided
        .into_iter()
        .map(|g| rescale * g * ratio + (1.0 - rescale) * g)
        .collect()
}

fn std_dev(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt()
}

/// ∇_x log p(y | x_t, t) of a noise-aware classifier.
pub trait ClassGradient<const D: usize> {
    /// The gradient per row, for the classes `labels`.
    fn log_prob_gradient(
        &self,
        x_t: Tensor<D>,
        timesteps: &[f64],
        labels: &[usize],
    ) -> Result<Tensor<D>>;
}

/// Classifier guidance (Dhariwal & Nichol 2021, Algorithm 2 / Eq. 14): ε̂' = ε̂ − s √(1 − ᾱ_t)
/// ∇ log p_φ(y | x_t), which shifts the mean of every sampler by s Σ ∇ log p_φ. Other
/// parameterisations are converted through ε and back.
pub struct ClassifierGuidance<'a, const D: usize> {
    model: &'a dyn Denoiser<D>,
    classifier: &'a dyn ClassGradient<D>,
    schedule: &'a NoiseSchedule,
    scale: f64,
}

impl<'a, const D: usize> ClassifierGuidance<'a, D> {
    pub fn new(
        model: &'a dyn Denoiser<D>,
        classifier: &'a dyn ClassGradient<D>,
        schedule: &'a NoiseSchedule,
        scale: f64,
    ) -> Result<Self> {
        if !(scale.is_finite() && scale >= 0.0) {
            return Err(DiffuseError::config(format!(
                "the classifier guidance scale must be a non-negative number (got {scale})"
            )));
        }
        Ok(Self {
            model,
            classifier,
            schedule,
            scale,
        })
    }
}

impl<const D: usize> Denoiser<D> for ClassifierGuidance<'_, D> {
    fn prediction_type(&self) -> PredictionType {
        self.model.prediction_type()
    }

    fn null_class(&self) -> Option<usize> {
        self.model.null_class()
    }

    fn predict(
        &self,
        x_t: Tensor<D>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
    ) -> Result<Tensor<D>> {
        Ok(self.predict_with_variance(x_t, timesteps, class_labels)?.0)
    }

    /// A learned variance passes through: the classifier shifts the mean only.
    fn predict_with_variance(
        &self,
        x_t: Tensor<D>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
    ) -> Result<(Tensor<D>, Option<Tensor<D>>)> {
        let labels = class_labels.ok_or_else(|| {
            DiffuseError::config("classifier guidance needs a target class for every sample")
        })?;
        let model_labels = self.model.null_class().map(|_| labels);
        let (output, variance) =
            self.model
                .predict_with_variance(x_t.clone(), timesteps, model_labels)?;
        let gradient = self
            .classifier
            .log_prob_gradient(x_t.clone(), timesteps, labels)?;
        let prediction_type = self.model.prediction_type();
        // Rows share a timestep in sequential sampling; parallel windows mix them, so go per row.
        let batch = x_t.dims()[0];
        let rows = (0..batch)
            .map(|i| {
                let alpha_bar = self.schedule.alpha_bar_at(timesteps[i]);
                let (x, out, grad) = (
                    x_t.clone().narrow(0, i, 1),
                    output.clone().narrow(0, i, 1),
                    gradient.clone().narrow(0, i, 1),
                );
                let (_, eps) = prediction_type.to_x0_and_eps(out, x.clone(), alpha_bar);
                let eps = eps - grad.mul_scalar(self.scale * (1.0 - alpha_bar).sqrt());
                let x0 = (x.clone() - eps.clone().mul_scalar((1.0 - alpha_bar).sqrt()))
                    .div_scalar(alpha_bar.sqrt());
                match prediction_type {
                    PredictionType::Epsilon => eps,
                    other => other.from_x0(x0, x, alpha_bar),
                }
            })
            .collect();
        Ok((Tensor::cat(rows, 0), variance))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_zero_is_plain_cfg_and_one_matches_the_conditional_std() {
        let c = [1.0, -1.0, 0.5, -0.5];
        let guided = vec![3.0, -2.0, 1.0, -2.0];
        assert_eq!(rescale_row(guided.clone(), &c, 0.0), guided);
        let rescaled = rescale_row(guided, &c, 1.0);
        assert!((std_dev(&rescaled) - std_dev(&c)).abs() < 1e-12);
    }
}
