//! A latent `DiTPipeline` folder (DiT + AutoencoderKL + DDIM, written by diffusers) against
//! diffusers' own loop (fixtures: tools/reference/latent_pipeline_fixtures.py): 10 DDIM steps from
//! the same initial latent noise, without guidance and with classifier-free guidance 4 (DiTPipeline's
//! semantics: guidance on the first latent_C output channels, the null class num_embeds_ada_norm),
//! then vae.decode(latents / scaling_factor) — each within 1e-3 relative. A folder `diffuse` writes
//! reads back to the same samples.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{DType, Device};
use diffuse_core::io::{HostTensor, read_safetensors};
use diffuse_core::pipeline::DiffusionPipeline;
use diffuse_core::sampling::guidance::CfgSettings;
use diffuse_core::sampling::{GenerationConfig, Recipe, SamplerChoice};
use diffuse_core::tensor_ops::relative_max_error;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/latent_dit")
}

fn values(t: &HostTensor) -> Vec<f64> {
    t.values.iter().map(|&v| f64::from(v)).collect()
}

/// The pipeline's own sampler (DDIM) for 10 steps, guided with `scale` when it is above 1.
fn recipe(pipeline: &DiffusionPipeline, scale: f64) -> Recipe {
    let choice = SamplerChoice {
        name: None,
        overrides: Default::default(),
        steps: 10,
        spacing: None,
        steps_offset: None,
    };
    let mut recipe = Recipe::plan(choice.plan(&pipeline.scheduler).unwrap());
    recipe.cfg = (scale > 1.0).then_some(CfgSettings {
        scale,
        rescale: 0.0,
        interval: None,
    });
    recipe
}

/// The decoded samples for guidance `scale` from the fixture's initial noise and labels.
fn draw(dir: &Path, scale: f64, io: &HashMap<String, HostTensor>) -> (Vec<f64>, [usize; 3]) {
    let pipeline = DiffusionPipeline::load(dir, &Device::flex()).unwrap();
    let config = GenerationConfig {
        count: 2,
        batch_size: 2,
        seed: 0,
        device: Device::flex(),
        dtype: DType::F32,
        class_labels: Some(
            io["class_labels"]
                .values
                .iter()
                .map(|&v| v as usize)
                .collect(),
        ),
        init_noise: Some(values(&io["init_noise"])),
    };
    let samples = recipe(&pipeline, scale)
        .draw_pipeline(&pipeline, None, &config, &mut ())
        .unwrap();
    (samples.drawn.samples, samples.shape)
}

#[test]
fn ddim_with_and_without_guidance_matches_diffusers_dit_pipeline() {
    let io = read_safetensors(&fixture().join("io.safetensors")).unwrap();
    for scale in [1.0, 4.0] {
        let (samples, shape) = draw(&fixture().join("pipeline"), scale, &io);
        assert_eq!(shape, [3, 16, 16], "decoded images, not latents");
        let want = values(&io[&format!("samples_g{scale}")]);
        let err = relative_max_error(&samples, &want);
        println!("guidance {scale}: decoded samples relative error {err:.2e}");
        assert!(
            err <= 1e-3,
            "guidance {scale}: relative error {err:.2e} > 1e-3"
        );
    }
}

#[test]
fn a_resaved_latent_pipeline_draws_the_same_samples() {
    let io = read_safetensors(&fixture().join("io.safetensors")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = DiffusionPipeline::load(&fixture().join("pipeline"), &Device::flex()).unwrap();
    pipeline.save(tmp.path()).unwrap();
    let index = std::fs::read_to_string(tmp.path().join("model_index.json")).unwrap();
    assert!(index.contains("AutoencoderKL"), "{index}");
    assert_eq!(
        draw(tmp.path(), 4.0, &io),
        draw(&fixture().join("pipeline"), 4.0, &io)
    );
}
