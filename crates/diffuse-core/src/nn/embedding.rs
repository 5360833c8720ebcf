//! Sinusoidal timestep embeddings (Vaswani et al. 2017, §3.5; DDPM Appendix B) and the MLP that
//! lifts them to the network's conditioning width.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{DType, Device, Tensor};

use crate::tensor_ops::from_host_f64;

/// diffusers' `get_timestep_embedding`: [sin(t·f_k), cos(t·f_k)] with f_k = exp(−ln(10⁴)·k/(d/2 − shift)),
/// halves swapped when `flip_sin_to_cos`. Computed in f32 on the host like diffusers does, so that
/// the phases t·f_k (up to ~10³ rad) round the same way.
pub fn timestep_embedding(
    timesteps: &[f64],
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    device: &Device,
    dtype: DType,
) -> Tensor<2> {
    let half = dim / 2;
    let frequencies: Vec<f32> = (0..half)
        .map(|k| {
            let exponent = -(10000f32.ln()) * k as f32;
            (exponent / (half as f32 - freq_shift as f32)).exp()
        })
        .collect();
    let mut values = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        let phases: Vec<f32> = frequencies.iter().map(|f| t as f32 * f).collect();
        let sines = phases.iter().map(|p| p.sin() as f64);
        let cosines = phases.iter().map(|p| p.cos() as f64);
        if flip_sin_to_cos {
            values.extend(cosines.chain(sines));
        } else {
            values.extend(sines.chain(cosines));
        }
        if dim % 2 == 1 {
            values.push(0.0);
        }
    }
    from_host_f64(values, [timesteps.len(), dim], device, dtype)
}

/// diffusers' `TimestepEmbedding`: linear_2(SiLU(linear_1(embedding))).
#[derive(Module, Debug)]
pub struct TimestepMlp {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

impl TimestepMlp {
    pub fn new(input_dim: usize, output_dim: usize, device: &Device) -> Self {
        Self {
            linear_1: LinearConfig::new(input_dim, output_dim).init(device),
            linear_2: LinearConfig::new(output_dim, output_dim).init(device),
        }
    }

    pub fn forward(&self, embedding: Tensor<2>) -> Tensor<2> {
        self.linear_2
            .forward(silu(self.linear_1.forward(embedding)))
    }
}
