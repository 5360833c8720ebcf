//! Sinusoidal timestep embeddings (Vaswani et al. 2017, §3.5; DDPM Appendix B) and the MLP that
//! lifts them to the network's conditioning width.

use burn::module::Module;
use burn::nn::{Embedding, Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use crate::error::{DiffuseError, Result};
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

/// Rows `labels` of a class table, one per batch row; `None` for an unconditional network given
/// no labels. Labels for a network without a table, none for one with a table, a count other than
/// `batch`, or an index outside the table are errors that say so (`network` names the model).
pub fn class_embeddings(
    table: Option<&Embedding>,
    labels: Option<&[usize]>,
    batch: usize,
    network: &str,
) -> Result<Option<Tensor<2>>> {
    let (table, labels) = match (table, labels) {
        (None, None) => return Ok(None),
        (Some(table), Some(labels)) => (table, labels),
        (Some(_), None) => {
            return Err(DiffuseError::config(format!(
                "this {network} is class-conditional: class labels are required"
            )));
        }
        (None, Some(_)) => {
            return Err(DiffuseError::config(format!(
                "this {network} has no class embedding: it takes no class labels"
            )));
        }
    };
    let weight = table.weight.val();
    let [rows, dim] = weight.dims();
    if labels.len() != batch {
        return Err(DiffuseError::config(format!(
            "{} class labels for a batch of {batch}",
            labels.len()
        )));
    }
    if let Some(bad) = labels.iter().find(|&&l| l >= rows) {
        return Err(DiffuseError::config(format!(
            "class label {bad} is out of range: the {network}'s class table has {rows} rows"
        )));
    }
    let ids: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, 1]), &weight.device());
    Ok(Some(table.forward(ids).reshape([batch, dim])))
}
