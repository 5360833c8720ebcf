//! The likelihood of data under the probability-flow ODE (Song et al. 2021, §4.3 and App. D.2).
//!
//! The ODE dx/dt = v(x, t) = f(t) x − ½ g(t)² ∇_x log p_t(x) (Eq. 13) carries p_ε to p_T, and
//! along a path the density follows the instantaneous change of variables (Chen et al. 2018,
//! Thm. 1), d log p_t(x(t))/dt = −∇·v(x(t), t). Integrating both from the data point at t = ε to
//! T = 1 gives
//!     log p_ε(x) = log p_T(x(T)) + ∫_ε^T ∇·v(x(t), t) dt,
//! with p_T taken as the prior N(0, s(T)² I) the samplers start from. The pair runs as one ODE
//! in f64 on the host through the adaptive RK45 of [`crate::eval::ode`], a batch as one system with
//! shared steps, as Song et al.'s code runs scipy's `solve_ivp` (rtol = atol = 1e-5, ε = 1e-5).
//!
//! ∇·v = f(t) D − ½ g(t)² tr ∇²log p_t. The trace is exact, Σ_i e_iᵀ J e_i with one
//! vector–Jacobian product per dimension (for low-dimensional data), or Hutchinson's estimate
//! εᵀ J ε with E[ε εᵀ] = I (one VJP; Grathwohl et al. 2019). ε is drawn once per sample before the
//! solve and held, so the ODE stays smooth for the step control; it is seeded per sample, so it
//! does not depend on the batch (the shared steps do, within the tolerances).
//!
//! The score is a VP-trained denoiser's at the matching noise level
//! ([`crate::process::sde::score_and_vjp`]); below the noise of its first training step (t below
//! about 1e-3 for DDPM's linear schedule under VP β 0.1…20) it is that step's.

use std::f64::consts::{LN_2, PI};

use burn::tensor::{DType, Device, Tensor};
use rand::Rng;
use rand_distr::StandardNormal;
use serde::Serialize;

use crate::data::DataKind;
use crate::denoiser::Denoiser;
use crate::error::{DiffuseError, Result};
use crate::eval::ode::{Tolerances, solve_rk45};
use crate::noise::SeededNoise;
use crate::process::schedule::NoiseSchedule;
use crate::process::sde::{Sde, score_and_vjp};
use crate::process::sigmas::schedule_sigmas;
use crate::tensor_ops::{from_host_f64, to_host_f64};

/// T: every [`Sde`] runs over t ∈ [0, 1].
const END_TIME: f64 = 1.0;

/// Keeps the dequantisation noise apart from the probes drawn with the same seed.
const DEQUANTISATION_KEY: u64 = 0x6465_7175_616e_7421;

/// How the divergence's trace is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceEstimator {
    /// Σ_i e_iᵀ (∂v/∂x) e_i: D vector–Jacobian products per evaluation.
    Exact,
    /// Hutchinson with entries ±1 (the lower-variance probe; Song et al.'s default).
    Rademacher,
    /// Hutchinson with ε ~ N(0, I).
    Gaussian,
}

impl TraceEstimator {
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "exact" => Ok(Self::Exact),
            "rademacher" => Ok(Self::Rademacher),
            "gaussian" => Ok(Self::Gaussian),
            other => Err(DiffuseError::UnknownName {
                kind: "trace estimator",
                name: other.to_string(),
                expected: "rademacher, gaussian, exact",
            }),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Rademacher => "rademacher",
            Self::Gaussian => "gaussian",
        }
    }
}

/// How to integrate the likelihood.
#[derive(Debug, Clone)]
pub struct OdeLikelihoodSettings {
    /// The process whose probability-flow ODE carries the data to the prior.
    pub sde: Sde,
    pub tolerances: Tolerances,
    /// ε: the solve starts from the data at t = ε.
    pub start_time: f64,
    pub trace: TraceEstimator,
    /// Seeds each sample's probe (and dequantisation noise) by the sample's index.
    pub seed: u64,
    pub device: Device,
}

