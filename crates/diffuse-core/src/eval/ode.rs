//! Adaptive integration of dy/dt = f(t, y) by the Dormand–Prince 5(4) pair (Dormand & Prince
//! 1980) with local extrapolation, step by step as scipy's `solve_ivp(method="RK45")` does it,
//! which Song et al. (2021) use for the probability-flow likelihood. Hairer, Nørsett & Wanner,
//! *Solving ODEs I*, §II.4 give the step-size control and the starting step.
//!
//! The state is a host vector in f64; the caller's f may evaluate a network on any device.

use crate::error::{DiffuseError, Result};

/// Nodes c_i, coupling a_ij and 5th-order weights b_i of the Dormand–Prince tableau.
const C: [f64; 6] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0];
const A: [[f64; 5]; 6] = [
    [0.0, 0.0, 0.0, 0.0, 0.0],
    [1.0 / 5.0, 0.0, 0.0, 0.0, 0.0],
    [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0],
    [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0],
    [
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
        0.0,
    ],
    [
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
    ],
];
const B: [f64; 6] = [
    35.0 / 384.0,
    0.0,
    500.0 / 1113.0,
    125.0 / 192.0,
    -2187.0 / 6784.0,
    11.0 / 84.0,
];
/// b_i − b̂_i against the embedded 4th-order weights, over the six stages and f(t + h, y_new)
/// (the first same as last stage).
const E: [f64; 7] = [
    -71.0 / 57600.0,
    0.0,
    71.0 / 16695.0,
    -71.0 / 1920.0,
    17253.0 / 339200.0,
    -22.0 / 525.0,
    1.0 / 40.0,
];
/// The error estimate is of order 4, so a step's error scales like h⁵.
const ERROR_EXPONENT: f64 = -1.0 / 5.0;
/// Step-size factor: safety margin and bounds on one change (scipy's constants).
const SAFETY: f64 = 0.9;
const MIN_FACTOR: f64 = 0.2;
const MAX_FACTOR: f64 = 10.0;

/// f(t, y) → dy/dt, failing on whatever f may fail on.
pub type RightHandSide<'a> = dyn FnMut(f64, &[f64]) -> Result<Vec<f64>> + 'a;

/// The local error each component may make per step: |err_i| ≤ atol + rtol·|y_i|.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    pub rtol: f64,
    pub atol: f64,
}

impl Tolerances {
    /// Both must be positive and finite.
    pub fn new(rtol: f64, atol: f64) -> Result<Self> {
        for (name, value) in [("rtol", rtol), ("atol", atol)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(DiffuseError::config(format!(
                    "the ODE tolerance {name} must be positive, got {value}"
                )));
            }
        }
        Ok(Self { rtol, atol })
    }

    /// atol + rtol·max(|y_i|, |y'_i|), the per-component error scale.
    fn scale(&self, y: &[f64], y_new: &[f64]) -> Vec<f64> {
        y.iter()
            .zip(y_new)
            .map(|(a, b)| self.atol + self.rtol * a.abs().max(b.abs()))
            .collect()
    }
}

/// Where an integration ended and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    /// y(t₁).
    pub y: Vec<f64>,
    /// Evaluations of f, the starting-step probe included (scipy's `nfev`).
    pub nfe: usize,
    /// Accepted and rejected steps.
    pub steps: usize,
    pub rejected: usize,
}

/// ‖v‖ / √n, the norm the error is measured in.
fn rms(values: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = values.len().max(1) as f64;
    values.map(|v| v * v).sum::<f64>().sqrt() / n.sqrt()
}

/// y + h Σ_j w_j k_j.
fn combine(y: &[f64], h: f64, weights: &[f64], stages: &[Vec<f64>]) -> Vec<f64> {
    (0..y.len())
        .map(|i| {
            let slope: f64 = weights.iter().zip(stages).map(|(w, k)| w * k[i]).sum();
            y[i] + h * slope
        })
        .collect()
}

/// f counted, and checked to give a finite vector of the state's length.
struct Rhs<'a> {
    f: &'a mut RightHandSide<'a>,
    evaluations: usize,
}

