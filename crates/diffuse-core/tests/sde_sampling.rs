//! Continuous-time samplers (Song et al. 2021) on the exact Gaussian-mixture denoiser, a VP model
//! of discrete DDPM time used as a continuous one: the VP, sub-VP and VE processes sampled by
//! predictor–corrector and the probability-flow ODE reproduce the mixture's component weights
//! and means within Monte-Carlo error.

use burn::tensor::{DType, Device};
use diffuse_core::process::forward::PredictionType;
use diffuse_core::process::sde::Sde;
use diffuse_core::sampling::GenerationConfig;
use diffuse_core::sampling::sde::{SdeSampler, SdeSettings, generate_sde};

mod common;
use common::{assert_matches_mixture, three_blobs};

fn check(name: &str, sde: &str, sampler: SdeSampler, steps: usize) {
    let (denoiser, schedule) = three_blobs(PredictionType::Epsilon);
    let config = GenerationConfig {
        count: 2000,
        batch_size: 1000,
        seed: 20261126,
        device: Device::flex(),
        dtype: DType::F64,
        class_labels: None,
        init_noise: None,
    };
    let settings = SdeSettings {
        sde: Sde::from_name(sde).unwrap(),
        sampler,
        steps,
    };
    let samples = generate_sde(&denoiser, &schedule, &settings, &[2], &config).unwrap();
    assert_matches_mixture(name, denoiser.mixture(), &samples);
}

const PC: SdeSampler = SdeSampler::PredictorCorrector {
    corrector_steps: 1,
    snr: 0.16,
};

#[test]
fn vp_predictor_corrector_reproduces_the_mixture() {
    check("VP PC", "vp", PC, 500);
}

#[test]
fn subvp_predictor_corrector_reproduces_the_mixture() {
    check("sub-VP PC", "subvp", PC, 500);
}

#[test]
fn ve_predictor_corrector_reproduces_the_mixture() {
    check("VE PC", "ve", PC, 500);
}

#[test]
fn vp_probability_flow_reproduces_the_mixture() {
    check("VP ODE", "vp", SdeSampler::ProbabilityFlow, 100);
}

#[test]
fn plain_euler_maruyama_reproduces_the_mixture() {
    let no_corrector = SdeSampler::PredictorCorrector {
        corrector_steps: 0,
        snr: 0.0,
    };
    check("VP EM", "vp", no_corrector, 1000);
}

/// The last predictor step returns its mean (Song et al.'s `denoise`): one Euler–Maruyama step
/// from a given x_1 is x_1 + (f x_1 − g² ∇ log p_1(x_1))·(ε − 1), with no noise added.
#[test]
fn the_last_predictor_step_adds_no_noise() {
    use burn::tensor::Tensor;
    use diffuse_core::process::sde::score;
    use diffuse_core::process::sigmas::schedule_sigmas;
    use diffuse_core::tensor_ops::{from_host_f64, to_host_f64};

    let (denoiser, schedule) = three_blobs(PredictionType::Epsilon);
    let sde = Sde::from_name("vp").unwrap();
    let z = vec![0.3, -1.1, 1.7, 0.2];
    let config = GenerationConfig {
        count: 2,
        batch_size: 2,
        seed: 3,
        device: Device::flex(),
        dtype: DType::F64,
        class_labels: None,
        init_noise: Some(z.clone()),
    };
    let settings = SdeSettings {
        sde,
        sampler: SdeSampler::PredictorCorrector {
            corrector_steps: 0,
            snr: 0.0,
        },
        steps: 1,
    };
    let ours = generate_sde(&denoiser, &schedule, &settings, &[2], &config).unwrap();
    let x: Tensor<2> = from_host_f64(z, [2, 2], &Device::flex(), DType::F64);
    let x = x.mul_scalar(sde.marginal(1.0).1);
    let (f, g) = sde.drift_and_diffusion(1.0);
    let grad = score(
        &denoiser,
        &schedule,
        &schedule_sigmas(&schedule),
        x.clone(),
        sde.marginal(1.0),
        None,
    )
    .unwrap();
    let dt = sde.end_time() - 1.0;
    let expected =
        to_host_f64(x.clone() + (x.mul_scalar(f) - grad.mul_scalar(g * g)).mul_scalar(dt)).unwrap();
    for (a, b) in ours.iter().zip(&expected) {
        assert!((a - b).abs() < 1e-12, "{ours:?} vs {expected:?}");
    }
}
