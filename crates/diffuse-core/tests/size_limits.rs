//! Configs that ask for the impossible are refused with an error naming the field, before
//! anything is allocated (issue 21: a `sample_size` of 10⁹ used to abort on allocation).

use std::path::Path;

use burn::tensor::Device;
use diffuse_core::config::DiffusersConfig;
use diffuse_core::nn::dit::{DiTConfig, DiTTransformer2DModel};
use diffuse_core::nn::network::Architecture;
use diffuse_core::nn::unet::{UNet2DConfig, UNet2DModel};
use diffuse_core::pipeline::DiffusionPipeline;
use serde_json::{Value, json};

const UNET_PIPELINE: &str = "tests/fixtures/trained/unet-tiny-mnist";
const DIT_CONFIG: &str = "tests/fixtures/trained/dit-mnist/transformer/config.json";

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The message of an error that `result` must be.
fn error_of<T>(result: diffuse_core::Result<T>) -> String {
    match result {
        Ok(_) => panic!("the config was accepted"),
        Err(e) => e.to_string(),
    }
}

/// `config` with each `(field, value)` set, as config.json text.
fn with_fields(mut config: Value, fields: &[(&str, Value)]) -> String {
    for (field, value) in fields {
        config[*field] = value.clone();
    }
    config.to_string()
}

/// The error building a U-Net from the fixture's config with `fields` changed.
fn unet_error(fields: &[(&str, Value)]) -> String {
    let base = json_file(&Path::new(UNET_PIPELINE).join("unet/config.json"));
    let text = with_fields(base, fields);
    let built = UNet2DConfig::from_json(&text)
        .and_then(|config| UNet2DModel::new_within_limits(&config, &Device::default()));
    error_of(built)
}

/// The error building a DiT from the fixture's config with `fields` changed.
fn dit_error(fields: &[(&str, Value)]) -> String {
    let text = with_fields(json_file(Path::new(DIT_CONFIG)), fields);
    let built = DiTConfig::from_json(&text)
        .and_then(|config| DiTTransformer2DModel::new_within_limits(&config, &Device::default()));
    error_of(built)
}

#[test]
fn oversized_unet_configs_are_refused_naming_the_field() {
    let err = unet_error(&[("sample_size", json!(1_000_000_000))]);
    assert!(err.contains("`sample_size` = 1000000000"), "{err}");
    let err = unet_error(&[("sample_size", json!([1 << 20, 1 << 20]))]);
    assert!(err.contains("values are more than"), "{err}");
    let err = unet_error(&[("block_out_channels", json!([5_000_000, 5_000_000]))]);
    assert!(err.contains("`block_out_channels[0]` = 5000000"), "{err}");
    let err = unet_error(&[("layers_per_block", json!(100_000))]);
    assert!(err.contains("`layers_per_block` = 100000"), "{err}");
    // Widths within the integer limit whose weights would need terabytes: counted, not allocated.
    let err = unet_error(&[("block_out_channels", json!([1 << 20, 1 << 20]))]);
    assert!(err.contains("parameters are more than"), "{err}");
}

#[test]
fn oversized_dit_configs_are_refused_naming_the_field() {
    let err = dit_error(&[("num_layers", json!(10_000))]);
    assert!(err.contains("`num_layers` = 10000"), "{err}");
    let err = dit_error(&[
        ("num_attention_heads", json!(1 << 20)),
        ("attention_head_dim", json!(1 << 20)),
    ]);
    assert!(
        err.contains("num_attention_heads × attention_head_dim"),
        "{err}"
    );
    let err = dit_error(&[("sample_size", json!(7 << 14))]);
    assert!(err.contains("values are more than"), "{err}");
}

#[test]
fn a_pipeline_folder_with_an_oversized_config_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
    ] {
        let to = dir.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(Path::new(UNET_PIPELINE).join(file), &to).unwrap();
    }
    let config_path = dir.path().join("unet/config.json");
    let text = with_fields(
        json_file(&config_path),
        &[("sample_size", json!(1_000_000_000))],
    );
    std::fs::write(&config_path, text).unwrap();
    let err = error_of(DiffusionPipeline::load(dir.path(), &Device::default()));
    assert!(err.contains("sample_size"), "{err}");
    assert!(err.contains("config.json"), "{err}");
}

/// The error building an autoencoder from a fixture's config with `fields` changed.
fn autoencoder_error(fields: &[(&str, Value)]) -> String {
    use diffuse_core::nn::autoencoder::{AutoencoderKL, AutoencoderKLConfig};
    let path = Path::new("tests/fixtures/autoencoder/rgb_quant_attn/vae/config.json");
    let text = with_fields(json_file(path), fields);
    let built = AutoencoderKLConfig::from_json(&text)
        .and_then(|config| AutoencoderKL::new(&config, &Device::default()));
    error_of(built)
}

#[test]
fn oversized_autoencoder_configs_are_refused_naming_the_field() {
    let err = autoencoder_error(&[("sample_size", json!(1_000_000_000))]);
    assert!(err.contains("`sample_size` = 1000000000"), "{err}");
    let err = autoencoder_error(&[("sample_size", json!(1 << 20))]);
    assert!(err.contains("values are more than"), "{err}");
    let err = autoencoder_error(&[("block_out_channels", json!([200_000, 200_000]))]);
    assert!(err.contains("parameters"), "{err}");
    let err = autoencoder_error(&[("norm_num_groups", json!(0))]);
    assert!(err.contains("norm_num_groups"), "{err}");
    let err = autoencoder_error(&[("scaling_factor", json!(-1.0))]);
    assert!(err.contains("scaling_factor"), "{err}");
    let err = autoencoder_error(&[("latent_channels", json!(0))]);
    assert!(err.contains("latent_channels"), "{err}");
}
