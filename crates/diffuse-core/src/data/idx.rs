//! MNIST-style idx files (`*-idx3-ubyte[.gz]`, `*-idx1-ubyte[.gz]`).
//!
//! The idx format is a big-endian header (two zero bytes, a type byte, the number of
//! dimensions, then one u32 per dimension) followed by the raw data. Only the unsigned-byte
//! type (0x08) occurs in MNIST and Fashion-MNIST, so it is the only one accepted.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use flate2::read::GzDecoder;

use super::{DataKind, Dataset, Split};
use crate::error::{DiffuseError, Result};

/// The idx type byte of unsigned 8-bit data.
const UBYTE: u8 = 0x08;
/// The two bytes every gzip stream starts with; used instead of the file extension so a
/// decompressed file that kept its `.gz` name (or the reverse) still reads.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Both sets have ten classes; a larger label means a corrupt or foreign file.
const NUM_CLASSES: usize = 10;

/// The two idx data sets the toolkit knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdxDataset {
    Mnist,
    FashionMnist,
}

impl IdxDataset {
    /// The name on the command line, which is also the folder under the data root.
    pub fn folder(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::FashionMnist => "fashion-mnist",
        }
    }

    /// Class names indexed by label, as published with each set.
    pub fn class_names(self) -> Vec<String> {
        let names: [&str; NUM_CLASSES] = match self {
            Self::Mnist => ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            Self::FashionMnist => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
        };
        names.iter().map(|n| n.to_string()).collect()
    }
}

impl FromStr for IdxDataset {
    type Err = DiffuseError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mnist" => Ok(Self::Mnist),
            "fashion-mnist" => Ok(Self::FashionMnist),
            other => Err(DiffuseError::UnknownName {
                kind: "dataset",
                name: other.into(),
                expected: "mnist, fashion-mnist",
            }),
        }
    }
}

/// Reads one split of `name` from `dir`: 28×28 gray images scaled to [-1, 1] with their labels.
pub fn load(name: IdxDataset, dir: &Path, split: Split) -> Result<Dataset> {
    if !dir.is_dir() {
        return Err(DiffuseError::bad_file(
            dir,
            format!(
                "no {} folder here; the idx files (e.g. train-images-idx3-ubyte.gz) are expected \
                 in it; pass --data DIR to read them from another folder",
                name.folder()
            ),
        ));
    }
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let images_path = find_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (shape, pixels) = read_images(&images_path)?;
    let labels = read_labels(&labels_path, shape[0])?;
    let values = pixels.iter().map(|&v| f32::from(v) / 127.5 - 1.0).collect();
    Dataset::new(
        [1, shape[1], shape[2]],
        values,
        Some(labels),
        name.class_names(),
        DataKind::Images,
    )
}

/// Parses an idx file (gzipped or plain) into its dimension sizes and its raw bytes.
pub fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let bytes = read_maybe_gzipped(path)?;
    let (dims, header_len) = parse_header(&bytes).map_err(|m| DiffuseError::bad_file(path, m))?;
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DiffuseError::bad_file(path, format!("dimensions {dims:?} overflow")))?;
    let data = &bytes[header_len..];
    if data.len() != expected {
        return Err(DiffuseError::bad_file(
            path,
            format!(
                "dimensions {dims:?} need {expected} data bytes but the file holds {}",
                data.len()
            ),
        ));
    }
    Ok((dims, data.to_vec()))
}

/// `dir/stem.gz` if present (the published form), else `dir/stem`; the error names both.
fn find_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    let gz = dir.join(format!("{stem}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    let plain = dir.join(stem);
    if plain.is_file() {
        return Ok(plain);
    }
    Err(DiffuseError::bad_file(
        gz,
        format!(
            "missing: expected {stem}.gz or {stem} in {}; pass --data DIR to read the idx files \
             from another folder",
            dir.display()
        ),
    ))
}

/// The whole file, decompressed when it starts with the gzip magic.
fn read_maybe_gzipped(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| DiffuseError::io(path, e))?;
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    GzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| {
            DiffuseError::bad_file(path, format!("corrupt or truncated gzip data: {e}"))
        })?;
    Ok(out)
}

