//! ParaDiGMS (Shih et al. 2023): sampling as a fixed point. A sequential sampler is
//! x_{i+1} = x_i + drift_i(x_i); Picard iteration updates a window of W steps at once,
//! x_{j+1} ← x_s + Σ_{i=s..j} drift_i(x_i) (Algorithm 1), with the W model evaluations of a
//! round batched into one call. Steps whose value stops changing (within the tolerance) slide out
//! of the window. The result matches the sequential sampler within the tolerance, in fewer
//! sequential rounds of larger batches: latency traded for compute.

use burn::tensor::Tensor;

use super::{SamplerKind, SamplingPlan, check_plan, explicit_step, solver_x0, step_model_output};
use crate::denoiser::Denoiser;
use crate::error::{DiffuseError, Result};
use crate::noise::NoiseSource;
use crate::schedule::NoiseSchedule;
use crate::tensor_ops::to_host_f64;

/// Window and tolerance of the Picard iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParallelSettings {
    /// W: how many steps are refined (and evaluated) together per round.
    pub window: usize,
    /// τ: a step has converged when the root-mean-square change of its x in a round, per
    /// sample, is at most τ.
    pub tolerance: f64,
}

impl Default for ParallelSettings {
    fn default() -> Self {
        Self {
            window: 16,
            tolerance: 1e-3,
        }
    }
}

/// What a parallel run cost.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ParallelReport {
    /// Sequential rounds: one batched model call each (the latency measure).
    pub rounds: usize,
    /// Model evaluations per sample in all rounds (the compute measure).
    pub evaluations: usize,
    /// The sequential sampler's evaluations, for comparison.
    pub sequential_evaluations: usize,
}

impl ParallelReport {
    /// Adds another batch's costs.
    pub fn absorb(&mut self, other: &ParallelReport) {
        self.rounds += other.rounds;
        self.evaluations += other.evaluations;
        self.sequential_evaluations += other.sequential_evaluations;
    }
}

/// Runs `plan` by Picard iteration from unit-normal `z`, with all step noise drawn up front in
/// the sequential sampler's order (so the fixed point is the sequential result).
#[allow(clippy::too_many_arguments)]
pub fn sample_parallel<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    schedule: &NoiseSchedule,
    plan: &SamplingPlan,
    z: Tensor<D>,
    class_labels: Option<&[usize]>,
    noise: &mut impl NoiseSource,
    settings: &ParallelSettings,
    on_round: &mut dyn FnMut(usize, usize),
) -> Result<(Tensor<D>, ParallelReport)> {
    check_plan(plan, schedule)?;
    if !matches!(
        plan.sampler,
        SamplerKind::Ddpm(_) | SamplerKind::Ddim(_) | SamplerKind::DpmSolver(_)
    ) {
        return Err(DiffuseError::config(format!(
            "parallel sampling supports ddpm, ddim and dpmsolver++ (got {})",
            plan.sampler.name()
        )));
    }
    if settings.window < 2 || !(settings.tolerance.is_finite() && settings.tolerance > 0.0) {
        return Err(DiffuseError::config(format!(
            "parallel sampling needs a window of at least 2 steps and a positive tolerance (got \
             window {}, tolerance {})",
            settings.window, settings.tolerance
        )));
    }
    let n = plan.timesteps.len();
    let batch = z.dims()[0];
    let prediction_type = denoiser.prediction_type();
    let x_start = z.mul_scalar(plan.init_noise_sigma);
    let step_noise: Vec<Option<Tensor<D>>> = (0..n)
        .map(|i| plan.needs_noise(i).then(|| noise.next_like(&x_start)))
        .collect();
    let mut xs: Vec<Tensor<D>> = vec![x_start; n + 1];
    // Final x̂_0 of converged steps (DPM-Solver++'s multistep history).
    let mut x0s: Vec<Option<Tensor<D>>> = vec![None; n];
    let labels: Option<Vec<usize>> = class_labels.map(|l| l.repeat(settings.window));
    let mut report = ParallelReport {
        sequential_evaluations: n,
        ..ParallelReport::default()
    };
    let mut start = 0;
    while start < n {
        let end = (start + settings.window).min(n);
        let width = end - start;
        let inputs = Tensor::cat(xs[start..end].to_vec(), 0);
        let timesteps: Vec<f64> = plan.timesteps[start..end]
            .iter()
            .flat_map(|&t| std::iter::repeat_n(t, batch))
            .collect();
        let row_labels = labels.as_ref().map(|l| &l[..width * batch]);
        let outputs = step_model_output(denoiser, plan, inputs, &timesteps, row_labels)?;
        report.rounds += 1;
        report.evaluations += width;
        let mut window_x0s: Vec<Tensor<D>> = Vec::with_capacity(width);
        let mut updated = xs[start].clone();
        let mut converged = 0;
        let mut still_converging = true;
        for j in start..end {
            let output = outputs.clone().narrow(0, (j - start) * batch, batch);
            let history: Vec<Tensor<D>> = match &plan.sampler {
                SamplerKind::DpmSolver(o) => {
                    let x0 = solver_x0(
                        prediction_type,
                        &o.x0_limit,
                        output.clone(),
                        xs[j].clone(),
                        plan.sigmas[j],
                    )?;
                    window_x0s.push(x0);
                    (j.saturating_sub(2)..=j)
                        .map(|i| {
                            if i >= start {
                                window_x0s[i - start].clone()
                            } else {
                                x0s[i].clone().expect("converged steps keep their x̂_0")
                            }
                        })
                        .collect()
                }
                _ => Vec::new(),
            };
            let next = explicit_step(
                plan,
                schedule,
                prediction_type,
                j,
                xs[j].clone(),
                output,
                &history,
                step_noise[j].clone(),
            )?;
            // x_{j+1} ← x_s + Σ_{i≤j} drift_i, with drift_i = step_i(x_i) − x_i.
            updated = updated + (next - xs[j].clone());
            let change = max_rms_per_sample(updated.clone() - xs[j + 1].clone(), batch)?;
            // The first step of the window starts from an exact x, so it is exact too.
            if still_converging && (j == start || change <= settings.tolerance) {
                converged += 1;
            } else {
                still_converging = false;
            }
            xs[j + 1] = updated.clone();
        }
        for (offset, x0) in window_x0s.into_iter().take(converged).enumerate() {
            x0s[start + offset] = Some(x0);
        }
        // Steps entering the window start from the newest estimate at its end.
        let new_start = start + converged;
        for i in end + 1..=(new_start + settings.window).min(n) {
            xs[i] = xs[end].clone();
        }
        start = new_start;
        x0s.iter_mut()
            .take(start.saturating_sub(3))
            .for_each(|x0| *x0 = None);
        on_round(report.rounds, start);
    }
    Ok((xs[n].clone(), report))
}

/// max over samples of √(mean of the squared entries of that sample's row).
fn max_rms_per_sample<const D: usize>(difference: Tensor<D>, batch: usize) -> Result<f64> {
    let values = to_host_f64(difference)?;
    let per_sample = values.len() / batch;
    Ok(values
        .chunks(per_sample)
        .map(|row| (row.iter().map(|v| v * v).sum::<f64>() / per_sample as f64).sqrt())
        .fold(0.0, f64::max))
}
