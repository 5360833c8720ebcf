//! The noise-aware classifier: it learns MNIST, reloads exactly, its guidance gradient matches
//! finite differences, runs are reproducible, and bad input is an error, never a panic.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, Tensor};
use diffuse_core::classifier::{
    ClassifierConfig, ClassifierData, ClassifierSchedule, ClassifierTrainSettings,
    NoiseAwareClassifier, log_prob_gradient, train_classifier,
};
use diffuse_core::data::idx::{self, IdxDataset};
use diffuse_core::data::{Dataset, Split};
use diffuse_core::tensor_ops::{from_host_f64, to_host_f64};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn mnist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mnist")
}

/// The first `n` images of an MNIST split.
fn mnist(split: Split, n: usize) -> Dataset {
    let all = idx::load(IdxDataset::Mnist, &mnist_dir(), split).unwrap();
    all.subset(&(0..n).collect::<Vec<_>>()).unwrap()
}

/// A tiny random classifier of 3-class 1×8×8 images over a 100-step schedule.
fn tiny_config() -> ClassifierConfig {
    ClassifierConfig {
        block_out_channels: vec![8, 16],
        ..ClassifierConfig::for_data(
            [1, 8, 8],
            vec!["a".into(), "b".into(), "c".into()],
            "tiny",
            ClassifierSchedule::new("linear", 100, (1e-4, 0.02)).unwrap(),
        )
    }
}

fn random_images(shape: [usize; 4], seed: u64, dtype: DType) -> Tensor<4> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values = (0..shape.iter().product())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    from_host_f64(values, shape, &Device::flex(), dtype)
}

/// Every float parameter converted to `dtype`.
struct Cast(DType);

impl ModuleMapper for Cast {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.cast(self.0), mapper)
    }
}

fn small_run(out: &Path, steps: usize) -> ClassifierTrainSettings {
    ClassifierTrainSettings {
        dataset: "mnist".into(),
        out: out.to_path_buf(),
        steps: Some(steps),
        batch_size: 32,
        learning_rate: 5e-3,
        noisy_fraction: 0.5,
        block_out_channels: vec![16, 32],
        eval_timesteps: Some(vec![0, 500]),
        seed: 1,
        ..ClassifierTrainSettings::default()
    }
}

#[test]
fn a_small_classifier_learns_mnist_far_above_chance() {
    let dir = tempfile::tempdir().unwrap();
    let data =
        ClassifierData::new(mnist(Split::Train, 4000), mnist(Split::Test, 500), "test").unwrap();
    let summary = train_classifier(
        &small_run(dir.path(), 300),
        data,
        &Device::flex(),
        &mut (),
        &AtomicBool::new(false),
    )
    .unwrap();
    let clean = summary.clean_accuracy().unwrap();
    let noisy = summary.accuracy[1].accuracy;
    println!("clean accuracy {clean}, at t = 500 {noisy}");
    // Measured: 0.792 clean, 0.276 at t = 500 (chance 0.1). The bounds keep half of each gain
    // over chance.
    assert!(clean > 0.45, "clean accuracy {clean}");
    assert!(noisy > 0.19, "accuracy at t = 500: {noisy}");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(saved["accuracy"][0]["accuracy"].as_f64(), Some(clean));
    let reloaded = NoiseAwareClassifier::load(dir.path(), &Device::flex()).unwrap();
    assert_eq!(reloaded.config().dataset, "mnist");
    assert_eq!(reloaded.config().class_names.len(), 10);
}

#[test]
fn the_same_seed_trains_the_same_classifier() {
    let dir = tempfile::tempdir().unwrap();
    let logits = |name: &str| {
        let data =
            ClassifierData::new(mnist(Split::Train, 256), mnist(Split::Test, 16), "test").unwrap();
        let settings = ClassifierTrainSettings {
            eval_timesteps: Some(vec![0]),
            ..small_run(&dir.path().join(name), 4)
        };
        let device = Device::flex();
        train_classifier(&settings, data, &device, &mut (), &AtomicBool::new(false)).unwrap();
        let model = NoiseAwareClassifier::load(&settings.out, &device).unwrap();
        let x = random_images([3, 1, 28, 28], 5, DType::F32);
        to_host_f64(model.forward(x, &[0.0, 300.0, 999.0]).unwrap()).unwrap()
    };
    assert_eq!(logits("a"), logits("b"));
}

#[test]
fn a_saved_classifier_reloads_with_identical_logits_and_features() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let model = NoiseAwareClassifier::new(&tiny_config(), &device).unwrap();
    model.save(dir.path()).unwrap();
    let again = NoiseAwareClassifier::load(dir.path(), &device).unwrap();
    assert_eq!(again.config(), model.config());
    let x = || random_images([2, 1, 8, 8], 1, DType::F32);
    let t = [0.0, 73.0];
    let host = |m: &NoiseAwareClassifier| {
        (
            to_host_f64(m.forward(x(), &t).unwrap()).unwrap(),
            to_host_f64(m.features(x(), &t).unwrap()).unwrap(),
        )
    };
    let (logits, features) = host(&model);
    assert_eq!((logits.len(), features.len()), (2 * 3, 2 * 16));
    assert_eq!(host(&again), (logits, features));
}

