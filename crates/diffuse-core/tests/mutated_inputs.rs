//! Seeded mutations of real config files and weights must be refused with an error or accepted,
//! never panic: a stable-toolchain stand-in for fuzzing the parsers (issue 21).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use burn::tensor::Device;
use diffuse_core::config::DiffusersConfig;
use diffuse_core::io::read_safetensors;
use diffuse_core::nn::dit::{DiTConfig, DiTTransformer2DModel};
use diffuse_core::nn::network::Architecture;
use diffuse_core::nn::unet::{UNet2DConfig, UNet2DModel};
use diffuse_core::pipeline::SchedulerConfig;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

const MUTATIONS: usize = 1500;

fn read_json(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A value a careless or hostile file could hold where `old` was.
fn hostile_value(rng: &mut ChaCha8Rng, old: &Value) -> Value {
    let candidates = [
        json!(0),
        json!(-1),
        json!(1),
        json!(3),
        json!(1 << 20),
        json!((1u64 << 20) + 1),
        json!(u64::MAX),
        json!(1e308),
        json!(-1e308),
        json!(0.5),
        json!(""),
        json!("silu"),
        json!(null),
        json!(true),
        json!([]),
        json!([0]),
        json!([1 << 20, 1 << 20]),
        json!({}),
    ];
    match old {
        Value::Array(items) if !items.is_empty() && rng.random_bool(0.5) => {
            let mut items = items.clone();
            let i = rng.random_range(0..items.len());
            items[i] = candidates.choose(rng).unwrap().clone();
            Value::Array(items)
        }
        _ => candidates.choose(rng).unwrap().clone(),
    }
}

/// `base` with one to three fields changed, removed or added.
fn mutate(rng: &mut ChaCha8Rng, base: &Value) -> String {
    let mut config = base.clone();
    let fields = config.as_object_mut().unwrap();
    for _ in 0..rng.random_range(1..=3) {
        let keys: Vec<String> = fields.keys().cloned().collect();
        let key = keys.choose(rng).unwrap().clone();
        match rng.random_range(0..10) {
            0 => {
                fields.remove(&key);
            }
            1 => {
                fields.insert("unexpected_field".into(), json!(1));
            }
            _ => {
                let value = hostile_value(rng, &fields[&key]);
                fields.insert(key, value);
            }
        }
    }
    config.to_string()
}

/// Runs `accept` on `MUTATIONS` mutations of `base`; a panic fails the test with the input.
fn never_panics(base: &Value, seed: u64, accept: impl Fn(&str)) -> usize {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut accepted = 0;
    for _ in 0..MUTATIONS {
        let text = mutate(&mut rng, base);
        let outcome = catch_unwind(AssertUnwindSafe(|| accept(&text)));
        assert!(outcome.is_ok(), "panicked on {text}");
        accepted += usize::from(serde_json::from_str::<Value>(&text).is_ok());
    }
    accepted
}

#[test]
fn mutated_network_configs_are_errors_not_panics() {
    let device = Device::default();
    let unet = read_json("tests/fixtures/trained/unet-tiny-mnist/unet/config.json");
    never_panics(&unet, 1, |text| {
        if let Ok(config) = UNet2DConfig::from_json(text) {
            let _ = UNet2DModel::new_within_limits(&config, &device);
        }
    });
    let dit = read_json("tests/fixtures/trained/dit-mnist/transformer/config.json");
    never_panics(&dit, 2, |text| {
        if let Ok(config) = DiTConfig::from_json(text) {
            let _ = DiTTransformer2DModel::new_within_limits(&config, &device);
        }
    });
}

#[test]
fn mutated_scheduler_configs_are_errors_not_panics() {
    let scheduler =
        read_json("tests/fixtures/trained/unet-tiny-mnist/scheduler/scheduler_config.json");
    never_panics(&scheduler, 3, |text| {
        if let Ok(config) = SchedulerConfig::from_json(text) {
            let _ = config.schedule();
        }
    });
}

#[test]
fn damaged_safetensors_files_are_errors_not_panics() {
    let original = std::fs::read(
        "tests/fixtures/trained/unet-tiny-mnist/unet/diffusion_pytorch_model.safetensors",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.safetensors");
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let header_len = 8 + u64::from_le_bytes(original[..8].try_into().unwrap()) as usize;
    for round in 0..300 {
        let mut bytes = original.clone();
        match round % 3 {
            // Flip bytes in the header (lengths, offsets, dtypes, shapes).
            0 => {
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..header_len);
                    bytes[i] = rng.random();
                }
            }
            // Truncate anywhere.
            1 => bytes.truncate(rng.random_range(0..bytes.len())),
            // Claim an absurd header length.
            _ => bytes[..8].copy_from_slice(&rng.random::<u64>().to_le_bytes()),
        }
        std::fs::write(&path, &bytes).unwrap();
        let outcome = catch_unwind(|| read_safetensors(&path).map(|t| t.len()));
        assert!(outcome.is_ok(), "panicked on damaged file (round {round})");
    }
    assert!(Path::new(&path).exists());
}
