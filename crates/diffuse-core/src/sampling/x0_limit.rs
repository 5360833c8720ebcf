//! Keeping x̂_0 inside the data range: static clipping, or Imagen's dynamic thresholding, which
//! avoids the saturated images that high guidance weights produce under clipping.

use burn::tensor::Tensor;

use crate::error::{DiffuseError, Result};
use crate::tensor_ops::{from_host_f64, to_host_f64};

/// What a sampler does to every x̂_0 it forms.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum X0Limit {
    /// Leave x̂_0 as predicted (unbounded data such as mixtures or vectors).
    #[default]
    None,
    /// Clamp to [−r, r] (diffusers' `clip_sample` with `clip_sample_range` r).
    Clip(f64),
    /// Saharia et al. 2022 (Imagen), §2.3: s = the `ratio` quantile of |x̂_0| per sample, clamped
    /// to [1, `max_value`]; x̂_0 ← clamp(x̂_0, −s, s)/s (diffusers' `thresholding`).
    Dynamic { ratio: f64, max_value: f64 },
}

impl X0Limit {
    /// Checks the parameters: r > 0, ratio in (0, 1], max_value ≥ 1.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Self::None => Ok(()),
            Self::Clip(r) if r.is_finite() && r > 0.0 => Ok(()),
            Self::Clip(r) => Err(DiffuseError::config(format!(
                "the clip range must be a positive number (got {r})"
            ))),
            Self::Dynamic { ratio, max_value } => {
                if !(ratio > 0.0 && ratio <= 1.0) {
                    return Err(DiffuseError::config(format!(
                        "the dynamic thresholding ratio (percentile) must lie in (0, 1] (got {ratio})"
                    )));
                }
                if !(max_value.is_finite() && max_value >= 1.0) {
                    return Err(DiffuseError::config(format!(
                        "the dynamic thresholding max value must be at least 1 (got {max_value})"
                    )));
                }
                Ok(())
            }
        }
    }

    /// x̂_0 with this limit applied.
    pub fn apply<const D: usize>(&self, x0: Tensor<D>) -> Result<Tensor<D>> {
        match *self {
            Self::None => Ok(x0),
            Self::Clip(r) => Ok(x0.clamp(-r, r)),
            Self::Dynamic { ratio, max_value } => dynamic_threshold(x0, ratio, max_value),
        }
    }
}

/// Imagen's dynamic thresholding, per sample (batch row).
fn dynamic_threshold<const D: usize>(
    x0: Tensor<D>,
    ratio: f64,
    max_value: f64,
) -> Result<Tensor<D>> {
    let (shape, device, dtype) = (x0.dims(), x0.device(), x0.dtype());
    let mut values = to_host_f64(x0)?;
    let per_sample = values.len() / shape[0].max(1);
    for row in values.chunks_mut(per_sample.max(1)) {
        let mut magnitudes: Vec<f64> = row.iter().map(|v| v.abs()).collect();
        let s = quantile(&mut magnitudes, ratio).clamp(1.0, max_value);
        row.iter_mut().for_each(|v| *v = v.clamp(-s, s) / s);
    }
    Ok(from_host_f64(values, shape, &device, dtype))
}

/// The q-quantile with linear interpolation between order statistics (torch.quantile's default).
fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let position = q * (values.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    let w = position - low as f64;
    values[low] * (1.0 - w) + values[high] * w
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{DType, Device};

    fn tensor(values: &[f64], shape: [usize; 2]) -> Tensor<2> {
        from_host_f64(values.to_vec(), shape, &Device::flex(), DType::F64)
    }

    #[test]
    fn thresholding_leaves_in_range_samples_untouched() {
        let x0 = [0.3, -0.9, 0.99, 0.0, -0.5, 0.7];
        let limit = X0Limit::Dynamic {
            ratio: 0.995,
            max_value: 1.5,
        };
        let out = to_host_f64(limit.apply(tensor(&x0, [2, 3])).unwrap()).unwrap();
        assert_eq!(out, x0);
    }

    #[test]
    fn thresholding_rescales_each_sample_by_its_own_percentile() {
        // Row 0 is in range; row 1's |x| quantile at ratio 1 is its max, 3 → clamped to 2.
        let x0 = [0.5, -0.5, 3.0, -1.0];
        let limit = X0Limit::Dynamic {
            ratio: 1.0,
            max_value: 2.0,
        };
        let out = to_host_f64(limit.apply(tensor(&x0, [2, 2])).unwrap()).unwrap();
        assert_eq!(out, vec![0.5, -0.5, 1.0, -0.5]);
    }

    #[test]
    fn quantile_interpolates_like_torch() {
        assert_eq!(quantile(&mut [4.0, 1.0, 3.0, 2.0], 0.5), 2.5);
        assert_eq!(quantile(&mut [1.0, 2.0, 3.0], 1.0), 3.0);
    }
}
