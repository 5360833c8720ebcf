//! Element-wise math that the compiler can vectorise, and a way to compile a loop for the best
//! instruction set the CPU has (AVX-512 or AVX2 where present, chosen at run time by `pulp`).

/// Runs `work` compiled with the widest vector instructions this CPU supports. `work` should
/// call `#[inline(always)]` functions so that their loops are compiled inside it.
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
    fn sigmoid_saturates_cleanly() {
        assert_eq!(sigmoid(200.0), 1.0);
        assert!(sigmoid(-200.0) >= 0.0 && sigmoid(-200.0) < 1e-37);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
        let x = vectorized(|| (0..=64).map(|i| sigmoid(i as f32 - 32.0)).sum::<f32>());
        assert!((x - 32.5).abs() < 1e-4, "{x}");
    }
}
