//! Sample-quality metrics: golden values from the reference formulas, and the built-in
//! Fashion-MNIST classifier's feature space behaving as a metric space of data should.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use diffuse_core::classifier::builtin::builtin_classifier;
use diffuse_core::data::idx::{self, IdxDataset};
use diffuse_core::data::{Dataset, Split};
use diffuse_core::eval::{
    FeatureNetwork, FeatureSet, GaussianStats, ImageReference, evaluate_images, frechet_distance,
    kernel_inception_distance, precision_recall,
};
use serde_json::Value;

fn fashion_mnist(split: Split, n: usize) -> Dataset {
    let dir: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/fashion-mnist");
    let all = idx::load(IdxDataset::FashionMnist, &dir, split).unwrap();
    all.subset(&(0..n).collect::<Vec<_>>()).unwrap()
}

fn feature_set(case: &Value, key: &str) -> FeatureSet {
    let values = case[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    FeatureSet::new(values, case["dim"].as_u64().unwrap() as usize).unwrap()
}

fn relative_error(ours: f64, reference: f64) -> f64 {
    (ours - reference).abs() / reference.abs().max(1e-12)
}

/// tools/reference/eval_fixtures.py: pytorch-fid's FD, Bińkowski et al.'s unbiased polynomial
/// MMD² and Kynkäänniemi et al.'s precision/recall on the same random features.
#[test]
fn metrics_match_the_reference_implementations() {
    let case: Value =
        serde_json::from_str(include_str!("fixtures/eval.json")).expect("eval.json parses");
    let (a, b) = (feature_set(&case, "a"), feature_set(&case, "b"));
    let fd = frechet_distance(
        &GaussianStats::fit(&a).unwrap(),
        &GaussianStats::fit(&b).unwrap(),
    )
    .unwrap();
    // scipy's sqrtm works in float64 too; the two square roots agree to round-off.
    assert!(
        relative_error(fd, case["fd"].as_f64().unwrap()) < 1e-9,
        "fd {fd} vs {}",
        case["fd"]
    );
    // 300 samples: every subset of 300 is the whole set, so KID is the full-set MMD².
    let kid = kernel_inception_distance(&b, &a, 0).unwrap();
    assert!(
        relative_error(kid.mean, case["kid"].as_f64().unwrap()) < 1e-9 && kid.std < 1e-9,
        "kid {kid:?} vs {}",
        case["kid"]
    );
    let pr = precision_recall(&a, &b).unwrap();
    assert_eq!(pr.precision, case["precision"].as_f64().unwrap());
    assert_eq!(pr.recall, case["recall"].as_f64().unwrap());
}

#[test]
fn the_test_set_is_at_distance_zero_from_itself_and_close_to_the_train_set() {
    let device = Device::flex();
    let classifier = builtin_classifier("fashion-mnist", &device)
        .unwrap()
        .expect("a built-in Fashion-MNIST classifier");
    let network = FeatureNetwork::Classifier(&classifier);
    let test = fashion_mnist(Split::Test, 2000);
    let train = fashion_mnist(Split::Train, 2000);
    let labels = test.labels.clone().unwrap();
    let reference = ImageReference::new(network, &test, &mut |_, _| {}).unwrap();
    let itself = evaluate_images(
        network,
        &test.values,
        Some(&labels),
        &reference,
        0,
        &mut |_, _| {},
    )
    .unwrap();
    assert!(itself.fd.abs() < 1e-6, "FD(test, test) = {}", itself.fd);
    assert_eq!((itself.precision, itself.recall), (1.0, 1.0));
    // The class accuracy of real images under their true labels is the classifier's accuracy.
    let accuracy = itself.class_accuracy.unwrap();
    assert!(accuracy > 0.88, "accuracy on 2000 test images {accuracy}");

    let train_vs_test =
        evaluate_images(network, &train.values, None, &reference, 0, &mut |_, _| {}).unwrap();
    // Images that are data but not Fashion-MNIST: every test image mirrored left to right and
    // flipped upside down.
    let [_, h, w] = test.sample_shape;
    let flipped: Vec<f32> = test
        .values
        .chunks(h * w)
        .flat_map(|image| image.iter().rev().copied().collect::<Vec<_>>())
        .collect();
    let flipped_vs_test =
        evaluate_images(network, &flipped, None, &reference, 0, &mut |_, _| {}).unwrap();
    eprintln!("itself {itself:?}\ntrain/test {train_vs_test:?}\nflipped/test {flipped_vs_test:?}");
    assert!(
        train_vs_test.fd < 0.05 * flipped_vs_test.fd,
        "FD(train, test) {} is not small next to FD(flipped, test) {}",
        train_vs_test.fd,
        flipped_vs_test.fd
    );
    assert!(train_vs_test.precision > 0.85 && train_vs_test.recall > 0.85);
    assert!(
        flipped_vs_test.recall < 0.5,
        "flipped images miss much of the data"
    );
    // KID of a set against itself is not exactly zero: its random subsets overlap, and shared
    // points add k(x, x) to the cross term. It is tiny next to a real difference.
    for kid in [itself.kid, train_vs_test.kid] {
        assert!(
            kid.abs() < 0.02 * flipped_vs_test.kid,
            "KID {kid} vs {}",
            flipped_vs_test.kid
        );
    }
}

#[test]
fn bad_sample_sets_are_errors() {
    let device = Device::flex();
    let classifier = builtin_classifier("fashion-mnist", &device)
        .unwrap()
        .unwrap();
    let network = FeatureNetwork::Classifier(&classifier);
    let test = fashion_mnist(Split::Test, 50);
    let reference = ImageReference::new(network, &test, &mut |_, _| {}).unwrap();
    let empty = evaluate_images(network, &[], None, &reference, 0, &mut |_, _| {}).unwrap_err();
    assert!(empty.to_string().contains("no samples"), "{empty}");
    let ragged = evaluate_images(
        network,
        &test.values[..100],
        None,
        &reference,
        0,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(ragged.to_string().contains("no whole"), "{ragged}");
    let few = FeatureSet::new(vec![1.0; 3], 1).unwrap();
    assert!(precision_recall(&few, &few).is_err());
    assert!(GaussianStats::fit(&FeatureSet::new(vec![1.0], 1).unwrap()).is_err());
    assert!(FeatureSet::new(vec![f64::NAN, 0.0], 1).is_err());
    assert!(builtin_classifier("cifar10", &device).unwrap().is_none());
}
