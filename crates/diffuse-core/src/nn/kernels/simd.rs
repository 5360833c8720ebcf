//! Element-wise math that the compiler can vectorise, and a way to compile a loop for the best
//! instruction set the CPU has (AVX-512 or AVX2 where present, chosen at run time by `pulp`).

/// Runs `work` compiled with the widest vector instructions this CPU supports. `work` must be an
/// `#[inline(always)]` closure that calls `#[inline(always)]` functions: only code inlined into
/// pulp's dispatch function is compiled with its target features.
#[inline(always)]
pub fn vectorized<R>(work: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(work)
}

/// e^x in arithmetic that vectorises (no libm call): x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by
/// Cephes' degree-7 polynomial, 2^n through the exponent bits (Cody & Waite's reduction).
/// Relative error about 2 ulp; arguments are clamped to where e^x is a normal f32.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n·LN2_HI is exact for |n| < 2^9.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let n = (x * LOG2_E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e_r = p * (r * r) + r + 1.0;
    let two_to_n = f32::from_bits(((n as i32 + 127) as u32) << 23);
    e_r * two_to_n
}

/// σ(x) = 1 / (1 + e^−x).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// Lanes of the running sums and maxima below: a single running value would have to be updated
/// in order, which stops the compiler from vectorising the loop.
const LANES: usize = 16;

/// Folds `values` into [`LANES`] running values with `step`, then the lanes into one.
#[inline(always)]
fn fold_lanes(values: &[f32], init: f32, step: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [init; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder().iter().fold(init, |acc, &v| step(acc, v));
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = step(*lane, v);
        }
    }
    lanes.iter().fold(rest, |acc, &v| step(acc, v))
}

/// Σ values.
#[inline(always)]
pub fn sum(values: &[f32]) -> f32 {
    fold_lanes(values, 0.0, |acc, v| acc + v)
}

/// max values (−∞ for none).
#[inline(always)]
pub fn max(values: &[f32]) -> f32 {
    fold_lanes(values, f32::NEG_INFINITY, f32::max)
}

/// ⟨a, b⟩.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let whole = a.len().min(b.len()) / LANES * LANES;
    for (a, b) in a[..whole]
        .chunks_exact(LANES)
        .zip(b[..whole].chunks_exact(LANES))
    {
        for ((lane, &a), &b) in lanes.iter_mut().zip(a).zip(b) {
            *lane += a * b;
        }
    }
    let rest: f32 = a[whole..].iter().zip(&b[whole..]).map(|(a, b)| a * b).sum();
    lanes.iter().sum::<f32>() + rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_libm() {
        let mut worst = 0.0f64;
        for i in -87_000..88_000 {
            let x = i as f32 * 1e-3 + 1.3e-4;
            let want = f64::from(x).exp();
            worst = worst.max((f64::from(exp(x)) - want).abs() / want);
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
    }

    #[test]
    fn lane_reductions_match_sequential_ones() {
        let values: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let seq_sum: f32 = values.iter().sum();
        assert!((sum(&values) - seq_sum).abs() < 1e-5);
        assert_eq!(
            max(&values),
            values.iter().cloned().fold(f32::NEG_INFINITY, f32::max)
        );
        assert_eq!(max(&[]), f32::NEG_INFINITY);
        let seq_dot: f32 = values.iter().map(|v| v * v).sum();
        assert!((dot(&values, &values) - seq_dot).abs() < 1e-5);
    }

    #[test]
    fn sigmoid_saturates_cleanly() {
        assert_eq!(sigmoid(200.0), 1.0);
        assert!(sigmoid(-200.0) >= 0.0 && sigmoid(-200.0) < 1e-37);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
        let x = vectorized(
            #[inline(always)]
            || (0..=64).map(|i| sigmoid(i as f32 - 32.0)).sum::<f32>(),
        );
        assert!((x - 32.5).abs() < 1e-4, "{x}");
    }
}
