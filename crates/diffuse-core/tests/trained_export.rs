//! Pipelines exported by `diffuse train` as diffusers sees them: fixtures from
//! tools/reference/trained_fixtures.py hold a trained folder and diffusers' forward output on it.

mod common;

use std::path::PathBuf;

use burn::tensor::{DType, Device};
use diffuse_core::io::read_safetensors;
use diffuse_core::pipeline::DiffusionPipeline;
use diffuse_core::tensor_ops::{from_host_f64, relative_max_error, to_host_f64};

fn case(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/trained")
        .join(name)
}

/// diffusers computed `out` from the folder's weights in float32; ours must agree to float32
/// accumulation error (bound: 1e-5 relative to the output's max-norm).
fn forward_matches_diffusers(name: &str) {
    let dir = case(name);
    let device = Device::flex();
    let pipeline = DiffusionPipeline::load(&dir, &device).unwrap();
    let io = read_safetensors(&dir.join("io.safetensors")).unwrap();
    let as_f64 = |key: &str| {
        io[key]
            .values
            .iter()
            .map(|&v| f64::from(v))
            .collect::<Vec<_>>()
    };
    let x = from_host_f64(as_f64("x"), [3, 1, 28, 28], &device, DType::F32);
    let labels: Vec<usize> = as_f64("class_labels").iter().map(|&v| v as usize).collect();
    let out = pipeline
        .network
        .forward(x, &as_f64("timesteps"), Some(&labels))
        .unwrap();
    let error = relative_max_error(&to_host_f64(out).unwrap(), &as_f64("out"));
    eprintln!("{name}: relative error vs diffusers {error:.2e}");
    assert!(error <= 1e-5, "{name}: {error}");
}

#[test]
fn a_trained_unet_folder_computes_what_diffusers_computes() {
    forward_matches_diffusers("unet-tiny-mnist");
}

#[test]
fn a_trained_dit_folder_computes_what_diffusers_computes() {
    forward_matches_diffusers("dit-mnist");
}

/// Every file under `dir`, relative to it, with its bytes.
fn files_of(dir: &std::path::Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.push((path.strip_prefix(dir).unwrap().to_path_buf(), bytes));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_same_weights_and_images_give_the_same_bytes() {
    let pipeline = DiffusionPipeline::load(&case("unet-tiny-mnist"), &Device::flex()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let images: Vec<f64> = (0..4 * 28 * 28).map(|i| (i as f64 * 0.37).sin()).collect();
    let curve: Vec<(f64, f64)> = (1..50).map(|s| (s as f64, 1.0 / s as f64)).collect();
    for run in ["a", "b"] {
        let dir = tmp.path().join(run);
        pipeline.save(&dir.join("pipeline")).unwrap();
        diffuse_core::plot::image_grid_png(&dir.join("grid.png"), &images, [4, 1, 28, 28], 2)
            .unwrap();
        diffuse_core::plot::loss_curve_png(&dir.join("loss.png"), &curve).unwrap();
    }
    let (a, b) = (
        files_of(&tmp.path().join("a")),
        files_of(&tmp.path().join("b")),
    );
    assert_eq!(
        a.len(),
        6,
        "{:?}",
        a.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for ((path, bytes), (_, other)) in a.iter().zip(&b) {
        assert!(
            bytes == other,
            "{} differs between two saves",
            path.display()
        );
    }
}