impl Rhs<'_> {
    fn eval(&mut self, t: f64, y: &[f64]) -> Result<Vec<f64>> {
        self.evaluations += 1;
        let dy = (self.f)(t, y)?;
        if dy.len() != y.len() {
            return Err(DiffuseError::Solver(format!(
                "the right-hand side has {} components for a state of {}",
                dy.len(),
                y.len()
            )));
        }
        if let Some(bad) = dy.iter().find(|v| !v.is_finite()) {
            return Err(DiffuseError::Solver(format!(
                "the right-hand side is {bad} at t = {t}"
            )));
        }
        Ok(dy)
    }
}

/// The first step (HNW §II.4, "Starting step size"): h₀ from the sizes of y and f, then h₁ from
/// an explicit Euler probe's change in f, so that h₁⁵·max(‖f‖, ‖Δf/h₀‖) ≈ 0.01.
fn starting_step(
    rhs: &mut Rhs,
    t0: f64,
    y0: &[f64],
    f0: &[f64],
    span: f64,
    tol: &Tolerances,
) -> Result<f64> {
    let direction = span.signum();
    let interval = span.abs();
    let scale = tol.scale(y0, y0);
    let d0 = rms(y0.iter().zip(&scale).map(|(y, s)| y / s));
    let d1 = rms(f0.iter().zip(&scale).map(|(f, s)| f / s));
    let h0 = if d0 < 1e-5 || d1 < 1e-5 {
        1e-6
    } else {
        0.01 * d0 / d1
    }
    .min(interval);
    let y1: Vec<f64> = y0
        .iter()
        .zip(f0)
        .map(|(y, f)| y + h0 * direction * f)
        .collect();
    let f1 = rhs.eval(t0 + h0 * direction, &y1)?;
    let d2 = rms(f1.iter().zip(f0).zip(&scale).map(|((a, b), s)| (a - b) / s)) / h0;
    let h1 = if d1 <= 1e-15 && d2 <= 1e-15 {
        (h0 * 1e-3).max(1e-6)
    } else {
        (0.01 / d1.max(d2)).powf(-ERROR_EXPONENT)
    };
    Ok((100.0 * h0).min(h1).min(interval))
}

/// One Dormand–Prince step of size h from (t, y), with f = f(t, y) (the FSAL stage): y(t + h),
/// f(t + h, y(t + h)), and the RMS of the embedded error estimate scaled by the tolerances.
fn dormand_prince_step(
    rhs: &mut Rhs<'_>,
    t: f64,
    y: &[f64],
    f: &[f64],
    h: f64,
    tol: &Tolerances,
) -> Result<(Vec<f64>, Vec<f64>, f64)> {
    let mut stages = vec![f.to_vec()];
    for (&c, a) in C.iter().zip(&A).skip(1) {
        let y_stage = combine(y, h, &a[..stages.len()], &stages);
        stages.push(rhs.eval(t + c * h, &y_stage)?);
    }
    let y_new = combine(y, h, &B, &stages);
    stages.push(rhs.eval(t + h, &y_new)?);
    let scale = tol.scale(y, &y_new);
    let error = (0..y.len()).map(|i| {
        let err: f64 = E.iter().zip(&stages).map(|(e, k)| e * k[i]).sum();
        err * h / scale[i]
    });
    let error_norm = rms(error);
    let f_new = stages.pop().expect("the last stage is f(t + h, y_new)");
    Ok((y_new, f_new, error_norm))
}

