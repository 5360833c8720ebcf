//! Gaussian-mixture data and its exact denoiser.
//!
//! For x_0 ~ Σ_k w_k N(μ_k, diag(s_k²)) and x_t = a x_0 + σ ε (a = √ᾱ_t, σ = √(1−ᾱ_t)), the
//! posterior mean E[x_0 | x_t] is available in closed form, so a sampler driven by this denoiser has
//! no model error: what remains is the sampler's own discretisation error.

use std::path::Path;

use burn::tensor::Tensor;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::denoiser::Denoiser;
use crate::error::{DiffuseError, Result};
use crate::process::forward::PredictionType;
use crate::process::schedule::NoiseSchedule;
use crate::tensor_ops::{from_host_f64, to_host_f64};

/// The JSON form: `{"weights":[...], "means":[[...],...], "stds":[[...],...]}`. A component's stds
/// hold one value per dimension, or a single value for an isotropic component.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixtureSpec {
    pub weights: Vec<f64>,
    pub means: Vec<Vec<f64>>,
    pub stds: Vec<Vec<f64>>,
}

/// A validated mixture of diagonal Gaussians with weights normalised to sum to one.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianMixture {
    weights: Vec<f64>,
    means: Vec<Vec<f64>>,
    stds: Vec<Vec<f64>>,
}

