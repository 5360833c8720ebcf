//! Weights in diffusers' safetensors layout (PyTorch names and shapes) in and out of burn modules.

use std::path::Path;

use burn::module::Module;
use burn::store::{
    BurnToPyTorchAdapter, ChainAdapter, FloatCastAdapter, KeyRemapper, ModuleAdapter,
    ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
};
use burn::tensor::DType;
use safetensors::Dtype;

use crate::error::{DiffuseError, Result};
use crate::io::write_atomically;

/// Regex renames between diffusers' tensor names and our module paths, for each direction.
#[derive(Debug, Clone, Copy)]
pub struct KeyRenames {
    /// (pattern in the file, replacement in the module), applied when loading.
    pub load: &'static [(&'static str, &'static str)],
    /// (pattern in the module, replacement in the file), applied when saving and to name the
    /// file's tensors in loading errors.
    pub save: &'static [(&'static str, &'static str)],
}

impl KeyRenames {
    /// Names that already match.
    pub const NONE: Self = Self {
        load: &[],
        save: &[],
    };
}

/// Loads every tensor of the safetensors file at `path` into `module`. diffusers' names map one to
/// one onto our field paths; Linear weights are transposed, GroupNorm weight/bias become γ/β, and
/// half-precision weights are widened to f32. Any missing, unexpected or mis-shaped tensor is an
/// error that names it (missing and unexpected ones as the file does).
pub fn load_diffusers_weights<M: Module + ModuleSnapshot>(
    module: &mut M,
    path: &Path,
    renames: &KeyRenames,
) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| DiffuseError::io(path, e))?;
    load_diffusers_weights_from_bytes(module, bytes, path, renames)
}

/// [`load_diffusers_weights`] from a safetensors file already in memory; `path` names it in
/// errors.
pub fn load_diffusers_weights_from_bytes<M: Module + ModuleSnapshot>(
    module: &mut M,
    bytes: Vec<u8>,
    path: &Path,
    renames: &KeyRenames,
) -> Result<()> {
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| DiffuseError::bad_file(path, format!("not a valid safetensors file: {e}")))?;
    let mut non_float: Vec<String> = file
        .tensors()
        .into_iter()
        .filter(|(_, view)| {
            !matches!(
                view.dtype(),
                Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64
            )
        })
        .map(|(name, view)| format!("{name} ({:?})", view.dtype()))
        .collect();
    if !non_float.is_empty() {
        non_float.sort();
        return Err(DiffuseError::bad_file(
            path,
            format!(
                "weights must be floating point; found {}",
                non_float.join(", ")
            ),
        ));
    }
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .with_from_adapter(ChainAdapter::new(
            PyTorchToBurnAdapter,
            FloatCastAdapter::to(DType::F32),
        ))
        .allow_partial(true);
    for (pattern, replacement) in renames.load {
        store = store.with_key_remapping(*pattern, *replacement);
    }
    let result = module
        .load_from(&mut store)
        .map_err(|e| DiffuseError::bad_file(path, e.to_string()))?;
    let mut problems = Vec::new();
    let file_name = file_names(renames);
    if !result.missing.is_empty() {
        let names: Vec<String> = result
            .missing
            .iter()
            .map(|(path, containers)| file_name(&pytorch_param_name(path, containers)))
            .collect();
        problems.push(format!("missing tensors: {}", names.join(", ")));
    }
    if !result.unused.is_empty() {
        let names: Vec<String> = result.unused.iter().map(|path| file_name(path)).collect();
        problems.push(format!("unexpected tensors: {}", names.join(", ")));
    }
    problems.extend(result.errors.iter().map(|e| format!("{e:?}")));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DiffuseError::bad_file(path, problems.join("; ")))
    }
}

/// A module path as the file names it, by `renames.save`, so that errors name the file's tensors.
fn file_names(renames: &KeyRenames) -> impl Fn(&str) -> String {
    let patterns = KeyRemapper::from_patterns(renames.save.to_vec())
        .expect("rename patterns are valid regexes")
        .to_regex_pairs();
    move |path| {
        patterns
            .iter()
            .fold(path.to_string(), |name, (pattern, to)| {
                pattern.replace_all(&name, to.as_str()).into_owned()
            })
    }
}

