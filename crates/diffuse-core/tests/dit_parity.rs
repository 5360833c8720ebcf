//! The DiT against diffusers 0.42's `DiTTransformer2DModel` on two small random configs (fixtures:
//! tools/reference/dit_fixtures.py): one forward pass (relative max-norm error ≤ 1e-4 in f32) and a
//! 20-step DDIM run from the same initial noise (≤ 1e-3); and a save/load round trip.

use std::collections::HashMap;
use std::path::PathBuf;

use burn::tensor::{DType, Device, Tensor};
use diffuse_core::io::{HostTensor, read_safetensors};
use diffuse_core::nn::dit::DiTTransformer2DModel;
use diffuse_core::nn::network::{Architecture, DenoisingNetwork};
use diffuse_core::noise::SeededNoise;
use diffuse_core::pipeline::{DiffusionPipeline, SchedulerConfig};
use diffuse_core::process::forward::PredictionType;
use diffuse_core::process::schedule::{BetaSchedule, NoiseSchedule, TimestepSpacing};
use diffuse_core::sampling::{DdimOptions, SamplerKind, SamplingPlan, sample};
use diffuse_core::tensor_ops::{from_host_f64, relative_max_error, to_host_f64};

const CONFIGS: [&str; 2] = ["class_conditional", "learned_sigma"];

fn fixture(name: &str) -> (PathBuf, HashMap<String, HostTensor>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dit")
        .join(name);
    let io = read_safetensors(&dir.join("io.safetensors")).unwrap();
    (dir, io)
}

fn tensor4(t: &HostTensor) -> Tensor<4> {
    let shape: [usize; 4] = t.shape.clone().try_into().expect("rank-4 tensor");
    from_host_f64(host(t), shape, &Device::flex(), DType::F32)
}

fn host(t: &HostTensor) -> Vec<f64> {
    t.values.iter().map(|&v| v as f64).collect()
}

fn ints(t: &HostTensor) -> Vec<usize> {
    t.values.iter().map(|&v| v as usize).collect()
}

#[test]
fn forward_pass_matches_diffusers() {
    for name in CONFIGS {
        let (dir, io) = fixture(name);
        let dit = DiTTransformer2DModel::load(&dir.join("transformer"), &Device::flex()).unwrap();
        let out = dit
            .forward(
                tensor4(&io["sample"]),
                &host(&io["timesteps"]),
                &ints(&io["class_labels"]),
            )
            .unwrap();
        let err = relative_max_error(&to_host_f64(out).unwrap(), &host(&io["output"]));
        println!("{name}: forward relative error {err:.3e}");
        assert!(
            err <= 1e-4,
            "{name}: forward relative error {err:.3e} > 1e-4"
        );
    }
}

/// The scheduler the reference script sampled with: DDIMScheduler(clip_sample=False) defaults.
fn ddim_scheduler() -> SchedulerConfig {
    SchedulerConfig::from_json(
        r#"{"_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "beta_start": 0.0001,
            "beta_end": 0.02, "beta_schedule": "linear", "trained_betas": null, "clip_sample": false,
            "prediction_type": "epsilon", "timestep_spacing": "leading", "steps_offset": 0,
            "set_alpha_to_one": true}"#,
    )
    .unwrap()
}

#[test]
fn ddim_20_steps_match_diffusers_and_the_folder_round_trips() {
    let linear = BetaSchedule::Linear {
        beta_start: 1e-4,
        beta_end: 0.02,
    };
    let schedule = NoiseSchedule::new(&linear, 1000, false).unwrap();
    let ddim = SamplerKind::Ddim(DdimOptions::default());
    let plan = SamplingPlan::new(ddim, &schedule, 20, TimestepSpacing::Leading, 0).unwrap();
    for name in CONFIGS {
        let (dir, io) = fixture(name);
        let dit = DiTTransformer2DModel::load(&dir.join("transformer"), &Device::flex()).unwrap();
        let pipeline = DiffusionPipeline {
            network: DenoisingNetwork::DiT(dit),
            scheduler: ddim_scheduler(),
            vae: None,
        };
        let tmp = tempfile::tempdir().unwrap();
        pipeline.save(tmp.path()).unwrap();
        let reloaded = DiffusionPipeline::load(tmp.path(), &Device::flex()).unwrap();
        for p in [&pipeline, &reloaded] {
            let denoiser = p.denoiser().unwrap();
            assert_eq!(
                diffuse_core::denoiser::Denoiser::prediction_type(&denoiser),
                PredictionType::Epsilon
            );
            let labels = ints(&io["ddim_labels"]);
            let out = sample(
                &denoiser,
                &schedule,
                &plan,
                tensor4(&io["init_noise"]),
                Some(&labels),
                &mut SeededNoise::new(0, 0..2),
                &mut |_, _| {},
            )
            .unwrap();
            let err = relative_max_error(&to_host_f64(out).unwrap(), &host(&io["ddim_samples"]));
            println!("{name}: 20-step DDIM relative error {err:.3e}");
            assert!(err <= 1e-3, "{name}: DDIM relative error {err:.3e} > 1e-3");
        }
    }
}

#[test]
fn bad_class_labels_are_errors() {
    let (dir, io) = fixture("class_conditional");
    let dit = DiTTransformer2DModel::load(&dir.join("transformer"), &Device::flex()).unwrap();
    let err = dit
        .forward(tensor4(&io["sample"]), &host(&io["timesteps"]), &[0, 1, 11])
        .unwrap_err()
        .to_string();
    assert!(err.contains("class label 11 is out of range"), "{err}");
}

#[test]
fn a_dit_without_layers_is_a_config_error() {
    let (dir, _) = fixture("class_conditional");
    let text = std::fs::read_to_string(dir.join("transformer/config.json")).unwrap();
    let text = text.replace("\"num_layers\": 2", "\"num_layers\": 0");
    let err =
        <diffuse_core::nn::dit::DiTConfig as diffuse_core::config::DiffusersConfig>::from_json(
            &text,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("num_layers must be at least 1"), "{err}");
}
