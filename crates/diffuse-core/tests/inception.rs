//! FID's Inception-v3 against pytorch-fid's own network (tools/reference/inception_fixtures.py):
//! the same pseudo-random weights and inputs, rebuilt here from the fixture script's hash, through
//! the loader real weights take.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use burn::tensor::Device;
use common::{fixture, floats, usizes};
use diffuse_core::data::{DataKind, Dataset};
use diffuse_core::eval::{FeatureNetwork, ImageReference, InceptionV3};
use diffuse_core::io::{HostTensor, write_safetensors};
use diffuse_core::tensor_ops::relative_max_error;
use serde_json::Value;

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// FNV-1a, 64 bits, of `name`: the seed of its stream (as the fixture script's `fnv1a`).
fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, byte| {
        (h ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// splitmix64's output function.
fn splitmix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The script's `random_tensor`: u_i ∈ [0, 1) from splitmix64(seed + (i + 1)·γ), scaled by the
/// tensor's role, computed in f64 and rounded to f32.
fn random_tensor(name: &str, shape: &[usize]) -> HostTensor {
    let count: usize = shape.iter().product();
    let seed = fnv1a(name);
    let scale: Box<dyn Fn(f64) -> f64> = if name.ends_with(".conv.weight") {
        let bound = (6.0 / (count / shape[0]) as f64).sqrt();
        Box::new(move |u| (2.0 * u - 1.0) * bound)
    } else if name.ends_with(".bn.weight") {
        Box::new(|u| 0.8 + 0.4 * u)
    } else if name.ends_with(".bn.running_var") {
        Box::new(|u| 0.5 + u)
    } else if name.ends_with(".bn.bias") || name.ends_with(".bn.running_mean") {
        Box::new(|u| 0.1 * (2.0 * u - 1.0))
    } else {
        Box::new(|u| 2.0 * u - 1.0)
    };
    let values = (1..=count as u64)
        .map(|i| {
            let z = splitmix64(seed.wrapping_add(i.wrapping_mul(GAMMA)));
            scale((z >> 11) as f64 * 2f64.powi(-53)) as f32
        })
        .collect();
    HostTensor {
        shape: shape.to_vec(),
        values,
    }
}

/// Every tensor the converted file of the fixture's random weights holds.
fn random_weights() -> &'static [(String, HostTensor)] {
    static WEIGHTS: OnceLock<Vec<(String, HostTensor)>> = OnceLock::new();
    WEIGHTS.get_or_init(|| {
        fixture("inception.json")["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let name = t["name"].as_str().unwrap().to_string();
                let tensor = random_tensor(&name, &usizes(&t["shape"]));
                (name, tensor)
            })
            .collect()
    })
}

fn write_weights(path: &Path, tensors: &[&(String, HostTensor)]) {
    let named: Vec<(&str, &HostTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_safetensors(path, &named).unwrap();
}

/// The network with the fixture's random weights, loaded from a safetensors file.
fn random_inception() -> &'static InceptionV3 {
    static NETWORK: OnceLock<InceptionV3> = OnceLock::new();
    NETWORK.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inception.safetensors");
        write_weights(&path, &random_weights().iter().collect::<Vec<_>>());
        InceptionV3::load(&path, &Device::flex()).unwrap()
    })
}

fn input_shape(input: &Value) -> ([usize; 3], usize) {
    let shape = usizes(&input["shape"]);
    ([shape[1], shape[2], shape[3]], shape[0])
}

#[test]
fn the_weight_and_input_hash_matches_the_fixture_script() {
    let spot = fixture("inception.json")["spot_checks"].clone();
    for (name, expected) in spot.as_object().unwrap() {
        let expected = floats(expected);
        let shape = match random_weights().iter().find(|(n, _)| n == name) {
            Some((_, tensor)) => tensor.shape.clone(),
            None => vec![expected.len()],
        };
        // The fixture holds float32 values; JSON parsing may miss their f64 image by an ulp.
        let expected: Vec<f32> = expected.iter().map(|&v| v as f32).collect();
        assert_eq!(
            random_tensor(name, &shape).values[..expected.len()],
            expected,
            "{name}"
        );
    }
}