/// PyTorch's name for the module tensor at `path` inside `containers` (the module types down to
/// it, dot-separated): `weight`/`bias` for a norm layer's γ/β.
fn pytorch_param_name(path: &str, containers: &str) -> String {
    let (parent, param) = path.rsplit_once('.').unwrap_or(("", path));
    let container = containers.rsplit('.').next().unwrap_or_default();
    match PyTorchToBurnAdapter.get_alternative_param_name(param, container) {
        Some(name) if parent.is_empty() => name,
        Some(name) => format!("{parent}.{name}"),
        None => path.to_string(),
    }
}

/// The weights file of a diffusers component folder.
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";

/// Reads a diffusers component folder (`config.json` and [`WEIGHTS_FILE`]): the config through
/// `parse`, a module from it through `build`, then its weights. Errors name the file.
pub fn load_component<C, M: Module + ModuleSnapshot>(
    dir: &Path,
    parse: impl FnOnce(&str) -> Result<C>,
    build: impl FnOnce(&C) -> Result<M>,
    renames: &KeyRenames,
) -> Result<M> {
    let config_path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&config_path).map_err(|e| DiffuseError::io(&config_path, e))?;
    let config = parse(&text).map_err(|e| e.in_file(&config_path))?;
    let mut module = build(&config).map_err(|e| e.in_file(&config_path))?;
    load_diffusers_weights(&mut module, &dir.join(WEIGHTS_FILE), renames)?;
    Ok(module)
}

/// Writes the component folder diffusers' `from_pretrained` reads: `config_json` and the weights.
pub fn save_component<M: Module + ModuleSnapshot>(
    module: &M,
    dir: &Path,
    config_json: &str,
    renames: &KeyRenames,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| DiffuseError::io(dir, e))?;
    write_atomically(&dir.join("config.json"), config_json.as_bytes())?;
    save_diffusers_weights(module, &dir.join(WEIGHTS_FILE), renames)
}

/// Writes `module`'s weights to `path` in diffusers' layout (atomically).
pub fn save_diffusers_weights<M: Module + ModuleSnapshot>(
    module: &M,
    path: &Path,
    renames: &KeyRenames,
) -> Result<()> {
    // burn's default metadata is a HashMap whose keys come out in a random order, so equal
    // weights would hash differently; one key, what PyTorch's save_file writes, is stable.
    let mut store = SafetensorsStore::from_bytes(None)
        .clear_metadata()
        .metadata("format", "pt")
        .with_to_adapter(BurnToPyTorchAdapter);
    for (pattern, replacement) in renames.save {
        store = store.with_key_remapping(*pattern, *replacement);
    }
    module
        .save_into(&mut store)
        .map_err(|e| DiffuseError::config(format!("serialising weights: {e}")))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| DiffuseError::config(format!("serialising weights: {e}")))?;
    write_atomically(path, &bytes)
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::tensor::Device;

    use super::*;

    /// The safetensors header: its 8-byte length, then the JSON.
    fn header(path: &Path) -> String {
        let bytes = std::fs::read(path).unwrap();
        let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        String::from_utf8(bytes[8..8 + len].to_vec()).unwrap()
    }

    #[test]
    fn saved_weights_are_byte_stable_with_pytorch_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let layer = LinearConfig::new(3, 2).init(&Device::default());
        let paths = [
            dir.path().join("a.safetensors"),
            dir.path().join("b.safetensors"),
        ];
        for path in &paths {
            save_diffusers_weights(&layer, path, &KeyRenames::NONE).unwrap();
        }
        let text = header(&paths[0]);
        assert!(text.contains(r#""__metadata__":{"format":"pt"}"#), "{text}");
        assert_eq!(
            std::fs::read(&paths[0]).unwrap(),
            std::fs::read(&paths[1]).unwrap()
        );
    }
}
