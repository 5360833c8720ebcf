//! UniPC (Zhao et al. 2023): the unified predictor (UniP, Algorithm 1) and corrector (UniC,
//! Algorithm 2) with the B(h) variants bh1/bh2, on the data prediction x̂_0, matching diffusers'
//! `UniPCMultistepScheduler` with `predict_x0 = True`.
//!
//! The corrector reuses the model evaluation the next predictor step needs anyway, so UniPC gains
//! an order without an extra network call.

use burn::tensor::Tensor;

use super::grid::{SigmaSpacing, half_log_snr, vp_alpha_sigma};
use super::multistep::{X0History, solver_x0};
use super::x0_limit::X0Limit;
use super::{Evaluation, SamplerState, StepContext};
use crate::error::Result;

/// B(h) of UniPC (§3.3): bh1 = h, bh2 = e^h − 1 (in the data-prediction sign convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UniPcVariant {
    Bh1,
    #[default]
    Bh2,
}

/// Options of UniPC.
#[derive(Debug, Clone, PartialEq)]
pub struct UniPcOptions {
    /// The predictor's order p (1–3); the corrector raises it by one.
    pub order: usize,
    pub variant: UniPcVariant,
    /// Lower the order in the last steps (diffusers' `lower_order_final`).
    pub lower_order_final: bool,
    /// Steps whose result the corrector leaves alone (diffusers' `disable_corrector`).
    pub disable_corrector: Vec<usize>,
    pub x0_limit: X0Limit,
    pub sigmas: SigmaSpacing,
}

impl Default for UniPcOptions {
    fn default() -> Self {
        Self {
            order: 2,
            variant: UniPcVariant::default(),
            lower_order_final: true,
            disable_corrector: Vec::new(),
            x0_limit: X0Limit::None,
            sigmas: SigmaSpacing::default(),
        }
    }
}

impl UniPcOptions {
    /// The predictor order at step `index` of `n`: warm-up, then lower at the end.
    pub fn order_at(&self, index: usize, n: usize) -> usize {
        let order = if self.lower_order_final {
            self.order.min(n - index)
        } else {
            self.order
        };
        order.min(index + 1)
    }
}

/// UniPC's state: the x̂_0 history, and the sample and order of its last predictor step, which
/// the corrector revisits once the next evaluation's x̂_0 is known.
#[derive(Debug, Clone)]
pub struct UniPcState<const D: usize> {
    options: UniPcOptions,
    history: X0History<D>,
    last_prediction: Option<(Tensor<D>, usize)>,
}

impl<const D: usize> UniPcState<D> {
    pub fn new(options: UniPcOptions) -> Self {
        let history = X0History::new(options.order);
        Self {
            options,
            history,
            last_prediction: None,
        }
    }
}

impl<const D: usize> SamplerState<D> for UniPcState<D> {
    fn step(&mut self, ctx: &StepContext<'_>, e: Evaluation<D>) -> Result<Tensor<D>> {
        let o = &self.options;
        let sigmas = &ctx.plan.sigmas;
        let pt = ctx.prediction_type;
        let x0 = solver_x0(
            pt,
            &o.x0_limit,
            e.model_output,
            e.sample.clone(),
            sigmas[e.index],
        )?;
        // UniC on the previous step, with the x̂_0 this evaluation brings.
        let corrected = match self.last_prediction.take() {
            Some((last, order)) if e.index > 0 && !o.disable_corrector.contains(&(e.index - 1)) => {
                let history = self.history.as_slice();
                unipc_correct(o.variant, sigmas, e.index, order, last, x0.clone(), history)
            }
            _ => e.sample,
        };
        self.history.push(x0);
        let order = o.order_at(e.index, ctx.plan.timesteps.len());
        self.last_prediction = Some((corrected.clone(), order));
        let history = self.history.as_slice();
        Ok(unipc_predict(
            o.variant, sigmas, e.index, order, corrected, history,
        ))
    }
}

/// UniPC's coefficients for one step of size h and order k with node ratios r_1..r_{k−1}.
struct Coefficients {
    /// hφ₁(hh) = e^{hh} − 1 with hh = −h.
    h_phi_1: f64,
    b_h: f64,
    /// R: rows r^{i−1} for i = 1..k (columns: r_1..r_{k−1}, 1).
    r: Vec<Vec<f64>>,
    /// b_i = hφ_{i+1}(hh) i!/B(h).
    b: Vec<f64>,
}

impl Coefficients {
    fn new(variant: UniPcVariant, h: f64, rks: &[f64], order: usize) -> Self {
        let hh = -h;
        let h_phi_1 = hh.exp_m1();
        let b_h = match variant {
            UniPcVariant::Bh1 => hh,
            UniPcVariant::Bh2 => hh.exp_m1(),
        };
        let nodes: Vec<f64> = rks.iter().copied().chain(std::iter::once(1.0)).collect();
        let mut h_phi_k = h_phi_1 / hh - 1.0;
        let mut factorial = 1.0;
        let (mut r, mut b) = (Vec::new(), Vec::new());
        for i in 1..=order {
            r.push(nodes.iter().map(|rk| rk.powi(i as i32 - 1)).collect());
            b.push(h_phi_k * factorial / b_h);
            factorial *= (i + 1) as f64;
            h_phi_k = h_phi_k / hh - 1.0 / factorial;
        }
        Self { h_phi_1, b_h, r, b }
    }
}

