//! Reading and writing tensors as safetensors files.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::error::{DiffuseError, Result};

/// A named f32 tensor on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Writes f32 tensors to `path` atomically: a temporary file beside it, synced, then renamed, so a
/// crash never leaves a half-written file in its place.
pub fn write_safetensors(path: &Path, tensors: &[(&str, &HostTensor)]) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, t)| t.values.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), data)| {
            TensorView::new(Dtype::F32, t.shape.clone(), data)
                .map(|view| (name.to_string(), view))
                .map_err(|e| DiffuseError::config(format!("tensor '{name}': {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let serialized = safetensors::serialize(views, None)
        .map_err(|e| DiffuseError::config(format!("serialising {}: {e}", path.display())))?;
    write_atomically(path, &serialized)
}

/// Replaces `path` with `contents` through a synced temporary file and a rename.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| DiffuseError::config(format!("'{}' is not a file path", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp", file_name.to_string_lossy()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        DiffuseError::io(path, e)
    })
}

/// Reads every tensor of a safetensors file as f32 (F32, F16, BF16 and F64 are converted).
pub fn read_safetensors(path: &Path) -> Result<HashMap<String, HostTensor>> {
    let bytes = std::fs::read(path).map_err(|e| DiffuseError::io(path, e))?;
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| DiffuseError::bad_file(path, format!("not a valid safetensors file: {e}")))?;
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = to_f32(view.dtype(), view.data()).ok_or_else(|| {
                DiffuseError::bad_file(
                    path,
                    format!("tensor '{name}' has unsupported dtype {:?}", view.dtype()),
                )
            })?;
            Ok((
                name,
                HostTensor {
                    shape: view.shape().to_vec(),
                    values,
                },
            ))
        })
        .collect()
}

fn to_f32(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    let words = |n: usize| data.chunks_exact(n);
    Some(match dtype {
        Dtype::F32 => words(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F64 => words(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8-byte chunk")) as f32)
            .collect(),
        Dtype::F16 => words(2)
            .map(|b| half_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        // Integer tensors (class labels, step counts) are exact in f32 up to 2^24.
        Dtype::I64 => words(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8-byte chunk")) as f32)
            .collect(),
        Dtype::BF16 => words(2)
            .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
            .collect(),
        _ => return None,
    })
}

/// IEEE 754 binary16 → f32.
fn half_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exponent = ((h >> 10) & 0x1f) as u32;
    let mantissa = (h & 0x3ff) as u32;
    let bits = match (exponent, mantissa) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise the mantissa.
            let shift = m.leading_zeros() - 21;
            sign | ((127 - 15 + 1 - shift) << 23) | ((m << shift) & 0x3ff) << 13
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_values_convert() {
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
        assert_eq!(half_to_f32(0x0001), 2.0_f32.powi(-24));
        assert!(half_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn round_trip_and_corrupt_file() {
        let dir = std::env::temp_dir().join(format!("diffuse-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.safetensors");
        let t = HostTensor {
            shape: vec![2, 2],
            values: vec![1.0, -2.0, 3.5, 0.25],
        };
        write_safetensors(&path, &[("samples", &t)]).unwrap();
        assert_eq!(read_safetensors(&path).unwrap()["samples"], t);
        std::fs::write(&path, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}").unwrap();
        assert!(read_safetensors(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