impl OdeLikelihoodSettings {
    /// Song et al.'s: rtol = atol = 1e-5, ε = 1e-5, Rademacher probes.
    pub fn song(sde: Sde, seed: u64, device: Device) -> Self {
        Self {
            sde,
            tolerances: Tolerances {
                rtol: 1e-5,
                atol: 1e-5,
            },
            start_time: 1e-5,
            trace: TraceEstimator::Rademacher,
            seed,
            device,
        }
    }
}

/// One solve over a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct OdeSolve {
    /// log p_ε(x) per sample, in nats.
    pub log_likelihood: Vec<f64>,
    /// log N(x(T); 0, s(T)² I) per sample: the prior's part of `log_likelihood`.
    pub prior_log_likelihood: Vec<f64>,
    /// x(T) per sample, row-major: where the flow takes the data.
    pub latent: Vec<f64>,
    /// Evaluations of the ODE's right-hand side.
    pub nfe: usize,
}

/// The probes p whose pᵀ (∂v/∂x) p sum to the divergence.
enum Probes {
    /// e_1 … e_D in every row: the exact trace.
    Basis,
    /// One probe per row, [rows, numel] row-major: Hutchinson's estimate.
    Drawn(Vec<f64>),
}

impl Probes {
    /// Probes of `numel` values for the samples whose streams `noise` holds.
    fn new(trace: TraceEstimator, noise: &mut SeededNoise, numel: usize) -> Self {
        match trace {
            TraceEstimator::Exact => Self::Basis,
            TraceEstimator::Rademacher => Self::Drawn(
                noise.next_host_with(numel, |rng| if rng.random::<bool>() { 1.0 } else { -1.0 }),
            ),
            TraceEstimator::Gaussian => {
                Self::Drawn(noise.next_host_with(numel, |rng| rng.sample(StandardNormal)))
            }
        }
    }

    /// Calls `visit` with each probe, [rows, numel] row-major.
    fn for_each(
        &self,
        rows: usize,
        numel: usize,
        visit: &mut dyn FnMut(&[f64]) -> Result<()>,
    ) -> Result<()> {
        match self {
            Self::Drawn(probe) => visit(probe),
            Self::Basis => (0..numel).try_for_each(|i| {
                let mut e_i = vec![0.0; rows * numel];
                e_i.iter_mut().skip(i).step_by(numel).for_each(|e| *e = 1.0);
                visit(&e_i)
            }),
        }
    }
}

/// The probability-flow ODE of `sde` under a VP-trained denoiser's score.
struct ProbabilityFlow<'a, const D: usize> {
    denoiser: &'a dyn Denoiser<D>,
    schedule: &'a NoiseSchedule,
    schedule_sigmas: Vec<f64>,
    sde: Sde,
    class_labels: Option<&'a [usize]>,
}

impl<const D: usize> ProbabilityFlow<'_, D> {
    /// v(x, t) = f x − ½ g² ∇log p_t(x) (Eq. 13) and, per row, Σ_p pᵀ (∂v/∂x) p =
    /// Σ_p (f ‖p‖² − ½ g² pᵀ ∇²log p_t p), one score VJP per probe.
    fn velocity_and_divergence(
        &self,
        x: Tensor<D>,
        t: f64,
        probes: &Probes,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let (shape, device, dtype) = (x.dims(), x.device(), x.dtype());
        let (rows, numel) = (shape[0], shape[1..].iter().product::<usize>());
        let (f, g) = self.sde.drift_and_diffusion(t);
        let mut score = None;
        let mut divergence = vec![0.0; rows];
        probes.for_each(rows, numel, &mut |probe| {
            let w = from_host_f64(probe.to_vec(), shape, &device, dtype);
            let (s, s_vjp) = score_and_vjp(
                self.denoiser,
                self.schedule,
                &self.schedule_sigmas,
                x.clone(),
                self.sde.marginal(t),
                self.class_labels,
                w,
            )?;
            let s_vjp = to_host_f64(s_vjp)?;
            let rows = probe.chunks(numel).zip(s_vjp.chunks(numel));
            for (d, (p, j)) in divergence.iter_mut().zip(rows) {
                let (norm2, quadratic): (f64, f64) = p
                    .iter()
                    .zip(j)
                    .fold((0.0, 0.0), |(n, q), (p, j)| (n + p * p, q + p * j));
                *d += f * norm2 - 0.5 * g * g * quadratic;
            }
            score.get_or_insert(s);
            Ok(())
        })?;
        let score = score.expect("there is at least one probe");
        let velocity = x.mul_scalar(f) - score.mul_scalar(0.5 * g * g);
        Ok((to_host_f64(velocity)?, divergence))
    }
}

