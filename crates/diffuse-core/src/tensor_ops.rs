//! Small glue between host vectors and burn tensors.

use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::error::{DiffuseError, Result};

/// The elements of `tensor`, read back to the host as f64 (row-major).
pub fn to_host_f64<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f64>> {
    tensor
        .try_into_data()
        .map_err(|e| DiffuseError::Tensor(format!("{e:?}")))?
        .try_into_vec_as::<f64>()
        .map_err(|e| DiffuseError::Tensor(format!("{e:?}")))
}

/// A tensor of the given shape and dtype on `device`, from host f64 values (row-major).
pub fn from_host_f64<const D: usize>(
    values: Vec<f64>,
    shape: [usize; D],
    device: &Device,
    dtype: DType,
) -> Tensor<D> {
    debug_assert_eq!(values.len(), shape.iter().product::<usize>());
    let data = TensorData::new(values, shape).convert_dtype(dtype);
    Tensor::from_data(data, (device, dtype))
}

/// One coefficient per batch row, shaped [B, 1, …, 1] so that it broadcasts over `like`.
pub fn per_sample<const D: usize>(coefficients: &[f64], like: &Tensor<D>) -> Tensor<D> {
    let mut shape = [1; D];
    shape[0] = coefficients.len();
    from_host_f64(coefficients.to_vec(), shape, &like.device(), like.dtype())
}

/// ‖a − b‖∞ / ‖b‖∞: the relative error we state tolerances in.
pub fn relative_max_error(actual: &[f64], expected: &[f64]) -> f64 {
    assert_eq!(
        actual.len(),
        expected.len(),
        "compared vectors differ in length"
    );
    let scale = expected.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    let diff = actual
        .iter()
        .zip(expected)
        .fold(0.0_f64, |m, (a, b)| m.max((a - b).abs()));
    if scale == 0.0 { diff } else { diff / scale }
}