#[test]
fn the_log_prob_gradient_matches_central_differences() {
    // In f64 (flex computes convolutions in f64 too), central differences with h = 1e-4 are
    // accurate to ~1e-8 relative, so any real error in the gradient shows far above 1e-5.
    let device = Device::flex();
    let model = NoiseAwareClassifier::new(&tiny_config(), &device)
        .unwrap()
        .map(&mut Cast(DType::F64));
    let shape = [2, 1, 8, 8];
    let x = to_host_f64(random_images(shape, 2, DType::F64)).unwrap();
    let (timesteps, labels) = ([3.0, 60.0], [2, 0]);
    let grad = log_prob_gradient(
        &model,
        from_host_f64(x.clone(), shape, &device, DType::F64),
        &timesteps,
        &labels,
    )
    .unwrap();
    assert!(!grad.is_autodiff());
    assert_eq!((grad.dims(), grad.dtype()), (shape, DType::F64));
    let grad = to_host_f64(grad).unwrap();

    // Σ_i log p(y_i | x_i, t_i), on the host.
    let log_prob = |values: Vec<f64>| -> f64 {
        let logits = model
            .forward(
                from_host_f64(values, shape, &device, DType::F64),
                &timesteps,
            )
            .unwrap();
        let logits = to_host_f64(logits).unwrap();
        logits
            .chunks(3)
            .zip(labels)
            .map(|(row, y)| {
                let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
                let log_sum = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                row[y] - log_sum
            })
            .sum()
    };
    let scale = grad.iter().fold(0.0_f64, |m, g| m.max(g.abs()));
    assert!(scale > 1e-3, "the gradient is (nearly) zero: {scale}");
    let h = 1e-4;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..24 {
        let i = rng.random_range(0..x.len());
        let (mut plus, mut minus) = (x.clone(), x.clone());
        plus[i] += h;
        minus[i] -= h;
        let numeric = (log_prob(plus) - log_prob(minus)) / (2.0 * h);
        assert!(
            (grad[i] - numeric).abs() <= 1e-5 * scale,
            "coordinate {i}: autodiff {} vs central difference {numeric}",
            grad[i]
        );
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let device = Device::flex();
    let model = NoiseAwareClassifier::new(&tiny_config(), &device).unwrap();
    let images = |shape| random_images(shape, 0, DType::F32);
    let message = |r: diffuse_core::Result<Tensor<2>>| r.unwrap_err().to_string();
    let wrong_size = message(model.forward(images([1, 1, 9, 9]), &[0.0]));
    assert!(wrong_size.contains("[B, 1, 8, 8]"), "{wrong_size}");
    assert!(model.forward(images([1, 3, 8, 8]), &[0.0]).is_err());
    assert!(model.features(images([2, 1, 8, 8]), &[0.0]).is_err());
    let late = message(model.forward(images([1, 1, 8, 8]), &[100.0]));
    assert!(late.contains("0..=99"), "{late}");
    assert!(model.forward(images([1, 1, 8, 8]), &[f64::NAN]).is_err());
    let out_of_range = log_prob_gradient(&model, images([2, 1, 8, 8]), &[0.0, 1.0], &[0, 3]);
    assert!(out_of_range.unwrap_err().to_string().contains("label 3"));
    assert!(log_prob_gradient(&model, images([2, 1, 8, 8]), &[0.0, 1.0], &[0]).is_err());
    assert!(log_prob_gradient(&model, images([2, 1, 9, 8]), &[0.0, 1.0], &[0, 1]).is_err());

    let dir = tempfile::tempdir().unwrap();
    let missing = NoiseAwareClassifier::load(&dir.path().join("nope"), &device).unwrap_err();
    assert!(missing.to_string().contains("nope"), "{missing}");
    model.save(dir.path()).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"not safetensors").unwrap();
    assert!(NoiseAwareClassifier::load(dir.path(), &device).is_err());
    std::fs::write(dir.path().join("config.json"), b"{\"in_channels\": 1}").unwrap();
    let corrupt = NoiseAwareClassifier::load(dir.path(), &device).unwrap_err();
    assert!(corrupt.to_string().contains("config.json"), "{corrupt}");

    // Training refuses a folder that holds a classifier, vector data and bad settings, before
    // any step.
    let data = ClassifierData::new(mnist(Split::Train, 64), mnist(Split::Test, 8), "test").unwrap();
    let train = |settings: &ClassifierTrainSettings| {
        train_classifier(
            settings,
            data.clone(),
            &device,
            &mut (),
            &AtomicBool::new(false),
        )
    };
    let taken = train(&small_run(dir.path(), 1)).unwrap_err();
    assert!(taken.to_string().contains("already holds"), "{taken}");
    let fresh = dir.path().join("fresh");
    for bad in [
        ClassifierTrainSettings {
            noisy_fraction: 1.5,
            ..small_run(&fresh, 1)
        },
        ClassifierTrainSettings {
            eval_timesteps: Some(vec![1000]),
            ..small_run(&fresh, 1)
        },
        ClassifierTrainSettings {
            block_out_channels: vec![12],
            ..small_run(&fresh, 1)
        },
    ] {
        assert!(train(&bad).is_err(), "{bad:?}");
    }
    let vectors = ClassifierData::load(&ClassifierTrainSettings {
        dataset: "toy:moons".into(),
        ..small_run(&fresh, 1)
    })
    .unwrap_err();
    assert!(vectors.to_string().contains("vector data"), "{vectors}");
    let no_data = ClassifierData::load(&ClassifierTrainSettings {
        data_dir: Some("/nonexistent/mnist".into()),
        ..small_run(&fresh, 1)
    })
    .unwrap_err();
    assert!(
        no_data.to_string().contains("/nonexistent/mnist"),
        "{no_data}"
    );
}