/// log N(z; 0, s² I) per row of `z`.
fn prior_log_density(z: &[f64], numel: usize, s: f64) -> Vec<f64> {
    z.chunks(numel)
        .map(|row| {
            let sq: f64 = row.iter().map(|v| v * v).sum();
            -0.5 * (sq / (s * s) + numel as f64 * (2.0 * PI * s * s).ln())
        })
        .collect()
}

/// log p_ε(x) of each row of `x` (samples of `shape`, continuous values), by one solve of the
/// batch. `first_index` is the first row's index in the data set, which seeds its probe.
pub fn ode_log_likelihood<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    schedule: &NoiseSchedule,
    x: &[f64],
    shape: [usize; D],
    first_index: usize,
    class_labels: Option<&[usize]>,
    settings: &OdeLikelihoodSettings,
) -> Result<OdeSolve> {
    let rows = shape[0];
    let numel: usize = shape[1..].iter().product();
    if rows == 0 || numel == 0 || x.len() != rows * numel {
        return Err(DiffuseError::config(format!(
            "{} values do not form the {rows} samples of shape {:?}",
            x.len(),
            &shape[1..]
        )));
    }
    let eps = settings.start_time;
    if !(eps > 0.0 && eps < END_TIME) {
        return Err(DiffuseError::config(format!(
            "the ODE starts at ε in (0, {END_TIME}), got {eps}"
        )));
    }
    let flow = ProbabilityFlow {
        denoiser,
        schedule,
        schedule_sigmas: schedule_sigmas(schedule),
        sde: settings.sde,
        class_labels,
    };
    let mut noise = SeededNoise::new(settings.seed, first_index..first_index + rows);
    let probes = Probes::new(settings.trace, &mut noise, numel);
    let size = rows * numel;
    // The state is [x, δ] with δ(t) = ∫_ε^t ∇·v: dδ/dt = ∇·v.
    let mut rhs = |t: f64, y: &[f64]| -> Result<Vec<f64>> {
        let x = from_host_f64(y[..size].to_vec(), shape, &settings.device, DType::F32);
        let (mut dy, divergence) = flow.velocity_and_divergence(x, t, &probes)?;
        dy.extend(divergence);
        Ok(dy)
    };
    let mut start = x.to_vec();
    start.resize(size + rows, 0.0);
    let solution = solve_rk45(&mut rhs, eps, start, END_TIME, &settings.tolerances)?;
    let (latent, delta) = solution.y.split_at(size);
    let prior = prior_log_density(latent, numel, settings.sde.marginal(END_TIME).1);
    Ok(OdeSolve {
        log_likelihood: prior.iter().zip(delta).map(|(p, d)| p + d).collect(),
        prior_log_likelihood: prior,
        latent: latent.to_vec(),
        nfe: solution.nfe,
    })
}

/// Uniform dequantisation (Theis et al. 2016; Song et al.'s code): level k becomes
/// y = 2 (k + u)/256 − 1 with u ~ U[0, 1), so y fills [−1, 1) and each level its own cell.
fn dequantize(x: &[f64], noise: &mut SeededNoise, numel: usize) -> Result<Vec<f64>> {
    let uniform = noise.next_host_with(numel, |rng| rng.random::<f64>());
    x.iter()
        .zip(uniform)
        .map(|(&v, u)| {
            if !(-1.0..=1.0).contains(&v) {
                return Err(DiffuseError::config(format!(
                    "8-bit image values lie in [-1, 1]; got {v}"
                )));
            }
            let level = ((v + 1.0) * 127.5).round();
            Ok(2.0 * (level + u) / 256.0 - 1.0)
        })
        .collect()
}