impl GaussianMixture {
    /// Checks shapes and values: K ≥ 1 components, equal dimension D ≥ 1, positive weights and stds.
    pub fn new(spec: MixtureSpec) -> Result<Self> {
        let MixtureSpec {
            weights,
            means,
            stds,
        } = spec;
        let k = weights.len();
        if k == 0 {
            return Err(DiffuseError::config(
                "a mixture needs at least one component",
            ));
        }
        if means.len() != k || stds.len() != k {
            return Err(DiffuseError::config(format!(
                "mixture has {k} weights but {} means and {} stds",
                means.len(),
                stds.len()
            )));
        }
        let dim = means[0].len();
        if dim == 0 {
            return Err(DiffuseError::config(
                "mixture means must have at least one dimension",
            ));
        }
        if let Some((i, w)) = weights
            .iter()
            .enumerate()
            .find(|(_, w)| !(w.is_finite() && **w > 0.0))
        {
            return Err(DiffuseError::config(format!(
                "mixture weight {i} is {w}; weights must be positive"
            )));
        }
        let mut full_stds = Vec::with_capacity(k);
        for (i, (mean, std)) in means.iter().zip(stds).enumerate() {
            if mean.len() != dim {
                return Err(DiffuseError::config(format!(
                    "mixture mean {i} has {} dimensions, mean 0 has {dim}",
                    mean.len()
                )));
            }
            if let Some(v) = mean.iter().find(|v| !v.is_finite()) {
                return Err(DiffuseError::config(format!(
                    "mixture mean {i} holds a non-finite value {v}"
                )));
            }
            let std = match std.len() {
                1 => vec![std[0]; dim],
                n if n == dim => std,
                n => {
                    return Err(DiffuseError::config(format!(
                        "mixture std {i} has {n} values; expected {dim} (one per dimension) or 1"
                    )));
                }
            };
            if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                return Err(DiffuseError::config(format!(
                    "mixture std {i} holds {s}; standard deviations must be positive"
                )));
            }
            full_stds.push(std);
        }
        let total: f64 = weights.iter().sum();
        Ok(Self {
            weights: weights.iter().map(|w| w / total).collect(),
            means,
            stds: full_stds,
        })
    }

    /// Parses and validates the JSON form.
    pub fn from_json(json: &str) -> Result<Self> {
        let spec: MixtureSpec = serde_json::from_str(json)
            .map_err(|e| DiffuseError::config(format!("malformed mixture JSON: {e}")))?;
        Self::new(spec)
    }

    /// Reads a mixture JSON file; errors name the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DiffuseError::io(path, e))?;
        Self::from_json(&text).map_err(|e| DiffuseError::bad_file(path, e.to_string()))
    }

    /// D, the data dimension.
    pub fn dim(&self) -> usize {
        self.means[0].len()
    }

    /// Normalised component weights.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// Component means μ_k.
    pub fn means(&self) -> &[Vec<f64>] {
        &self.means
    }

    /// Component standard deviations s_k, one per dimension.
    pub fn stds(&self) -> &[Vec<f64>] {
        &self.stds
    }

    /// p(k | x_t) for x_t = a x_0 + σ ε, where x_t | k ~ N(a μ_k, diag(a² s_k² + σ²)).
    /// With a = 1, σ = 0 these are the responsibilities of clean data.
    pub fn responsibilities(&self, x_t: &[f64], a: f64, sigma: f64) -> Vec<f64> {
        let log_joint: Vec<f64> = (0..self.weights.len())
            .map(|k| self.weights[k].ln() + self.log_marginal(k, x_t, a, sigma))
            .collect();
        let max = log_joint.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let unnormalised: Vec<f64> = log_joint.iter().map(|l| (l - max).exp()).collect();
        let total: f64 = unnormalised.iter().sum();
        unnormalised.into_iter().map(|u| u / total).collect()
    }

    /// log N(x_t; a μ_k, diag(a² s_k² + σ²)).
    fn log_marginal(&self, k: usize, x_t: &[f64], a: f64, sigma: f64) -> f64 {
        let ln_2pi = (2.0 * std::f64::consts::PI).ln();
        x_t.iter()
            .zip(&self.means[k])
            .zip(&self.stds[k])
            .map(|((x, mu), s)| {
                let var = a * a * s * s + sigma * sigma;
                -0.5 * (ln_2pi + var.ln() + (x - a * mu).powi(2) / var)
            })
            .sum()
    }

    /// log p(x) of clean data under the mixture.
    pub fn log_density(&self, x: &[f64]) -> f64 {
        self.marginal_log_density(x, 1.0, 0.0)
    }

    /// log p(x_t) of x_t = a x_0 + σ ε: the mixture of N(a μ_k, diag(a² s_k² + σ²)).
    pub fn marginal_log_density(&self, x_t: &[f64], a: f64, sigma: f64) -> f64 {
        let terms: Vec<f64> = (0..self.weights.len())
            .map(|k| self.weights[k].ln() + self.log_marginal(k, x_t, a, sigma))
            .collect();
        let max = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
    }

    /// Per component k: p(k | x_t) and the mean and variances of x_0 | x_t, k, the conjugate
    /// update μ_k + g (x_t − a μ_k) and s_k² (1 − a g) with gain g = a s_k²/(a² s_k² + σ²).
    fn component_posteriors(&self, x_t: &[f64], a: f64, sigma: f64) -> Vec<ComponentPosterior> {
        let resp = self.responsibilities(x_t, a, sigma);
        resp.into_iter()
            .enumerate()
            .map(|(k, responsibility)| {
                let (mut mean, mut variance) = (Vec::new(), Vec::new());
                for (d, x) in x_t.iter().enumerate() {
                    let (mu, s2) = (self.means[k][d], self.stds[k][d].powi(2));
                    let gain = a * s2 / (a * a * s2 + sigma * sigma);
                    mean.push(mu + gain * (x - a * mu));
                    variance.push(s2 * (1.0 - a * gain));
                }
                ComponentPosterior {
                    responsibility,
                    mean,
                    variance,
                }
            })
            .collect()
    }

    /// E[x_0 | x_t] = Σ_k p(k|x_t) (μ_k + a s_k²/(a² s_k² + σ²) (x_t − a μ_k)), the Bayes-optimal denoiser.
    pub fn posterior_mean(&self, x_t: &[f64], a: f64, sigma: f64) -> Vec<f64> {
        let mut mean = vec![0.0; x_t.len()];
        for c in self.component_posteriors(x_t, a, sigma) {
            for (m, cm) in mean.iter_mut().zip(&c.mean) {
                *m += c.responsibility * cm;
            }
        }
        mean
    }

    /// (∂E[x_0 | x_t]/∂x_t) w. Differentiating Tweedie's E[x_0 | x_t] = (x_t + σ² ∇log p(x_t))/a
    /// gives (a/σ²) Cov[x_0 | x_t], symmetric (so this is also the VJP), with the mixture's
    /// Cov = Σ_k p(k|x_t) (V_k + m_k m_kᵀ) − m mᵀ.
    pub fn posterior_mean_jvp(&self, x_t: &[f64], a: f64, sigma: f64, w: &[f64]) -> Vec<f64> {
        let dot = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(a, b)| a * b).sum::<f64>();
        let components = self.component_posteriors(x_t, a, sigma);
        let mut mean = vec![0.0; x_t.len()];
        let mut second_moment_w = vec![0.0; x_t.len()];
        for c in &components {
            let mean_w = dot(&c.mean, w);
            for d in 0..x_t.len() {
                mean[d] += c.responsibility * c.mean[d];
                second_moment_w[d] +=
                    c.responsibility * (c.variance[d] * w[d] + c.mean[d] * mean_w);
            }
        }
        let mean_w = dot(&mean, w);
        let scale = a / (sigma * sigma);
        second_moment_w
            .iter()
            .zip(&mean)
            .map(|(s, m)| scale * (s - m * mean_w))
            .collect()
    }

    /// `n` exact draws from the mixture (rows of length D).
    pub fn sample(&self, n: usize, rng: &mut impl Rng) -> Vec<Vec<f64>> {
        (0..n)
            .map(|_| {
                let u: f64 = rng.random();
                let mut acc = 0.0;
                let k = self
                    .weights
                    .iter()
                    .position(|w| {
                        acc += w;
                        u < acc
                    })
                    .unwrap_or(self.weights.len() - 1);
                self.means[k]
                    .iter()
                    .zip(&self.stds[k])
                    .map(|(mu, s)| mu + s * rng.sample::<f64, _>(StandardNormal))
                    .collect()
            })
            .collect()
    }
}

