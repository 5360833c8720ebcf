//! AdamW with its state keyed by parameter path (so checkpoints are plain tensors), global
//! gradient-norm clipping, and the learning-rate schedule.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::{Gradients, Tensor};

use super::params::{flat_parameters, from_host, to_host, update_parameters};
use crate::error::{DiffuseError, Result};
use crate::io::HostTensor;
use crate::nn::kernels::{self, AdamWStep};

/// Gradients of one step, flattened, in the module's traversal order. The order matters: the
/// global norm sums over parameters, and ParamIds differ between processes, so an id-ordered
/// sum would round differently after a resume.
pub struct FlatGradients(Vec<(ParamId, Tensor<1>)>);

impl FlatGradients {
    /// Takes the gradient of every trainable parameter of `module` out of burn's gradients.
    pub fn from_backward<M: Module>(mut grads: Gradients, module: &M) -> Self {
        struct Take<'a> {
            grads: &'a mut Gradients,
            out: Vec<(ParamId, Tensor<1>)>,
        }
        impl ModuleVisitor for Take<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if !param.is_require_grad() {
                    return;
                }
                if let Some(grad) = param.val().grad_remove(self.grads) {
                    let numel = grad.shape().num_elements();
                    self.out.push((param.id, grad.reshape([numel])));
                }
            }
        }
        let mut take = Take {
            grads: &mut grads,
            out: Vec::new(),
        };
        module.visit(&mut take);
        Self(take.out)
    }

    /// Adds another micro-batch's gradients (gradient accumulation) of the same module.
    pub fn accumulate(&mut self, other: Self) {
        debug_assert!(self.0.iter().zip(&other.0).all(|(a, b)| a.0 == b.0));
        for ((_, total), (_, grad)) in self.0.iter_mut().zip(other.0) {
            *total = total.clone() + grad;
        }
    }

    /// Takes the gradient of parameter `id` out.
    fn take(&mut self, id: ParamId) -> Option<Tensor<1>> {
        let index = self.0.iter().position(|(p, _)| *p == id)?;
        Some(self.0.swap_remove(index).1)
    }

    /// ‖g‖₂ over all parameters together, read back to the host.
    pub fn global_norm(&self) -> Result<f64> {
        let squares: Vec<Tensor<1>> = self
            .0
            .iter()
            .map(|(_, g)| g.clone().powi_scalar(2).sum())
            .collect();
        if squares.is_empty() {
            return Ok(0.0);
        }
        let total = to_host(Tensor::cat(squares, 0).sum())?;
        Ok(f64::from(total[0]).sqrt())
    }

    /// Multiplies every gradient by `factor` (nothing to do for 1, the unclipped case).
    pub fn scale(&mut self, factor: f64) {
        if factor == 1.0 {
            return;
        }
        for (_, grad) in &mut self.0 {
            *grad = grad.clone() * factor;
        }
    }
}

/// The factor that brings the global norm down to `max_norm` (PyTorch's `clip_grad_norm_`).
pub fn clip_factor(global_norm: f64, max_norm: f64) -> f64 {
    (max_norm / (global_norm + 1e-6)).min(1.0)
}

/// AdamW's hyper-parameters (Loshchilov & Hutter 2019, Algorithm 2), PyTorch's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWSettings {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
}

impl Default for AdamWSettings {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// First and second moment of one parameter.
#[derive(Clone)]
struct Moments {
    first: Tensor<1>,
    second: Tensor<1>,
}

/// One AdamW step of one parameter from tensor operations: (θ, m, v) after it. The CPU kernels
/// run the same arithmetic as one pass ([`kernels::adamw_step`]).
fn adamw_composed(
    param: Tensor<1>,
    grad: Tensor<1>,
    previous: Moments,
    step: AdamWStep,
) -> [Tensor<1>; 3] {
    let (bias1, bias2) = step.bias_corrections;
    let first = previous.first * step.beta1 + grad.clone() * (1.0 - step.beta1);
    let second = previous.second * step.beta2 + grad.powi_scalar(2) * (1.0 - step.beta2);
    // Decoupled weight decay, then the bias-corrected Adam step (Algorithm 2, lines 9-12).
    let decayed = param * (1.0 - step.lr * step.weight_decay);
    let denom = (second.clone() / bias2).sqrt() + step.epsilon;
    let updated = decayed - (first.clone() / bias1) / denom * step.lr;
    [updated, first, second]
}

/// AdamW whose moments are stored under parameter paths.
pub struct AdamW {
    pub settings: AdamWSettings,
    moments: BTreeMap<String, Moments>,
    /// Updates applied so far (t in the bias corrections).
    updates: u64,
}

impl AdamW {
    pub fn new(settings: AdamWSettings) -> Self {
        Self {
            settings,
            moments: BTreeMap::new(),
            updates: 0,
        }
    }

    /// One update of every parameter that has a gradient.
    pub fn step<M: Module>(&mut self, module: M, grads: &mut FlatGradients, lr: f64) -> Result<M> {
        self.updates += 1;
        let s = self.settings;
        let t = self.updates as i32;
        let (bias1, bias2) = (1.0 - s.beta1.powi(t), 1.0 - s.beta2.powi(t));
        let moments = &mut self.moments;
        update_parameters(module, &mut |path, id, param| {
            let Some(grad) = grads.take(id) else {
                return Ok(None);
            };
            let previous = moments.remove(path).unwrap_or_else(|| Moments {
                first: param.zeros_like(),
                second: param.zeros_like(),
            });
            let step = AdamWStep {
                lr,
                beta1: s.beta1,
                beta2: s.beta2,
                epsilon: s.epsilon,
                weight_decay: s.weight_decay,
                bias_corrections: (bias1, bias2),
            };
            let [updated, first, second] =
                kernels::adamw_step(&param, &grad, [&previous.first, &previous.second], step)
                    .unwrap_or_else(|| adamw_composed(param, grad, previous, step));
            moments.insert(path.to_string(), Moments { first, second });
            Ok(Some(updated))
        })
    }

    /// The state as host tensors ("first/<path>", "second/<path>") and the update count.
    pub fn state_to_host(&self) -> Result<(BTreeMap<String, HostTensor>, u64)> {
        let mut out = BTreeMap::new();
        for (path, m) in &self.moments {
            for (kind, tensor) in [("first", &m.first), ("second", &m.second)] {
                let values = to_host(tensor.clone())?;
                out.insert(
                    format!("{kind}/{path}"),
                    HostTensor {
                        shape: vec![values.len()],
                        values,
                    },
                );
            }
        }
        Ok((out, self.updates))
    }

    /// Restores a state written by [`AdamW::state_to_host`], on the device of `module`.
    pub fn load_state<M: Module>(
        &mut self,
        module: &M,
        tensors: &BTreeMap<String, HostTensor>,
        updates: u64,
    ) -> Result<()> {
        self.moments.clear();
        self.updates = updates;
        for (path, _, like) in flat_parameters(module) {
            let get = |kind: &str| {
                tensors
                    .get(&format!("{kind}/{path}"))
                    .map(|t| from_host(t.values.clone(), &like))
            };
            match (get("first"), get("second")) {
                (Some(first), Some(second)) => {
                    self.moments.insert(path, Moments { first, second });
                }
                (None, None) if updates == 0 => {}
                _ => {
                    return Err(DiffuseError::config(format!(
                        "the optimizer state has no moments for parameter `{path}`"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_only_shrinks() {
        assert_eq!(clip_factor(0.5, 1.0), 1.0);
        assert!((clip_factor(4.0, 1.0) - 0.25).abs() < 1e-6);
    }
}