/// Bits per dimension from log p(y) of D values. For images (8-bit), the discrete likelihood
/// P(k) = ∫ p_X((k + u)/256) 256^−D du of x = (k + u)/256 ∈ [0, 1)^D satisfies, by Jensen,
/// −log₂ P(k) ≤ E_u[−log₂ p_X(x)] + 8D, and p_X(x) = 2^D p_Y(2x − 1) for y in [−1, 1], so
/// −log₂ P(k)/D ≤ E_u[−log₂ p_Y(y)]/D + 7 (Song et al.'s offset 7 for centred data), estimated
/// with one u per image. Vectors are continuous: −log₂ p(y)/D.
fn bits_per_dim(log_likelihood: f64, numel: usize, kind: DataKind) -> f64 {
    let bits = -log_likelihood / (numel as f64 * LN_2);
    match kind {
        DataKind::Images => bits + 7.0,
        DataKind::Vectors => bits,
    }
}

/// The negative log-likelihood of a data set under the probability-flow ODE.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OdeNllReport {
    /// Mean −log₂ p per dimension (8-bit data: of the discrete images, through dequantisation).
    pub bits_per_dim: f64,
    /// Its standard error over samples, s/√n (absent for a single sample).
    pub bits_per_dim_std_error: Option<f64>,
    /// Mean log p_ε of the scored values (the dequantised images in [−1, 1]), in nats.
    pub log_likelihood: f64,
    /// Mean log N(x(T); 0, s(T)² I), in nats: the prior's part of `log_likelihood`.
    pub prior_log_likelihood: f64,
    pub samples: usize,
    /// Right-hand-side evaluations per solve, averaged over the `batches` solves.
    pub nfe: f64,
    pub batches: usize,
    pub sde: &'static str,
    pub trace: &'static str,
    pub rtol: f64,
    pub atol: f64,
    pub start_time: f64,
    pub dequantized: bool,
}

/// A data set to score: `shape[0]` samples of `shape[1..]`, row-major, their class labels, and
/// whether they are 8-bit images (dequantised) or continuous vectors (scored as they are).
#[derive(Debug, Clone, Copy)]
pub struct ScoredData<'a, const D: usize> {
    pub values: &'a [f64],
    pub shape: [usize; D],
    pub class_labels: Option<&'a [usize]>,
    pub kind: DataKind,
}

impl<const D: usize> ScoredData<'_, D> {
    fn numel(&self) -> usize {
        self.shape[1..].iter().product()
    }

    fn validate(&self) -> Result<()> {
        let count = self.shape[0];
        if count == 0 || self.values.len() != count * self.numel() {
            return Err(DiffuseError::config(format!(
                "{} values do not form the {count} samples of shape {:?}",
                self.values.len(),
                &self.shape[1..]
            )));
        }
        match self.class_labels {
            Some(labels) if labels.len() != count => Err(DiffuseError::config(format!(
                "{} class labels for {count} samples",
                labels.len()
            ))),
            _ => Ok(()),
        }
    }

    /// Samples `rows` as the ODE sees them: images dequantised with noise seeded per sample.
    fn batch_values(&self, rows: std::ops::Range<usize>, seed: u64) -> Result<Vec<f64>> {
        let numel = self.numel();
        let values = &self.values[rows.start * numel..rows.end * numel];
        match self.kind {
            DataKind::Images => {
                let mut noise = SeededNoise::new(seed ^ DEQUANTISATION_KEY, rows);
                dequantize(values, &mut noise, numel)
            }
            DataKind::Vectors => Ok(values.to_vec()),
        }
    }
}

/// What the solved batches add up to.
#[derive(Debug, Default)]
struct NllTotals {
    bits: Vec<f64>,
    log_likelihood: f64,
    prior: f64,
    nfe: usize,
    batches: usize,
}

