//! Training data: every source is decoded once into an in-memory [`Dataset`] of f32 samples
//! (images normalised to [-1, 1], vectors as given); [`loader`] shuffles it into batches on a
//! background thread.

pub mod csv;
pub mod idx;
pub mod image_folder;
pub mod loader;
pub mod toy;

use std::path::{Path, PathBuf};

use crate::error::{DiffuseError, Result};

/// What the samples are: images are shown as grids, vectors as scatter plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    Images,
    Vectors,
}

/// Decoded samples, all of one shape.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// One sample's shape [C, H, W]; a vector of width D is [D, 1, 1].
    pub sample_shape: [usize; 3],
    /// Every sample, flattened row-major one after the other.
    pub values: Vec<f32>,
    /// One class index per sample, when the source has classes.
    pub labels: Option<Vec<usize>>,
    /// Names of the classes, indexed by label (empty without labels).
    pub class_names: Vec<String>,
    pub kind: DataKind,
}

impl Dataset {
    /// Checks the invariants every loader promises, so a bad file never reaches the trainer.
    pub fn new(
        sample_shape: [usize; 3],
        values: Vec<f32>,
        labels: Option<Vec<usize>>,
        class_names: Vec<String>,
        kind: DataKind,
    ) -> Result<Self> {
        let per_sample: usize = sample_shape.iter().product();
        if per_sample == 0 || values.is_empty() || !values.len().is_multiple_of(per_sample) {
            return Err(DiffuseError::config(format!(
                "a dataset needs at least one sample of shape {sample_shape:?}; got {} values",
                values.len()
            )));
        }
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(DiffuseError::config(format!(
                "the dataset holds a non-finite value ({bad})"
            )));
        }
        let len = values.len() / per_sample;
        if let Some(labels) = &labels {
            if labels.len() != len {
                return Err(DiffuseError::config(format!(
                    "{} labels for {len} samples",
                    labels.len()
                )));
            }
            if let Some(&bad) = labels.iter().find(|&&l| l >= class_names.len()) {
                return Err(DiffuseError::config(format!(
                    "label {bad} is outside the {} class names",
                    class_names.len()
                )));
            }
        }
        Ok(Self {
            sample_shape,
            values,
            labels,
            class_names,
            kind,
        })
    }

    pub fn len(&self) -> usize {
        self.values.len() / self.sample_numel()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Values per sample (C·H·W).
    pub fn sample_numel(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// The flattened values of sample `index`.
    pub fn sample(&self, index: usize) -> &[f32] {
        let n = self.sample_numel();
        &self.values[index * n..(index + 1) * n]
    }

    /// The samples at `indices`, in that order, with their labels and the same class names.
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(DiffuseError::config(format!(
                "sample {bad} is outside a dataset of {}",
                self.len()
            )));
        }
        let values = indices
            .iter()
            .flat_map(|&i| self.sample(i).iter().copied())
            .collect();
        let labels = self
            .labels
            .as_ref()
            .map(|all| indices.iter().map(|&i| all[i]).collect());
        Self::new(
            self.sample_shape,
            values,
            labels,
            self.class_names.clone(),
            self.kind,
        )
    }

    /// Number of classes (0 when the data has no labels).
    pub fn num_classes(&self) -> usize {
        if self.labels.is_some() {
            self.class_names.len()
        } else {
            0
        }
    }
}

/// Which split of a dataset with a train/test split to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// How image folders are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorMode {
    /// One channel (luma).
    Gray,
    /// Three channels.
    #[default]
    Rgb,
}

impl std::str::FromStr for ColorMode {
    type Err = DiffuseError;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "gray" | "grey" => Ok(Self::Gray),
            "rgb" => Ok(Self::Rgb),
            other => Err(DiffuseError::config(format!(
                "the color mode must be gray or rgb, not `{other}`"
            ))),
        }
    }
}

/// Options that shape how a source is decoded.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub split: Split,
    /// Image folders: side of the square the images are resized and center-cropped to.
    pub resolution: usize,
    /// Image folders: gray or RGB.
    pub color: ColorMode,
    /// Toy sets: how many points to draw.
    pub toy_samples: usize,
    /// Toy sets: the seed of the draw.
    pub seed: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            split: Split::Train,
            resolution: 32,
            color: ColorMode::Rgb,
            toy_samples: 10_000,
            seed: 0,
        }
    }
}

/// Where training data comes from, as spelled on the command line:
/// `mnist`, `fashion-mnist`, a folder of images, a `.csv` file, or `toy:NAME`.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetSource {
    /// MNIST or Fashion-MNIST idx files in `dir`.
    Idx {
        name: idx::IdxDataset,
        dir: PathBuf,
    },
    ImageFolder(PathBuf),
    Csv(PathBuf),
    Toy(toy::ToySet),
}

/// The default folder of the MNIST-style sets: `../shared/data` beside the project root.
pub fn default_data_root() -> PathBuf {
    let beside_cwd = Path::new("../shared/data");
    if beside_cwd.is_dir() {
        return beside_cwd.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
}

impl DatasetSource {
    /// Parses a `--dataset` value; `data_dir` overrides where `mnist`/`fashion-mnist` are read.
    pub fn parse(spec: &str, data_dir: Option<&Path>) -> Result<Self> {
        if let Some(name) = spec.strip_prefix("toy:") {
            return Ok(Self::Toy(name.parse()?));
        }
        if let Ok(name) = spec.parse::<idx::IdxDataset>() {
            let dir = match data_dir {
                Some(dir) => dir.to_path_buf(),
                None => default_data_root().join(name.folder()),
            };
            return Ok(Self::Idx { name, dir });
        }
        let path = PathBuf::from(spec);
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            return Ok(Self::Csv(path));
        }
        if path.is_dir() {
            return Ok(Self::ImageFolder(path));
        }
        Err(DiffuseError::config(format!(
            "dataset `{spec}` is neither mnist, fashion-mnist, toy:NAME ({}), a .csv file nor an \
             existing folder of images",
            toy::ToySet::NAMES
        )))
    }

    /// Decodes the whole source; every failure names the file and what is wrong with it.
    pub fn load(&self, options: &LoadOptions) -> Result<Dataset> {
        match self {
            Self::Idx { name, dir } => idx::load(*name, dir, options.split),
            Self::ImageFolder(dir) => image_folder::load(dir, options.resolution, options.color),
            Self::Csv(path) => csv::load(path),
            Self::Toy(set) => set.sample(options.toy_samples, options.seed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_keep_labels_and_refuse_bad_indices() {
        let names = vec!["a".to_string(), "b".to_string()];
        let data = Dataset::new(
            [1, 1, 2],
            vec![0.0, 0.1, 1.0, 1.1, 2.0, 2.1],
            Some(vec![0, 1, 0]),
            names,
            DataKind::Images,
        )
        .unwrap();
        let picked = data.subset(&[2, 1]).unwrap();
        assert_eq!(picked.values, [2.0, 2.1, 1.0, 1.1]);
        assert_eq!(picked.labels, Some(vec![0, 1]));
        assert_eq!(picked.class_names, data.class_names);
        assert!(data.subset(&[3]).is_err());
        assert!(data.subset(&[]).is_err());
    }
}