/// Dimension sizes and header length of an unsigned-byte idx file.
fn parse_header(bytes: &[u8]) -> std::result::Result<(Vec<usize>, usize), String> {
    let Some(&[zero0, zero1, kind, ndim]) = bytes.first_chunk::<4>() else {
        return Err(format!("only {} bytes; not an idx file", bytes.len()));
    };
    if zero0 != 0 || zero1 != 0 || kind != UBYTE || ndim == 0 {
        return Err(format!(
            "bad idx magic 0x{zero0:02x}{zero1:02x}{kind:02x}{ndim:02x}; expected 0x0000080N \
             (unsigned bytes, N dimensions)"
        ));
    }
    let header_len = 4 + 4 * usize::from(ndim);
    let Some(dim_bytes) = bytes.get(4..header_len) else {
        return Err(format!(
            "header of {ndim} dimensions is cut short ({} bytes)",
            bytes.len()
        ));
    };
    let dims = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    Ok((dims, header_len))
}

/// Images as `[count, height, width]` plus pixels; rejects anything but non-empty 3-D data.
fn read_images(path: &Path) -> Result<([usize; 3], Vec<u8>)> {
    let (dims, pixels) = read_idx(path)?;
    match dims[..] {
        [n, h, w] if n > 0 && h > 0 && w > 0 => Ok(([n, h, w], pixels)),
        _ => Err(DiffuseError::bad_file(
            path,
            format!("expected non-empty images of dimensions [count, height, width], got {dims:?}"),
        )),
    }
}

