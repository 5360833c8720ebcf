//! The autoencoder against diffusers 0.42's `AutoencoderKL` on small random configs (fixtures:
//! tools/reference/autoencoder_fixtures.py): the posterior's mode, log-variance and KL, and the
//! decoder, each within 1e-4 relative (max-norm) in f32, through `vae/` folders written by
//! diffusers' `save_pretrained` — one of them in Stable Diffusion's released form (f16 weights,
//! pre-0.14 attention names, a config without the newer fields) — and diffusers' tiled encode and
//! decode (`enable_tiling`) on inputs 2.5 tiles wide.

use std::collections::HashMap;
use std::path::PathBuf;

use burn::tensor::{DType, Device, Tensor};
use diffuse_core::io::{HostTensor, read_safetensors};
use diffuse_core::nn::autoencoder::AutoencoderKL;
use diffuse_core::tensor_ops::{from_host_f64, relative_max_error, to_host_f64};

const CASES: [&str; 4] = ["rgb_quant_attn", "gray_plain", "rgb_shift", "legacy_f16"];
const TOLERANCE: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/autoencoder")
        .join(name)
}

fn tensor4(t: &HostTensor) -> Tensor<4> {
    let shape: [usize; 4] = t.shape.clone().try_into().expect("rank-4 tensor");
    let values = t.values.iter().map(|&v| f64::from(v)).collect();
    from_host_f64(values, shape, &Device::flex(), DType::F32)
}

fn check<const D: usize>(case: &str, what: &str, got: Tensor<D>, io: &HashMap<String, HostTensor>) {
    let want: Vec<f64> = io[what].values.iter().map(|&v| f64::from(v)).collect();
    let err = relative_max_error(&to_host_f64(got).unwrap(), &want);
    println!("{case}: {what} relative error {err:.2e}");
    assert!(
        err <= TOLERANCE,
        "{case}: {what} relative error {err:.2e} > {TOLERANCE:e}"
    );
}

#[test]
fn encode_and_decode_match_diffusers() {
    for case in CASES {
        let dir = fixture(case);
        let vae = AutoencoderKL::load(&dir.join("vae"), &Device::flex())
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let io = read_safetensors(&dir.join("io.safetensors")).unwrap();
        let posterior = vae.encode(tensor4(&io["images"]));
        check(case, "mode", posterior.mode(), &io);
        check(case, "logvar", posterior.logvar.clone(), &io);
        check(case, "kl", posterior.kl(), &io);
        check(case, "decoded", vae.decode(tensor4(&io["latents"])), &io);
        check(case, "reconstruction", vae.decode(posterior.mode()), &io);
    }
}

/// A folder written by `diffuse` reads back to the same weights (the other direction, diffusers
/// reading it, is tools/reference/check_resaved_autoencoder.py).
#[test]
fn a_saved_folder_loads_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let vae = AutoencoderKL::load(&fixture("legacy_f16").join("vae"), &Device::flex()).unwrap();
    vae.save(dir.path()).unwrap();
    let again = AutoencoderKL::load(dir.path(), &Device::flex()).unwrap();
    let io = read_safetensors(&fixture("legacy_f16").join("io.safetensors")).unwrap();
    let latents = tensor4(&io["latents"]);
    let (a, b) = (vae.decode(latents.clone()), again.decode(latents));
    assert_eq!(to_host_f64(a).unwrap(), to_host_f64(b).unwrap());
    let config = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    assert!(
        config.contains("\"_class_name\": \"AutoencoderKL\""),
        "{config}"
    );
}

/// diffusers' `enable_tiling()` path on images and latents 2.5 tiles wide: the same tiles, the
/// same blends in the same order.
#[test]
fn tiled_encode_and_decode_match_diffusers() {
    let dir = fixture("rgb_quant_attn");
    let vae = AutoencoderKL::load(&dir.join("vae"), &Device::flex()).unwrap();
    let io = read_safetensors(&dir.join("tiled.safetensors")).unwrap();
    let posterior = vae.encode_tiled(tensor4(&io["big_images"])).unwrap();
    check("tiled", "tiled_mode", posterior.mode(), &io);
    let decoded = vae.decode_tiled(tensor4(&io["big_latents"])).unwrap();
    check("tiled", "tiled_decoded", decoded, &io);
}