/// x_0 | x_t within one component.
struct ComponentPosterior {
    responsibility: f64,
    mean: Vec<f64>,
    variance: Vec<f64>,
}

/// What a set of samples says about one mixture component, next to the truth.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentStats {
    /// Samples assigned to the component (highest responsibility).
    pub count: usize,
    /// Fraction of samples assigned, and its true weight.
    pub weight: f64,
    pub true_weight: f64,
    /// Standard error of the weight estimate from n samples: √(w(1−w)/n).
    pub weight_std_error: f64,
    /// Mean of the assigned samples, and the true mean.
    pub mean: Vec<f64>,
    pub true_mean: Vec<f64>,
    /// Standard error of each mean coordinate: s_kd/√count.
    pub mean_std_error: Vec<f64>,
}

impl ComponentStats {
    /// The largest error of this component's weight and mean, in standard errors.
    pub fn max_error_in_std_errors(&self) -> f64 {
        let weight = (self.weight - self.true_weight).abs() / self.weight_std_error;
        self.mean
            .iter()
            .zip(&self.true_mean)
            .zip(&self.mean_std_error)
            .map(|((m, t), se)| (m - t).abs() / se)
            .fold(weight, f64::max)
    }
}

impl GaussianMixture {
    /// Assigns each sample (rows of length D, row-major) to its most likely component and compares
    /// the per-component weights and means with the truth.
    pub fn component_stats(&self, samples: &[f64]) -> Vec<ComponentStats> {
        let dim = self.dim();
        let n = samples.len() / dim;
        let k = self.weights.len();
        let mut counts = vec![0usize; k];
        let mut sums = vec![vec![0.0; dim]; k];
        for row in samples.chunks(dim) {
            let resp = self.responsibilities(row, 1.0, 0.0);
            let best = (0..k)
                .max_by(|&a, &b| resp[a].total_cmp(&resp[b]))
                .expect("a mixture has at least one component");
            counts[best] += 1;
            sums[best].iter_mut().zip(row).for_each(|(s, x)| *s += x);
        }
        (0..k)
            .map(|c| {
                let count = counts[c];
                let w = self.weights[c];
                ComponentStats {
                    count,
                    weight: count as f64 / n as f64,
                    true_weight: w,
                    weight_std_error: (w * (1.0 - w) / n as f64).sqrt(),
                    mean: sums[c].iter().map(|s| s / count.max(1) as f64).collect(),
                    true_mean: self.means[c].clone(),
                    mean_std_error: self.stds[c]
                        .iter()
                        .map(|s| s / (count.max(1) as f64).sqrt())
                        .collect(),
                }
            })
            .collect()
    }
}

