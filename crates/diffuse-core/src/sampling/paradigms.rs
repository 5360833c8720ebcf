//! ParaDiGMS (Shih et al. 2023): sampling as a fixed point. A sequential sampler is
//! x_{i+1} = x_i + drift_i(x_i); Picard iteration updates a window of W steps at once,
//! x_{j+1} ← x_s + Σ_{i=s..j} drift_i(x_i) (Algorithm 1), with the W model evaluations of a
//! round batched into one call. Steps whose value stops changing (within the tolerance) slide out
//! of the window. The result matches the sequential sampler within the tolerance, in fewer
//! sequential rounds of larger batches: latency traded for compute.

use burn::tensor::Tensor;

use super::dpm_solver::DpmSolverState;
use super::generate::step_model_output;
use super::{Evaluation, SamplerKind, SamplerState, StepContext};
use crate::denoiser::Denoiser;
use crate::error::{DiffuseError, Result};
use crate::noise::NoiseSource;
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

/// Runs the plan of `ctx` by Picard iteration from unit-normal `z`, with all step noise drawn up
/// front in the sequential sampler's order (so the fixed point is the sequential result).
pub fn sample_parallel<const D: usize>(
    denoiser: &dyn Denoiser<D>,
    ctx: &StepContext<'_>,
    z: Tensor<D>,
    class_labels: Option<&[usize]>,
    noise: &mut impl NoiseSource,
    settings: &ParallelSettings,
    on_round: &mut dyn FnMut(usize, usize),
) -> Result<(Tensor<D>, ParallelReport)> {
    settings.validate()?;
    let plan = ctx.plan;
    let x_start = z.mul_scalar(plan.init_noise_sigma);
    let picard = Picard {
        denoiser,
        ctx: *ctx,
        settings: *settings,
        batch: x_start.dims()[0],
        window_labels: class_labels.map(|l| l.repeat(settings.window)),
        step_noise: (0..plan.timesteps.len())
            .map(|i| plan.needs_noise(i).then(|| noise.next_like(&x_start)))
            .collect(),
    };
    match &plan.sampler {
        SamplerKind::Ddpm(o) => picard.run(*o, x_start, on_round),
        SamplerKind::Ddim(o) => picard.run(*o, x_start, on_round),
        SamplerKind::DpmSolver(o) => picard.run(DpmSolverState::new(*o), x_start, on_round),
        other => Err(DiffuseError::config(format!(
            "parallel sampling supports ddpm, ddim and dpmsolver++ (got {})",
            other.name()
        ))),
    }
}

impl ParallelSettings {
    fn validate(&self) -> Result<()> {
        if self.window < 2 || !(self.tolerance.is_finite() && self.tolerance > 0.0) {
            return Err(DiffuseError::config(format!(
                "parallel sampling needs a window of at least 2 steps and a positive tolerance \
                 (got window {}, tolerance {})",
                self.window, self.tolerance
            )));
        }
        Ok(())
    }
}

/// One batch's Picard iteration: the model, the plan, and the step noise drawn up front.
struct Picard<'a, const D: usize> {
    denoiser: &'a dyn Denoiser<D>,
    ctx: StepContext<'a>,
    settings: ParallelSettings,
    batch: usize,
    /// The class labels repeated for a whole window of evaluations.
    window_labels: Option<Vec<usize>>,
    step_noise: Vec<Option<Tensor<D>>>,
}

/// The iterate: x at every step boundary, the first step not yet converged, and the sampler's
/// state after the converged steps.
struct Iterate<S, const D: usize> {
    xs: Vec<Tensor<D>>,
    start: usize,
    state: S,
}

impl<const D: usize> Picard<'_, D> {
    fn run<S: SamplerState<D> + Clone>(
        &self,
        state: S,
        x_start: Tensor<D>,
        on_round: &mut dyn FnMut(usize, usize),
    ) -> Result<(Tensor<D>, ParallelReport)> {
        let n = self.ctx.plan.timesteps.len();
        let mut iterate = Iterate {
            xs: vec![x_start; n + 1],
            start: 0,
            state,
        };
        let mut report = ParallelReport {
            sequential_evaluations: n,
            ..ParallelReport::default()
        };
        while iterate.start < n {
            report.evaluations += self.round(&mut iterate)?;
            report.rounds += 1;
            on_round(report.rounds, iterate.start);
        }
        Ok((iterate.xs[n].clone(), report))
    }

    /// The window's W model evaluations as one batched call.
    fn window_outputs(&self, xs: &[Tensor<D>], start: usize) -> Result<Tensor<D>> {
        let inputs = Tensor::cat(xs.to_vec(), 0);
        let timesteps: Vec<f64> = self.ctx.plan.timesteps[start..start + xs.len()]
            .iter()
            .flat_map(|&t| std::iter::repeat_n(t, self.batch))
            .collect();
        let labels = self.window_labels.as_ref();
        let row_labels = labels.map(|l| &l[..xs.len() * self.batch]);
        step_model_output(self.denoiser, self.ctx.plan, inputs, &timesteps, row_labels)
    }

    /// One round (Algorithm 1): x_{j+1} ← x_s + Σ_{i≤j} drift_i over the window, then the window
    /// slides past the steps that stopped changing. Returns the evaluations it made.
    fn round<S: SamplerState<D> + Clone>(&self, it: &mut Iterate<S, D>) -> Result<usize> {
        let n = self.ctx.plan.timesteps.len();
        let (start, end) = (it.start, (it.start + self.settings.window).min(n));
        let outputs = self.window_outputs(&it.xs[start..end], start)?;
        let mut state = it.state.clone();
        let mut updated = it.xs[start].clone();
        let mut converged = 0;
        for j in start..end {
            let output = outputs
                .clone()
                .narrow(0, (j - start) * self.batch, self.batch);
            let evaluation = Evaluation {
                index: j,
                sample: it.xs[j].clone(),
                model_output: output,
                noise: self.step_noise[j].clone(),
            };
            let next = state.step(&self.ctx, evaluation)?;
            // drift_j = step_j(x_j) − x_j.
            updated = updated + (next - it.xs[j].clone());
            let change = max_rms_per_sample(updated.clone() - it.xs[j + 1].clone(), self.batch)?;
            // The first step of the window starts from an exact x, so it is exact too.
            if converged == j - start && (j == start || change <= self.settings.tolerance) {
                converged += 1;
                it.state = state.clone();
            }
            it.xs[j + 1] = updated.clone();
        }
        // Steps entering the window start from the newest estimate at its end.
        let new_start = start + converged;
        for i in end + 1..=(new_start + self.settings.window).min(n) {
            it.xs[i] = it.xs[end].clone();
        }
        it.start = new_start;
        Ok(end - start)
    }
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