/// Integrates dy/dt = f(t, y) from y(t0) = `y0` to t1 (t1 < t0 runs backwards). Each step is
/// accepted when the RMS of err_i / (atol + rtol·max(|y_i|, |y_new,i|)) is below 1; the next
/// step is h·min(10, 0.9·err^(−1/5)) after an accepted step (no growth right after a
/// rejection) and h·max(0.2, 0.9·err^(−1/5)) after a rejected one.
pub fn solve_rk45(
    f: &mut RightHandSide,
    t0: f64,
    y0: Vec<f64>,
    t1: f64,
    tol: &Tolerances,
) -> Result<Solution> {
    if !(t0.is_finite() && t1.is_finite()) {
        return Err(DiffuseError::config(format!(
            "cannot integrate from t = {t0} to t = {t1}"
        )));
    }
    let mut rhs = Rhs { f, evaluations: 0 };
    let (mut t, mut y) = (t0, y0);
    let (mut steps, mut rejected) = (0, 0);
    if t0 == t1 {
        return Ok(Solution {
            y,
            nfe: 0,
            steps,
            rejected,
        });
    }
    let direction = (t1 - t0).signum();
    let mut f = rhs.eval(t, &y)?;
    let mut h_abs = starting_step(&mut rhs, t, &y, &f, t1 - t0, tol)?;
    while t != t1 {
        let next_t = if direction > 0.0 {
            t.next_up()
        } else {
            t.next_down()
        };
        let min_step = 10.0 * (next_t - t).abs();
        h_abs = h_abs.max(min_step);
        let mut after_rejection = false;
        loop {
            if h_abs < min_step {
                return Err(DiffuseError::Solver(format!(
                    "the step size fell below {min_step:e} at t = {t}"
                )));
            }
            let mut t_new = t + direction * h_abs;
            if direction * (t_new - t1) > 0.0 {
                t_new = t1;
            }
            let h = t_new - t;
            h_abs = h.abs();
            let (y_new, f_new, error_norm) = dormand_prince_step(&mut rhs, t, &y, &f, h, tol)?;
            steps += 1;
            if error_norm < 1.0 {
                let mut factor = if error_norm == 0.0 {
                    MAX_FACTOR
                } else {
                    MAX_FACTOR.min(SAFETY * error_norm.powf(ERROR_EXPONENT))
                };
                if after_rejection {
                    factor = factor.min(1.0);
                }
                h_abs *= factor;
                t = t_new;
                y = y_new;
                f = f_new;
                break;
            }
            h_abs *= MIN_FACTOR.max(SAFETY * error_norm.powf(ERROR_EXPONENT));
            after_rejection = true;
            rejected += 1;
        }
    }
    Ok(Solution {
        y,
        nfe: rhs.evaluations,
        steps,
        rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// y'' = −y as a first-order system: y(t) = (cos t, −sin t).
    fn oscillator(_t: f64, y: &[f64]) -> Result<Vec<f64>> {
        Ok(vec![y[1], -y[0]])
    }

    fn oscillator_error(rtol: f64) -> (f64, usize) {
        let tol = Tolerances::new(rtol, rtol).unwrap();
        let end = 10.0;
        let solution = solve_rk45(&mut oscillator, 0.0, vec![1.0, 0.0], end, &tol).unwrap();
        let error = (solution.y[0] - end.cos())
            .abs()
            .max((solution.y[1] + end.sin()).abs());
        (error, solution.steps - solution.rejected)
    }

    #[test]
    fn the_global_error_follows_the_tolerance() {
        // A few steps' worth of local errors each near the tolerance: within 100·tol, and
        // shrinking with it.
        for rtol in [1e-4, 1e-6, 1e-8] {
            let (error, _) = oscillator_error(rtol);
            assert!(error < 100.0 * rtol, "rtol {rtol}: error {error}");
        }
    }

    #[test]
    fn steps_grow_like_the_fifth_root_of_one_over_the_tolerance() {
        // The control targets err ≈ tol with err ∝ h⁵, so a 10⁵ times tighter tolerance takes
        // about 10 times as many steps (the fourth-order estimator's signature).
        let (_, loose) = oscillator_error(1e-5);
        let (_, tight) = oscillator_error(1e-10);
        let ratio = tight as f64 / loose as f64;
        assert!((7.0..14.0).contains(&ratio), "{loose} → {tight} steps");
    }

    #[test]
    fn backwards_and_empty_intervals() {
        let tol = Tolerances::new(1e-8, 1e-10).unwrap();
        // y' = −2y from t = 1 down to 0: y(0) = y(1)·e².
        let mut decay = |_t: f64, y: &[f64]| Ok(vec![-2.0 * y[0]]);
        let solution = solve_rk45(&mut decay, 1.0, vec![1.0], 0.0, &tol).unwrap();
        let expected = 2.0_f64.exp();
        assert!((solution.y[0] - expected).abs() < 1e-6 * expected);
        let still = solve_rk45(&mut decay, 0.5, vec![3.0], 0.5, &tol).unwrap();
        assert_eq!((still.y, still.nfe), (vec![3.0], 0));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(Tolerances::new(0.0, 1e-5).is_err());
        assert!(Tolerances::new(1e-5, f64::NAN).is_err());
        let tol = Tolerances::new(1e-5, 1e-5).unwrap();
        let mut blow_up = |t: f64, _y: &[f64]| Ok(vec![if t > 0.5 { f64::NAN } else { 1.0 }]);
        let err = solve_rk45(&mut blow_up, 0.0, vec![0.0], 1.0, &tol).unwrap_err();
        assert!(err.to_string().contains("NaN"), "{err}");
    }
}