/// The exact denoiser of a [`GaussianMixture`] under a discrete schedule, reporting its prediction
/// in any parameterisation. It computes on the host in f64 and returns a tensor of x_t's dtype.
#[derive(Debug, Clone)]
pub struct GmmDenoiser {
    mixture: GaussianMixture,
    schedule: NoiseSchedule,
    prediction_type: PredictionType,
}

impl GmmDenoiser {
    pub fn new(
        mixture: GaussianMixture,
        schedule: NoiseSchedule,
        prediction_type: PredictionType,
    ) -> Self {
        Self {
            mixture,
            schedule,
            prediction_type,
        }
    }

    pub fn mixture(&self) -> &GaussianMixture {
        &self.mixture
    }
}

impl GmmDenoiser {
    /// The prediction for `x_t` on the host, and with a cotangent w, wᵀ∂prediction/∂x_t. Every
    /// parameterisation is c_x x_t + c_0 x̂_0 with scalar coefficients, so the VJP is the same map
    /// of w and the posterior mean's (symmetric) Jacobian times w.
    fn predict_on_host(
        &self,
        x_t: Tensor<2>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
        cotangent: Option<Tensor<2>>,
    ) -> Result<(Tensor<2>, Option<Tensor<2>>)> {
        if class_labels.is_some() {
            return Err(DiffuseError::config(
                "the mixture denoiser is unconditional: it takes no class labels",
            ));
        }
        let [batch, dim] = x_t.dims();
        if dim != self.mixture.dim() {
            return Err(DiffuseError::config(format!(
                "the mixture is {}-dimensional but the samples have {dim} dimensions",
                self.mixture.dim()
            )));
        }
        if timesteps.len() != batch {
            return Err(DiffuseError::config(format!(
                "{} timesteps for a batch of {batch}",
                timesteps.len()
            )));
        }
        let (device, dtype) = (x_t.device(), x_t.dtype());
        let host = to_host_f64(x_t)?;
        let cotangent = cotangent.map(to_host_f64).transpose()?;
        let (mut output, mut vjp) = (Vec::with_capacity(host.len()), Vec::new());
        for (i, (row, &t)) in host.chunks(dim).zip(timesteps).enumerate() {
            let alpha_bar = self.schedule.alpha_bar_at(t);
            let (a, sigma) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
            let parameterise = |x: f64, x0: f64| match self.prediction_type {
                PredictionType::Sample => x0,
                PredictionType::Epsilon => (x - a * x0) / sigma,
                PredictionType::VPrediction => (a * x - x0) / sigma,
            };
            let x0 = self.mixture.posterior_mean(row, a, sigma);
            output.extend(row.iter().zip(&x0).map(|(x, x0)| parameterise(*x, *x0)));
            if let Some(cotangent) = &cotangent {
                let w = &cotangent[i * dim..(i + 1) * dim];
                let jw = self.mixture.posterior_mean_jvp(row, a, sigma, w);
                vjp.extend(w.iter().zip(&jw).map(|(w, jw)| parameterise(*w, *jw)));
            }
        }
        let tensor = |values| from_host_f64(values, [batch, dim], &device, dtype);
        Ok((tensor(output), cotangent.map(|_| tensor(vjp))))
    }
}

