//! Initialisation parity with PyTorch: every parameter of a fresh network is drawn from the same
//! distribution as the PyTorch module it mirrors. tools/reference/init_moments_fixtures.py pooled
//! each parameter's values over 32 fresh PyTorch builds (count, mean, std, fourth central moment);
//! `diffuse` builds 32 networks from the same config.json and pools its own. Constant parameters
//! (norm scales and shifts) must be the same constant; random ones must agree in mean and standard
//! deviation within 5 standard errors of the difference of two independent samples.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use diffuse_core::classifier::model::WEIGHTS_FILE;
use diffuse_core::classifier::{ClassifierConfig, NoiseAwareClassifier};
use diffuse_core::io::read_safetensors;
use diffuse_core::train::ModelConfig;
use diffuse_core::train::plumbing::seeded_init;
use serde::Deserialize;

const SEEDS: u64 = 32;
/// Standard errors of the difference allowed: over ~370 parameters × 2 statistics a correct
/// initialisation exceeds it with probability below 1e-3.
const Z_LIMIT: f64 = 5.0;

#[derive(Deserialize)]
struct Moments {
    count: usize,
    mean: f64,
    std: f64,
    fourth_moment: f64,
}

impl Moments {
    fn of(values: &[f64]) -> Self {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let central = |p: i32| values.iter().map(|v| (v - mean).powi(p)).sum::<f64>() / n;
        Self {
            count: values.len(),
            mean,
            std: central(2).sqrt(),
            fourth_moment: central(4),
        }
    }

    /// Variance of the sample mean.
    fn mean_variance(&self) -> f64 {
        self.std.powi(2) / self.count as f64
    }

    /// Variance of the sample standard deviation (delta method: Var s² = (μ₄ − σ⁴)/n).
    fn std_variance(&self) -> f64 {
        let sigma2 = self.std.powi(2);
        (self.fourth_moment - sigma2 * sigma2) / self.count as f64 / (4.0 * sigma2)
    }
}

fn fixtures(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/init_moments")
        .join(case)
}

/// Each parameter's values over `SEEDS` networks that `save(seed, dir)` builds and writes into
/// `dir`, returning the weights file.
fn pooled(save: impl Fn(u64, &Path) -> PathBuf) -> BTreeMap<String, Moments> {
    let mut values: HashMap<String, Vec<f64>> = HashMap::new();
    for seed in 0..SEEDS {
        let dir = tempfile::tempdir().unwrap();
        let weights = save(seed, dir.path());
        for (name, tensor) in read_safetensors(&weights).unwrap() {
            let pool = values.entry(name).or_default();
            pool.extend(tensor.values.iter().map(|&v| f64::from(v)));
        }
    }
    values
        .into_iter()
        .map(|(name, v)| (name, Moments::of(&v)))
        .collect()
}

fn z_score(ours: f64, theirs: f64, variance: f64) -> f64 {
    (ours - theirs).abs() / variance.sqrt()
}

/// Compares every parameter and prints the worst z-scores.
fn compare(case: &str, ours: &BTreeMap<String, Moments>) {
    let text = std::fs::read_to_string(fixtures(case).join("moments.json")).unwrap();
    let theirs: BTreeMap<String, Moments> = serde_json::from_str(&text).unwrap();
    let names = |m: &BTreeMap<String, Moments>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(ours),
        names(&theirs),
        "{case}: parameter names differ"
    );
    let (mut worst_mean, mut worst_std) = (0.0f64, 0.0f64);
    for (name, t) in &theirs {
        let o = &ours[name];
        assert_eq!(o.count, t.count, "{case} {name}: element count");
        if t.std == 0.0 {
            assert!(
                o.std == 0.0 && o.mean == t.mean,
                "{case} {name}: constant {} expected, \
                 got mean {} std {}",
                t.mean,
                o.mean,
                o.std
            );
            continue;
        }
        // Under the hypothesis of one distribution, our higher moments stand for both samples.
        let z_mean = z_score(o.mean, t.mean, o.mean_variance() + t.mean_variance());
        let z_std = z_score(o.std, t.std, 2.0 * o.std_variance());
        assert!(
            z_mean <= Z_LIMIT && z_std <= Z_LIMIT,
            "{case} {name}: mean {:.5} vs PyTorch {:.5} (z {z_mean:.1}), std {:.5} vs {:.5} \
             (z {z_std:.1})",
            o.mean,
            t.mean,
            o.std,
            t.std
        );
        worst_mean = worst_mean.max(z_mean);
        worst_std = worst_std.max(z_std);
    }
    println!(
        "{case}: {} parameters, worst z mean {worst_mean:.2}, std {worst_std:.2}",
        theirs.len()
    );
}

fn denoiser_matches_pytorch(case: &str) {
    let device = Device::default();
    let config = ModelConfig::from_file(&fixtures(case).join("config.json")).unwrap();
    let ours = pooled(|seed, dir| {
        let network = seeded_init(&device, seed, |d| config.build(d)).unwrap();
        // A pipeline folder: the component folder (unet/, transformer/, mlp/) inside `dir`.
        network.save(dir).unwrap();
        dir.join(network.component())
            .join("diffusion_pytorch_model.safetensors")
    });
    compare(case, &ours);
}

#[test]
fn unet_initialises_as_diffusers() {
    denoiser_matches_pytorch("unet");
}

#[test]
fn dit_initialises_as_diffusers() {
    denoiser_matches_pytorch("dit");
}

#[test]
fn mlp_initialises_as_its_pytorch_layers() {
    denoiser_matches_pytorch("mlp");
}

#[test]
fn classifier_initialises_as_its_pytorch_layers() {
    let device = Device::default();
    let text = std::fs::read_to_string(fixtures("classifier").join("config.json")).unwrap();
    let config: ClassifierConfig = serde_json::from_str(&text).unwrap();
    let ours = pooled(|seed, dir| {
        let network =
            seeded_init(&device, seed, |d| NoiseAwareClassifier::new(&config, d)).unwrap();
        network.save(dir).unwrap();
        dir.join(WEIGHTS_FILE)
    });
    compare("classifier", &ours);
}