/// Tolerance: relative to the largest feature, in float32 through 94 convolutions at 299×299.
/// The reference is pytorch-fid in float64; its float32 run's own error is `float32_error`.
#[test]
fn pool3_features_match_pytorch_fid() {
    let case = fixture("inception.json");
    let network = random_inception();
    for input in case["inputs"].as_array().unwrap() {
        let name = input["name"].as_str().unwrap();
        let (shape, count) = input_shape(input);
        let images = random_tensor(name, &[count, shape[0], shape[1], shape[2]]).values;
        let mut reported = Vec::new();
        let ours = network
            .features(&images, shape, &mut |done, total| {
                reported.push((done, total))
            })
            .unwrap();
        let expected: Vec<f64> = input["features"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(floats)
            .collect();
        let max_abs = ours
            .values()
            .iter()
            .zip(&expected)
            .fold(0.0_f64, |m, (a, b)| m.max((a - b).abs()));
        let relative = relative_max_error(ours.values(), &expected);
        println!(
            "{name} {shape:?}: max abs error {max_abs:.3e}, relative {relative:.3e} (pytorch-fid \
             float32: {:.3e})",
            input["float32_error"].as_f64().unwrap()
        );
        assert_eq!((ours.len(), ours.dim()), (count, 2048));
        assert_eq!(reported, vec![(count, count)]);
        assert!(relative < 1e-4, "{name}: relative error {relative:.3e}");
    }
}

/// The evaluation's reference side in Inception space (FD itself is left out: a 2048 × 2048
/// eigendecomposition takes minutes in an unoptimised test build).
#[test]
fn reference_sets_are_described_in_inception_space() {
    let network = random_inception();
    let shape = [3, 32, 32];
    let images = random_tensor("input/rgb", &[5, 3, 32, 32]).values;
    let data = Dataset::new(shape, images.clone(), None, vec![], DataKind::Images).unwrap();
    let features = FeatureNetwork::Inception {
        network,
        classifier: None,
    };
    let mut reported = Vec::new();
    let reference = ImageReference::new(features, &data, &mut |done, total| {
        reported.push((done, total))
    })
    .unwrap();
    assert_eq!((reference.len(), reported), (5, vec![(5, 5)]));

    let two_channels = network
        .features(&images[..2 * 32 * 32], [2, 32, 32], &mut |_, _| {})
        .unwrap_err();
    assert!(
        two_channels.to_string().contains("grayscale or RGB"),
        "{two_channels}"
    );
    let ragged = network
        .features(&images[..100], shape, &mut |_, _| {})
        .unwrap_err();
    assert!(ragged.to_string().contains("no whole"), "{ragged}");
}

#[test]
fn a_wrong_weights_file_is_an_error_that_names_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let weights = random_weights();
    // Named as in the file: pytorch-fid's capitals, and BatchNorm's `weight` (burn's γ).
    let missing = [
        "Mixed_6c.branch7x7_2.conv.weight",
        "Mixed_7c.branch_pool.bn.weight",
    ];
    let path = dir.path().join("missing.safetensors");
    let kept: Vec<_> = weights
        .iter()
        .filter(|(n, _)| !missing.contains(&n.as_str()))
        .collect();
    write_weights(&path, &kept);
    let err = InceptionV3::load(&path, &device).unwrap_err().to_string();
    assert!(
        err.contains(&format!("missing tensors: {}", missing.join(", "))),
        "{err}"
    );

    // torchvision's Inception, or an unconverted classifier head, has tensors we do not use.
    let extra = (
        "fc.weight".to_string(),
        random_tensor("fc.weight", &[1008, 2048]),
    );
    let path = dir.path().join("extra.safetensors");
    write_weights(&path, &weights.iter().chain([&extra]).collect::<Vec<_>>());
    let err = InceptionV3::load(&path, &device).unwrap_err().to_string();
    assert!(
        err.contains("unexpected") && err.contains("fc.weight"),
        "{err}"
    );

    let reshaped: Vec<_> = weights
        .iter()
        .map(|(name, tensor)| match name.as_str() {
            "Conv2d_1a_3x3.conv.weight" => (name.clone(), random_tensor(name, &[32, 1, 3, 3])),
            _ => (name.clone(), tensor.clone()),
        })
        .collect();
    let path = dir.path().join("reshaped.safetensors");
    write_weights(&path, &reshaped.iter().collect::<Vec<_>>());
    let err = InceptionV3::load(&path, &device).unwrap_err().to_string();
    assert!(err.contains("conv2d_1a_3x3.conv.weight"), "{err}");

    let absent = dir.path().join("absent.safetensors");
    let err = InceptionV3::load(&absent, &device).unwrap_err().to_string();
    assert!(err.contains("absent.safetensors"), "{err}");
}
