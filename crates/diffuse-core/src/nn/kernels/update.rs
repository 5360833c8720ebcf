//! The optimiser's and the EMA's per-parameter updates as single parallel passes over the
//! parameter (burn's composition makes a dozen single-threaded passes per parameter, which for a
//! 36M-parameter U-Net costs a tenth of the training step).

use rayon::prelude::*;

/// Elements per parallel task: large enough that scheduling costs nothing, small enough that two
/// threads share a 1M-element parameter evenly.
const CHUNK: usize = 1 << 15;

/// One AdamW step's scalars (Loshchilov & Hutter 2019, Algorithm 2), computed on the host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
    /// 1 − β₁ᵗ and 1 − β₂ᵗ.
    pub bias_corrections: (f64, f64),
}

/// m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², θ ← θ(1 − λ·lr) − lr·(m/(1 − β₁ᵗ)) /
/// (√(v/(1 − β₂ᵗ)) + ε), element by element in f32, as `train::optimizer` composes it from
/// tensor operations on other devices. Returns (θ, m, v).
pub fn adamw(
    param: &[f32],
    grad: &[f32],
    [first, second]: [&[f32]; 2],
    step: &AdamWStep,
) -> [Vec<f32>; 3] {
    let n = param.len();
    assert!(
        grad.len() == n && first.len() == n && second.len() == n,
        "AdamW operand sizes"
    );
    let f = |v: f64| v as f32;
    let (b1, b2) = (f(step.beta1), f(step.beta2));
    let (one_minus_b1, one_minus_b2) = (f(1.0 - step.beta1), f(1.0 - step.beta2));
    let (bias1, bias2) = (f(step.bias_corrections.0), f(step.bias_corrections.1));
    let (lr, eps, decay) = (
        f(step.lr),
        f(step.epsilon),
        f(1.0 - step.lr * step.weight_decay),
    );
    let mut out = [(); 3].map(|_| vec![0.0; n]);
    let [new_param, new_first, new_second] = &mut out;
    new_param
        .par_chunks_mut(CHUNK)
        .zip(new_first.par_chunks_mut(CHUNK))
        .zip(new_second.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(chunk, ((p_out, m_out), v_out))| {
            let range = chunk * CHUNK..(chunk * CHUNK + p_out.len());
            let inputs = (&param[range.clone()], &grad[range.clone()]);
            let moments = (&first[range.clone()], &second[range]);
            for (i, p_out) in p_out.iter_mut().enumerate() {
                let g = inputs.1[i];
                let m = moments.0[i] * b1 + g * one_minus_b1;
                let v = moments.1[i] * b2 + g * g * one_minus_b2;
                let denom = (v / bias2).sqrt() + eps;
                *p_out = inputs.0[i] * decay - m / bias1 / denom * lr;
                m_out[i] = m;
                v_out[i] = v;
            }
        });
    out
}

/// θ_ema − (1 − decay)(θ_ema − θ), element by element.
pub fn ema(average: &[f32], value: &[f32], decay: f64) -> Vec<f32> {
    assert_eq!(average.len(), value.len(), "EMA operand sizes");
    let rate = (1.0 - decay) as f32;
    let mut out = vec![0.0; average.len()];
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(chunk, out)| {
            let start = chunk * CHUNK;
            let average = &average[start..start + out.len()];
            let value = &value[start..start + out.len()];
            for ((o, &a), &v) in out.iter_mut().zip(average).zip(value) {
                *o = a - (a - v) * rate;
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adamw_matches_the_algorithm_in_f64() {
        let n = 3 * CHUNK + 17;
        let values =
            |seed: f32| -> Vec<f32> { (0..n).map(|i| ((i as f32 + seed) * 0.37).sin()).collect() };
        let (param, grad, first) = (values(1.0), values(2.0), values(3.0));
        let second: Vec<f32> = values(4.0).iter().map(|v| v * v).collect();
        let step = AdamWStep {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
            bias_corrections: (1.0 - 0.9f64.powi(3), 1.0 - 0.999f64.powi(3)),
        };
        let [p, m, v] = adamw(&param, &grad, [&first, &second], &step);
        for i in (0..n).step_by(101) {
            let g = f64::from(grad[i]);
            let m64 = 0.9 * f64::from(first[i]) + 0.1 * g;
            let v64 = 0.999 * f64::from(second[i]) + 0.001 * g * g;
            let update =
                m64 / step.bias_corrections.0 / ((v64 / step.bias_corrections.1).sqrt() + 1e-8);
            let p64 = f64::from(param[i]) * (1.0 - 1e-5) - 1e-3 * update;
            assert!((f64::from(m[i]) - m64).abs() < 1e-6, "m[{i}]");
            assert!((f64::from(v[i]) - v64).abs() < 1e-6, "v[{i}]");
            assert!(
                (f64::from(p[i]) - p64).abs() < 1e-6,
                "param[{i}]: {} vs {p64}",
                p[i]
            );
        }
    }

    #[test]
    fn ema_moves_towards_the_value() {
        let average = vec![1.0; CHUNK + 3];
        let value = vec![3.0; CHUNK + 3];
        assert!(ema(&average, &value, 0.75).iter().all(|&v| v == 1.5));
        assert_eq!(ema(&average, &value, 0.0), value);
    }
}