/// Labels as class indices; their count must match the images read beside them.
fn read_labels(path: &Path, num_images: usize) -> Result<Vec<usize>> {
    let (dims, labels) = read_idx(path)?;
    if dims.len() != 1 {
        return Err(DiffuseError::bad_file(
            path,
            format!("expected one dimension of labels, got {dims:?}"),
        ));
    }
    if labels.len() != num_images {
        return Err(DiffuseError::bad_file(
            path,
            format!(
                "{} labels for {num_images} images; the two files do not belong together",
                labels.len()
            ),
        ));
    }
    if let Some((index, &bad)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= NUM_CLASSES)
    {
        return Err(DiffuseError::bad_file(
            path,
            format!("label {bad} of sample {index} is not a class index below {NUM_CLASSES}"),
        ));
    }
    Ok(labels.into_iter().map(usize::from).collect())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn shared_dir(name: IdxDataset) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data")
            .join(name.folder())
    }

    /// An idx file of unsigned bytes with the given dimensions and data.
    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let ndim = u8::try_from(dims.len()).expect("test dims fit in a byte");
        let mut bytes = vec![0, 0, UBYTE, ndim];
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend_from_slice(data);
        bytes
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(bytes).expect("write to memory");
        encoder.finish().expect("finish gzip in memory")
    }

    /// Writes a test split of `n` 2×3 images and the given labels into `dir`.
    fn write_split(dir: &Path, n: u32, labels: &[u8]) {
        let pixels: Vec<u8> = (0..n * 6).map(|i| (i * 51 % 256) as u8).collect();
        let images = idx_bytes(&[n, 2, 3], &pixels);
        let labels = idx_bytes(&[labels.len() as u32], labels);
        std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), gzip(&images)).expect("write");
        std::fs::write(dir.join("t10k-labels-idx1-ubyte"), labels).expect("write");
    }

    fn check_test_split(name: IdxDataset, first_label: usize) {
        let data = load(name, &shared_dir(name), Split::Test).expect("shared test split loads");
        assert_eq!(data.len(), 10_000);
        assert_eq!(data.sample_shape, [1, 28, 28]);
        assert_eq!(data.kind, DataKind::Images);
        assert_eq!(data.num_classes(), 10);
        let labels = data.labels.as_ref().expect("labels");
        assert_eq!(labels[0], first_label);
        let (lo, hi) = data
            .values
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert_eq!((lo, hi), (-1.0, 1.0));
        // Every class occurs in the balanced 10k test sets.
        for class in 0..10 {
            assert!(labels.iter().filter(|&&l| l == class).count() > 800);
        }
    }

    #[test]
    fn reads_mnist_test_split() {
        check_test_split(IdxDataset::Mnist, 7);
    }

    #[test]
    fn reads_fashion_mnist_test_split() {
        check_test_split(IdxDataset::FashionMnist, 9);
        assert_eq!(IdxDataset::FashionMnist.class_names()[9], "Ankle boot");
    }

    #[test]
    fn parses_names() {
        assert_eq!("mnist".parse::<IdxDataset>().ok(), Some(IdxDataset::Mnist));
        assert_eq!(
            "fashion-mnist".parse::<IdxDataset>().ok(),
            Some(IdxDataset::FashionMnist)
        );
        assert!(matches!(
            "cifar".parse::<IdxDataset>(),
            Err(DiffuseError::UnknownName {
                kind: "dataset",
                ..
            })
        ));
    }

    #[test]
    fn reads_gzipped_and_plain_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_split(dir.path(), 4, &[0, 3, 9, 1]);
        let data = load(IdxDataset::Mnist, dir.path(), Split::Test).expect("valid files");
        assert_eq!(data.sample_shape, [1, 2, 3]);
        assert_eq!(data.len(), 4);
        assert_eq!(data.labels, Some(vec![0, 3, 9, 1]));
        assert_eq!(data.values[0], -1.0);
        assert_eq!(data.values[5], 1.0); // 5 * 51 = 255
    }

    #[test]
    fn prefers_gz_over_plain() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_split(dir.path(), 2, &[1, 2]);
        let stale = idx_bytes(&[1, 1, 1], &[0]);
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), stale).expect("write");
        let data = load(IdxDataset::Mnist, dir.path(), Split::Test).expect("valid files");
        assert_eq!(data.len(), 2);
    }

    #[test]
    fn missing_folder_and_file_name_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        let err = load(IdxDataset::Mnist, &missing, Split::Train).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("nope") && message.contains("--data"),
            "{message}"
        );

        let err = load(IdxDataset::Mnist, dir.path(), Split::Train).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("train-images-idx3-ubyte") && message.contains("--data"),
            "{message}"
        );
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let whole = gzip(&idx_bytes(&[3, 4, 4], &[7; 48]));
        let path = dir.path().join("cut.gz");
        std::fs::write(&path, &whole[..whole.len() / 2]).expect("write");
        let message = read_idx(&path).unwrap_err().to_string();
        assert!(
            message.contains("gzip") && message.contains("cut.gz"),
            "{message}"
        );
    }

    #[test]
    fn wrong_magic_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("float.idx");
        let mut bytes = idx_bytes(&[2], &[0; 8]);
        bytes[2] = 0x0d; // float data
        std::fs::write(&path, bytes).expect("write");
        let message = read_idx(&path).unwrap_err().to_string();
        assert!(
            message.contains("magic") && message.contains("0x00000d01"),
            "{message}"
        );
    }

    #[test]
    fn data_length_must_match_dims() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("short.idx");
        std::fs::write(&path, idx_bytes(&[2, 3], &[0; 5])).expect("write");
        let message = read_idx(&path).unwrap_err().to_string();
        assert!(message.contains("need 6"), "{message}");

        let path = dir.path().join("header.idx");
        std::fs::write(&path, [0, 0, UBYTE, 3, 0, 0]).expect("write");
        assert!(
            read_idx(&path)
                .unwrap_err()
                .to_string()
                .contains("cut short")
        );
    }

    #[test]
    fn count_mismatch_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_split(dir.path(), 3, &[0, 1]);
        let message = load(IdxDataset::Mnist, dir.path(), Split::Test)
            .unwrap_err()
            .to_string();
        assert!(message.contains("2 labels for 3 images"), "{message}");
    }

    #[test]
    fn label_out_of_range_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_split(dir.path(), 2, &[0, 10]);
        let message = load(IdxDataset::FashionMnist, dir.path(), Split::Test)
            .unwrap_err()
            .to_string();
        assert!(message.contains("label 10 of sample 1"), "{message}");
    }
}