impl NllTotals {
    fn add(&mut self, solve: &OdeSolve, numel: usize, kind: DataKind) {
        let bits = solve
            .log_likelihood
            .iter()
            .map(|&l| bits_per_dim(l, numel, kind));
        self.bits.extend(bits);
        self.log_likelihood += solve.log_likelihood.iter().sum::<f64>();
        self.prior += solve.prior_log_likelihood.iter().sum::<f64>();
        self.nfe += solve.nfe;
        self.batches += 1;
    }

    /// Means over the samples, with the standard error s/√n of the bits/dim.
    fn report(self, settings: &OdeLikelihoodSettings, kind: DataKind) -> OdeNllReport {
        let count = self.bits.len();
        let n = count as f64;
        let mean = self.bits.iter().sum::<f64>() / n;
        let std_error = (count > 1).then(|| {
            let variance = self.bits.iter().map(|b| (b - mean).powi(2)).sum::<f64>() / (n - 1.0);
            (variance / n).sqrt()
        });
        OdeNllReport {
            bits_per_dim: mean,
            bits_per_dim_std_error: std_error,
            log_likelihood: self.log_likelihood / n,
            prior_log_likelihood: self.prior / n,
            samples: count,
            nfe: self.nfe as f64 / self.batches as f64,
            batches: self.batches,
            sde: settings.sde.name(),
            trace: settings.trace.name(),
            rtol: settings.tolerances.rtol,
            atol: settings.tolerances.atol,
            start_time: settings.start_time,
            dequantized: kind == DataKind::Images,
        }
    }
}

/// The NLL of `data` under `denoiser`, solved `batch_size` samples at a time.
/// `on_samples(done, total)` reports progress.
pub fn ode_negative_log_likelihood<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    schedule: &NoiseSchedule,
    data: &ScoredData<'_, D>,
    batch_size: usize,
    settings: &OdeLikelihoodSettings,
    on_samples: &mut dyn FnMut(usize, usize),
) -> Result<OdeNllReport> {
    if batch_size == 0 {
        return Err(DiffuseError::config("the batch size must be at least 1"));
    }
    data.validate()?;
    let count = data.shape[0];
    let mut totals = NllTotals::default();
    for start in (0..count).step_by(batch_size) {
        let end = (start + batch_size).min(count);
        let values = data.batch_values(start..end, settings.seed)?;
        let mut batch_shape = data.shape;
        batch_shape[0] = end - start;
        let labels = data.class_labels.map(|l| &l[start..end]);
        let solve = ode_log_likelihood(
            denoiser,
            schedule,
            &values,
            batch_shape,
            start,
            labels,
            settings,
        )?;
        totals.add(&solve, data.numel(), data.kind);
        on_samples(end, count);
    }
    Ok(totals.report(settings, data.kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dequantized_levels_fill_their_own_cells() {
        let levels = [-1.0, -1.0 + 2.0 / 255.0, 0.0039215686, 1.0];
        let mut noise = SeededNoise::new(3, 0..1);
        let y = dequantize(&levels, &mut noise, levels.len()).unwrap();
        for (v, y) in levels.iter().zip(&y) {
            let k = ((v + 1.0) * 127.5).round();
            let cell = (2.0 * k / 256.0 - 1.0)..(2.0 * (k + 1.0) / 256.0 - 1.0);
            assert!(cell.contains(y), "level {k}: {y} outside {cell:?}");
        }
        assert!(dequantize(&[1.5], &mut noise, 1).is_err());
    }

    #[test]
    fn a_uniform_density_on_the_cube_costs_eight_bits() {
        // p_Y = 2^−D on [−1, 1]^D is p_X = 1 on [0, 1]^D: P(k) = 256^−D, 8 bits per dimension.
        let d = 5;
        let log_p = -(d as f64) * LN_2;
        assert!((bits_per_dim(log_p, d, DataKind::Images) - 8.0).abs() < 1e-12);
        assert!((bits_per_dim(log_p, d, DataKind::Vectors) - 1.0).abs() < 1e-12);
    }
}