impl Denoiser<2> for GmmDenoiser {
    fn prediction_type(&self) -> PredictionType {
        self.prediction_type
    }

    fn predict(
        &self,
        x_t: Tensor<2>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
    ) -> Result<Tensor<2>> {
        Ok(self.predict_on_host(x_t, timesteps, class_labels, None)?.0)
    }

    /// Exact, from the posterior covariance: the host computation has no autodiff graph.
    fn predict_with_vjp(
        &self,
        x_t: Tensor<2>,
        timesteps: &[f64],
        class_labels: Option<&[usize]>,
        cotangent: Tensor<2>,
    ) -> Result<(Tensor<2>, Tensor<2>)> {
        let (output, vjp) = self.predict_on_host(x_t, timesteps, class_labels, Some(cotangent))?;
        Ok((output, vjp.expect("a cotangent gives a VJP")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_bumps() -> GaussianMixture {
        GaussianMixture::from_json(
            r#"{"weights":[1,3],"means":[[-2,0],[2,1]],"stds":[[0.5],[0.3,0.2]]}"#,
        )
        .unwrap()
    }

    #[test]
    fn weights_are_normalised_and_isotropic_stds_expand() {
        let m = two_bumps();
        assert_eq!(m.weights(), &[0.25, 0.75]);
        assert_eq!(m.stds()[0], vec![0.5, 0.5]);
    }

    #[test]
    fn pure_noise_denoises_to_the_mixture_mean() {
        let m = two_bumps();
        let mean = m.posterior_mean(&[0.3, -0.7], 0.0, 1.0);
        assert!((mean[0] - (0.25 * -2.0 + 0.75 * 2.0)).abs() < 1e-12);
        assert!((mean[1] - 0.75).abs() < 1e-12);
    }

    #[test]
    fn single_gaussian_posterior_matches_the_conjugate_formula() {
        let m = GaussianMixture::from_json(r#"{"weights":[1],"means":[[1.0]],"stds":[[2.0]]}"#)
            .unwrap();
        let (a, sigma, x) = (0.6_f64, 0.8_f64, 0.5);
        let expected = 1.0 + a * 4.0 / (a * a * 4.0 + sigma * sigma) * (x - a);
        assert!((m.posterior_mean(&[x], a, sigma)[0] - expected).abs() < 1e-12);
    }

    #[test]
    fn the_posterior_mean_jacobian_is_its_finite_difference() {
        // Between the bumps both responsibilities move with x_t: the covariance's cross terms count.
        let m = two_bumps();
        let (x, a, sigma, h) = ([0.1, 0.5], 0.8, 0.9, 1e-6);
        for d in 0..2 {
            let mut w = [0.0; 2];
            w[d] = 1.0;
            let shifted = |step: f64| {
                let mut y = x;
                y[d] += step;
                m.posterior_mean(&y, a, sigma)
            };
            let (up, down) = (shifted(h), shifted(-h));
            let jvp = m.posterior_mean_jvp(&x, a, sigma, &w);
            for e in 0..2 {
                let difference = (up[e] - down[e]) / (2.0 * h);
                assert!((jvp[e] - difference).abs() < 1e-7, "∂{e}/∂{d}: {jvp:?}");
            }
        }
    }

    #[test]
    fn malformed_mixtures_are_rejected() {
        for bad in [
            r#"{"weights":[1],"means":[[0,0]],"stds":[[-1]]}"#,
            r#"{"weights":[1,1],"means":[[0,0]],"stds":[[1]]}"#,
            r#"{"weights":[1],"means":[[0,0]],"stds":[[1,1,1]]}"#,
            r#"{"weights":[0],"means":[[0]],"stds":[[1]]}"#,
            r#"{"weights":[1],"means":[[0]]}"#,
            r#"{"weights":[1],"means":[[0]],"stds":[[1]],"extra":1}"#,
            "not json",
        ] {
            assert!(GaussianMixture::from_json(bad).is_err(), "accepted {bad}");
        }
    }
}
