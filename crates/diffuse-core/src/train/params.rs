//! A module's float parameters addressed by their path ("UNet.down_blocks.0.resnets.0.conv1.weight"),
//! the stable key the optimizer state, the EMA and checkpoints are stored under.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{DType, Tensor, TensorData};

use crate::error::{DiffuseError, Result};
use crate::io::HostTensor;

/// Tracks the module path while a visitor or mapper walks the tree.
#[derive(Default)]
struct PathStack(Vec<String>);

impl PathStack {
    fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }

    fn exit(&mut self) {
        self.0.pop();
    }

    /// The path of the parameter about to be visited: burn reports a parameter as a module
    /// entry named after its field, so the stack already ends with its name.
    fn key(&self) -> String {
        self.0.join(".")
    }
}

/// Every float parameter as (path, id, flattened tensor on its device, without autodiff).
pub fn flat_parameters<M: Module>(module: &M) -> Vec<(String, ParamId, Tensor<1>)> {
    struct Collect {
        path: PathStack,
        out: Vec<(String, ParamId, Tensor<1>)>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let tensor = param.val().inner();
            let numel = tensor.shape().num_elements();
            self.out
                .push((self.path.key(), param.id, tensor.reshape([numel])));
        }
    }
    let mut collect = Collect {
        path: PathStack::default(),
        out: Vec::new(),
    };
    module.visit(&mut collect);
    collect.out
}

/// A per-parameter update: (path, id, current value flattened) → the new value, or `None`.
pub type ParameterUpdate<'a> =
    dyn FnMut(&str, ParamId, Tensor<1>) -> Result<Option<Tensor<1>>> + 'a;

/// Replaces every float parameter by `update(path, current value flattened)`, keeping its shape,
/// its id and whether it requires gradients. `update` returns `None` to keep a parameter as is.
pub fn update_parameters<M: Module>(module: M, update: &mut ParameterUpdate<'_>) -> Result<M> {
    struct Update<'a> {
        path: PathStack,
        update: &'a mut ParameterUpdate<'a>,
        error: Option<DiffuseError>,
    }
    impl ModuleMapper for Update<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, tensor, mapper) = param.consume();
            if self.error.is_some() {
                return Param::from_mapped_value(id, tensor, mapper);
            }
            let shape = tensor.shape();
            let requires_grad = tensor.is_require_grad();
            let autodiff = tensor.is_autodiff();
            let flat = tensor.clone().inner().reshape([shape.num_elements()]);
            let tensor = match (self.update)(&self.path.key(), id, flat) {
                Ok(Some(new)) => {
                    let mut new: Tensor<D> = new.reshape(shape);
                    if autodiff {
                        new = new.autodiff();
                    }
                    if requires_grad {
                        new = new.require_grad();
                    }
                    new
                }
                Ok(None) => tensor,
                Err(e) => {
                    self.error = Some(e);
                    tensor
                }
            };
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    let mut mapper = Update {
        path: PathStack::default(),
        update,
        error: None,
    };
    let module = module.map(&mut mapper);
    match mapper.error {
        Some(e) => Err(e),
        None => Ok(module),
    }
}

/// A flat f32 tensor read back to the host.
pub fn to_host(tensor: Tensor<1>) -> Result<Vec<f32>> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| DiffuseError::Tensor(format!("{e:?}")))
}

/// Host values as a flat f32 tensor like `like` (same device).
pub fn from_host(values: Vec<f32>, like: &Tensor<1>) -> Tensor<1> {
    let len = values.len();
    Tensor::from_data(TensorData::new(values, [len]), (&like.device(), DType::F32))
}

/// Every float parameter, by path, on the host (for checkpoints).
pub fn parameters_to_host<M: Module>(module: &M) -> Result<BTreeMap<String, HostTensor>> {
    flat_parameters(module)
        .into_iter()
        .map(|(path, _, tensor)| {
            let len = tensor.dims()[0];
            Ok((
                path,
                HostTensor {
                    shape: vec![len],
                    values: to_host(tensor)?,
                },
            ))
        })
        .collect()
}

/// Sets every float parameter from `values` by path; a missing or mis-sized entry is an error.
pub fn parameters_from_host<M: Module>(
    module: M,
    values: &BTreeMap<String, HostTensor>,
    what: &str,
) -> Result<M> {
    update_parameters(module, &mut |path, _, current| {
        let stored = values.get(path).ok_or_else(|| {
            DiffuseError::config(format!("{what} has no tensor for parameter `{path}`"))
        })?;
        if stored.values.len() != current.dims()[0] {
            return Err(DiffuseError::config(format!(
                "{what}: parameter `{path}` holds {} values, the model needs {}",
                stored.values.len(),
                current.dims()[0]
            )));
        }
        Ok(Some(from_host(stored.values.clone(), &current)))
    })
}