/// The ratios r_k = (λ_{s_k} − λ_{s_0})/h and the differences D_k = (m_k − m_0)/r_k of the
/// earlier nodes `nodes` (σ index, x̂_0) relative to the base node.
fn differences<const D: usize>(
    sigmas: &[f64],
    base: usize,
    h: f64,
    m0: &Tensor<D>,
    nodes: impl Iterator<Item = (usize, Tensor<D>)>,
) -> (Vec<f64>, Vec<Tensor<D>>) {
    let lambda_0 = half_log_snr(sigmas[base]);
    nodes
        .map(|(index, m)| {
            let rk = (half_log_snr(sigmas[index]) - lambda_0) / h;
            (rk, (m - m0.clone()).div_scalar(rk))
        })
        .unzip()
}

/// x_t' = (σ_t/σ_s) x − α_t hφ₁ m0, the first-order (DDIM) part of both updates.
fn first_order_part<const D: usize>(
    x: Tensor<D>,
    m0: Tensor<D>,
    sigma_s: f64,
    sigma_t: f64,
    h_phi_1: f64,
) -> Tensor<D> {
    let (alpha_t, vp_t) = vp_alpha_sigma(sigma_t);
    let (_, vp_s) = vp_alpha_sigma(sigma_s);
    x.mul_scalar(vp_t / vp_s) - m0.mul_scalar(alpha_t * h_phi_1)
}

fn weighted_sum<const D: usize>(weights: &[f64], terms: &[Tensor<D>]) -> Option<Tensor<D>> {
    weights
        .iter()
        .zip(terms)
        .map(|(w, t)| t.clone().mul_scalar(*w))
        .reduce(|a, b| a + b)
}

/// UniP-p (Algorithm 1): from x at `sigmas[index]` to `sigmas[index + 1]` with the x̂_0 history
/// (most recent last, that of step `index` included).
pub fn unipc_predict<const D: usize>(
    variant: UniPcVariant,
    sigmas: &[f64],
    index: usize,
    order: usize,
    x: Tensor<D>,
    x0_history: &[Tensor<D>],
) -> Tensor<D> {
    let last = x0_history.len() - 1;
    let m0 = x0_history[last].clone();
    let h = half_log_snr(sigmas[index + 1]) - half_log_snr(sigmas[index]);
    let (rks, d1s) = differences(
        sigmas,
        index,
        h,
        &m0,
        (1..order).map(|i| (index - i, x0_history[last - i].clone())),
    );
    let c = Coefficients::new(variant, h, &rks, order);
    let (alpha_t, _) = vp_alpha_sigma(sigmas[index + 1]);
    let x_t = first_order_part(x, m0, sigmas[index], sigmas[index + 1], c.h_phi_1);
    let rhos = match order {
        1 => Vec::new(),
        2 => vec![0.5],
        _ => solve(&leading_block(&c.r, order - 1), &c.b[..order - 1]),
    };
    match weighted_sum(&rhos, &d1s) {
        Some(residual) => x_t - residual.mul_scalar(alpha_t * c.b_h),
        None => x_t,
    }
}

/// UniC-p (Algorithm 2): corrects `x` at `sigmas[index]`, predicted from `last_sample` at
/// `sigmas[index − 1]`, with the new x̂_0 `model_x0` of x and the history before it (most recent
/// last, ending with step index − 1's).
pub fn unipc_correct<const D: usize>(
    variant: UniPcVariant,
    sigmas: &[f64],
    index: usize,
    order: usize,
    last_sample: Tensor<D>,
    model_x0: Tensor<D>,
    x0_history: &[Tensor<D>],
) -> Tensor<D> {
    let last = x0_history.len() - 1;
    let m0 = x0_history[last].clone();
    let h = half_log_snr(sigmas[index]) - half_log_snr(sigmas[index - 1]);
    let (rks, d1s) = differences(
        sigmas,
        index - 1,
        h,
        &m0,
        (1..order).map(|i| (index - 1 - i, x0_history[last - i].clone())),
    );
    let c = Coefficients::new(variant, h, &rks, order);
    let (alpha_t, _) = vp_alpha_sigma(sigmas[index]);
    let x_t = first_order_part(
        last_sample,
        m0.clone(),
        sigmas[index - 1],
        sigmas[index],
        c.h_phi_1,
    );
    let rhos = if order == 1 {
        vec![0.5]
    } else {
        solve(&c.r, &c.b)
    };
    let (rho_t, rho_rest) = rhos
        .split_last()
        .expect("UniC has at least one coefficient");
    let d1_t = (model_x0 - m0).mul_scalar(*rho_t);
    let correction = match weighted_sum(rho_rest, &d1s) {
        Some(residual) => residual + d1_t,
        None => d1_t,
    };
    x_t - correction.mul_scalar(alpha_t * c.b_h)
}

fn leading_block(matrix: &[Vec<f64>], k: usize) -> Vec<Vec<f64>> {
    matrix[..k].iter().map(|row| row[..k].to_vec()).collect()
}

/// Solves the small dense system A x = b by Gaussian elimination with partial pivoting.
fn solve(a: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    let n = b.len();
    let mut m: Vec<Vec<f64>> = a
        .iter()
        .zip(b)
        .map(|(row, &bi)| row.iter().copied().chain(std::iter::once(bi)).collect())
        .collect();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))
            .expect("a non-empty system");
        m.swap(col, pivot);
        for row in col + 1..n {
            let factor = m[row][col] / m[col][col];
            let pivot_row = m[col].clone();
            for (value, pivot_value) in m[row].iter_mut().zip(pivot_row).skip(col) {
                *value -= factor * pivot_value;
            }
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|k| m[row][k] * x[k]).sum();
        x[row] = (m[row][n] - tail) / m[row][row];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::solve;

    #[test]
    fn solves_a_small_system() {
        let x = solve(&[vec![2.0, 1.0], vec![1.0, 3.0]], &[3.0, 5.0]);
        assert!((x[0] - 0.8).abs() < 1e-12 && (x[1] - 1.4).abs() < 1e-12);
    }
}
