//! DPM-Solver++ (Lu et al. 2022b), multistep, orders 1–3, and its SDE variant, matching diffusers'
//! `DPMSolverMultistepScheduler` with `algorithm_type` "dpmsolver++" / "sde-dpmsolver++".
//!
//! The solver integrates in λ = log(α_t/σ_t) with the data prediction x̂_0 = D(x_t): with
//! h = λ_t − λ_s, the first-order update is DDIM, and the multistep orders add finite differences
//! of earlier x̂_0 (Algorithm 2). Every step is a pure function of the σ grid, the step index, x
//! and the x̂_0 history, so the same update also serves parallel (Picard) sampling.

use burn::tensor::Tensor;

use super::grid::{SigmaSpacing, half_log_snr, vp_alpha_sigma};
use super::multistep::{X0History, solver_x0};
use super::x0_limit::X0Limit;
use super::{Evaluation, SamplerState, StepContext};
use crate::error::Result;

/// DPM-Solver's second-order formula (diffusers' `solver_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecondOrderRule {
    /// D1 weighted ½ (the paper's choice, diffusers' default).
    #[default]
    Midpoint,
    /// D1 weighted by φ₂, exact for a linear x̂_0 in λ.
    Heun,
}

/// Options of DPM-Solver++.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpmSolverOptions {
    /// 1, 2 or 3.
    pub order: usize,
    /// The SDE variant (Lu et al. 2022b, §5; diffusers' "sde-dpmsolver++"), which adds noise.
    pub stochastic: bool,
    pub second_order: SecondOrderRule,
    /// Drop to lower orders in the last steps when there are fewer than 15 (stabilises few-step runs).
    pub lower_order_final: bool,
    /// Take the last step with first order regardless.
    pub euler_at_final: bool,
    pub x0_limit: X0Limit,
    pub sigmas: SigmaSpacing,
    /// Karras timesteps are rounded to integers (diffusers rounds them except for the cosine schedule).
    pub round_karras_timesteps: bool,
    /// Start below λ = `lambda_min_clipped` only (diffusers' option for the cosine schedule).
    pub lambda_min_clipped: f64,
}

impl Default for DpmSolverOptions {
    fn default() -> Self {
        Self {
            order: 2,
            stochastic: false,
            second_order: SecondOrderRule::default(),
            lower_order_final: true,
            euler_at_final: false,
            x0_limit: X0Limit::None,
            sigmas: SigmaSpacing::default(),
            round_karras_timesteps: true,
            lambda_min_clipped: f64::NEG_INFINITY,
        }
    }
}

impl DpmSolverOptions {
    /// The order used at step `index` of `n`: warm-up from first order, and lower orders at the end
    /// when `lower_order_final` applies (diffusers' `step`).
    pub fn order_at(&self, index: usize, n: usize) -> usize {
        let few_steps = self.lower_order_final && n < 15;
        let final_sigma_zero = self.sigmas.final_sigma == super::grid::FinalSigma::Zero;
        let last = index + 1 == n && (self.euler_at_final || few_steps || final_sigma_zero);
        let second_last = index + 2 == n && few_steps;
        if self.order == 1 || index < 1 || last {
            1
        } else if self.order == 2 || index < 2 || second_last {
            2
        } else {
            3
        }
    }
}

/// DPM-Solver++'s state: the x̂_0 of its last `order` evaluations.
#[derive(Debug, Clone)]
pub struct DpmSolverState<const D: usize> {
    options: DpmSolverOptions,
    history: X0History<D>,
}

impl<const D: usize> DpmSolverState<D> {
    pub fn new(options: DpmSolverOptions) -> Self {
        Self {
            options,
            history: X0History::new(options.order),
        }
    }
}

impl<const D: usize> SamplerState<D> for DpmSolverState<D> {
    fn step(&mut self, ctx: &StepContext<'_>, e: Evaluation<D>) -> Result<Tensor<D>> {
        let o = &self.options;
        let sigmas = &ctx.plan.sigmas;
        let x0 = solver_x0(
            ctx.prediction_type,
            &o.x0_limit,
            e.model_output,
            e.sample.clone(),
            sigmas[e.index],
        )?;
        self.history.push(x0);
        let order = o.order_at(e.index, ctx.plan.timesteps.len());
        let history = self.history.as_slice();
        Ok(dpm_solver_update(
            o, sigmas, e.index, order, e.sample, history, e.noise,
        ))
    }
}

/// The coefficients of one step from σ_s to σ_t in VP terms.
struct StepFrame {
    alpha_t: f64,
    sigma_t: f64,
    sigma_s: f64,
    h: f64,
}

