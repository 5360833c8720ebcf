//! Continuous-time samplers (Song et al. 2021) on the exact Gaussian-mixture denoiser, a VP model
//! of discrete DDPM time used as a continuous one: the VP, sub-VP and VE processes sampled by
//! predictor–corrector and the probability-flow ODE reproduce the mixture's component weights
//! and means within Monte-Carlo error.

use burn::tensor::{DType, Device};
use diffuse_core::forward::PredictionType;
use diffuse_core::gmm::{GaussianMixture, GmmDenoiser};
use diffuse_core::sampler::GenerationConfig;
use diffuse_core::sampler::sde::{Sde, SdeSampler, SdeSettings, generate_sde};
use diffuse_core::schedule::{BetaSchedule, NoiseSchedule};

const THREE_BLOBS: &str = include_str!("../../../examples/mixtures/three-blobs.json");

fn check(name: &str, sde: &str, sampler: SdeSampler, steps: usize) {
    let mixture = GaussianMixture::from_json(THREE_BLOBS).unwrap();
    let linear = BetaSchedule::Linear {
        beta_start: 1e-4,
        beta_end: 0.02,
    };
    let schedule = NoiseSchedule::new(&linear, 1000, false).unwrap();
    let denoiser = GmmDenoiser::new(mixture.clone(), schedule.clone(), PredictionType::Epsilon);
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
    for (k, stats) in mixture.component_stats(&samples).iter().enumerate() {
        let z = stats.max_error_in_std_errors();
        println!(
            "{name} component {k}: weight {:.4} (true {:.4}), mean {:?} (true {:?}), {z:.2} s.e.",
            stats.weight, stats.true_weight, stats.mean, stats.true_mean
        );
        assert!(
            z <= 3.0,
            "{name}: component {k} is {z:.2} standard errors off"
        );
    }
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
