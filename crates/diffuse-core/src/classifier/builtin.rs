//! Evaluation classifiers shipped with the library, so that `diffuse eval` on MNIST and
//! Fashion-MNIST needs no training first. Each was trained by `diffuse train-classifier` with the
//! default settings; the command and its accuracies are in the folder's `summary.json` and in
//! docs/QUALITY.md.

use std::path::Path;

use burn::tensor::Device;

use super::NoiseAwareClassifier;
use crate::error::Result;

/// (dataset, config.json, model.safetensors) of each built-in classifier.
const BUILTIN: [(&str, &str, &[u8]); 2] = [
    (
        "mnist",
        include_str!("../../assets/classifiers/mnist/config.json"),
        include_bytes!("../../assets/classifiers/mnist/model.safetensors"),
    ),
    (
        "fashion-mnist",
        include_str!("../../assets/classifiers/fashion-mnist/config.json"),
        include_bytes!("../../assets/classifiers/fashion-mnist/model.safetensors"),
    ),
];

/// The datasets with a built-in classifier.
pub fn builtin_datasets() -> Vec<&'static str> {
    BUILTIN.iter().map(|(name, ..)| *name).collect()
}

/// The built-in classifier of `dataset` (`mnist` or `fashion-mnist`), if there is one.
pub fn builtin_classifier(dataset: &str, device: &Device) -> Result<Option<NoiseAwareClassifier>> {
    BUILTIN
        .iter()
        .find(|(name, ..)| *name == dataset)
        .map(|(name, config, weights)| {
            let origin = Path::new("<built-in classifiers>").join(name);
            NoiseAwareClassifier::from_bytes(config, weights.to_vec(), &origin, device)
        })
        .transpose()
}