impl StepFrame {
    fn new(sigma_s: f64, sigma_t: f64) -> Self {
        let (alpha_t, vp_sigma_t) = vp_alpha_sigma(sigma_t);
        let (_, vp_sigma_s) = vp_alpha_sigma(sigma_s);
        Self {
            alpha_t,
            sigma_t: vp_sigma_t,
            sigma_s: vp_sigma_s,
            h: half_log_snr(sigma_t) - half_log_snr(sigma_s),
        }
    }

    /// The weight of x_s: σ_t/σ_s, times e^{−h} for the SDE. At σ_t = 0 this is 0 (h = ∞).
    fn sample_weight(&self, stochastic: bool) -> f64 {
        let ratio = self.sigma_t / self.sigma_s;
        if stochastic {
            ratio * (-self.h).exp()
        } else {
            ratio
        }
    }

    /// α_t(1 − e^{−h}) for the ODE, α_t(1 − e^{−2h}) for the SDE: the weight of D0.
    fn d0_weight(&self, stochastic: bool) -> f64 {
        let hh = if stochastic { 2.0 * self.h } else { self.h };
        -self.alpha_t * (-hh).exp_m1()
    }

    /// σ_t √(1 − e^{−2h}), the SDE's noise scale.
    fn noise_scale(&self) -> f64 {
        self.sigma_t * (-(-2.0 * self.h).exp_m1()).sqrt()
    }
}

/// One DPM-Solver++ step from `sigmas[index]` to `sigmas[index + 1]` of the given `order`, with
/// `x0_history` the x̂_0 of steps ≤ index (most recent last) and `noise` for the SDE variant.
pub fn dpm_solver_update<const D: usize>(
    options: &DpmSolverOptions,
    sigmas: &[f64],
    index: usize,
    order: usize,
    x: Tensor<D>,
    x0_history: &[Tensor<D>],
    noise: Option<Tensor<D>>,
) -> Tensor<D> {
    let frame = StepFrame::new(sigmas[index], sigmas[index + 1]);
    let sde = options.stochastic;
    let m = |back: usize| x0_history[x0_history.len() - 1 - back].clone();
    let lambda = |i: usize| half_log_snr(sigmas[i]);
    let mut out = x.mul_scalar(frame.sample_weight(sde)) + m(0).mul_scalar(frame.d0_weight(sde));
    let h = frame.h;
    match order {
        1 => {}
        2 => {
            // Algorithm 2 (2M): D1 = (m0 − m1)/r0 with r0 = h_{i−1}/h_i.
            let r0 = (lambda(index) - lambda(index - 1)) / h;
            let d1 = (m(0) - m(1)).div_scalar(r0);
            out = out + d1.mul_scalar(second_order_weight(&frame, options.second_order, sde));
        }
        _ => {
            // Third order (DPM-Solver++ 3M): D1 and D2 from three x̂_0 by divided differences.
            let r0 = (lambda(index) - lambda(index - 1)) / h;
            let r1 = (lambda(index - 1) - lambda(index - 2)) / h;
            let d1_0 = (m(0) - m(1)).div_scalar(r0);
            let d1_1 = (m(1) - m(2)).div_scalar(r1);
            let d1 = d1_0.clone() + (d1_0.clone() - d1_1.clone()).mul_scalar(r0 / (r0 + r1));
            let d2 = (d1_0 - d1_1).div_scalar(r0 + r1);
            let (w1, w2) = third_order_weights(&frame, sde);
            out = out + d1.mul_scalar(w1) + d2.mul_scalar(w2);
        }
    }
    match noise {
        Some(z) if sde => out + z.mul_scalar(frame.noise_scale()),
        _ => out,
    }
}

/// The weight of D1 in the second-order update.
fn second_order_weight(frame: &StepFrame, rule: SecondOrderRule, sde: bool) -> f64 {
    let (a, h) = (frame.alpha_t, frame.h);
    match (rule, sde) {
        (SecondOrderRule::Midpoint, _) => 0.5 * frame.d0_weight(sde),
        (SecondOrderRule::Heun, false) => a * ((-h).exp_m1() / h + 1.0),
        (SecondOrderRule::Heun, true) => a * ((-(-2.0 * h).exp_m1()) / (-2.0 * h) + 1.0),
    }
}

/// The weights of D1 and D2 in the third-order update.
fn third_order_weights(frame: &StepFrame, sde: bool) -> (f64, f64) {
    let (a, h) = (frame.alpha_t, frame.h);
    if sde {
        let e = -(-2.0 * h).exp_m1(); // 1 − e^{−2h}
        (
            a * (e / (-2.0 * h) + 1.0),
            a * ((e - 2.0 * h) / (2.0 * h).powi(2) - 0.5),
        )
    } else {
        let em1 = (-h).exp_m1(); // e^{−h} − 1
        (a * (em1 / h + 1.0), -a * ((em1 + h) / (h * h) - 0.5))
    }
}
