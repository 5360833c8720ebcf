//! Every sampler against its diffusers 0.42 scheduler on whole sampling loops: both driven by the
//! exact Gaussian-mixture denoiser from the same initial noise and the same injected step noise
//! (fixtures: tools/reference/sampler_fixtures.py). Each case's scheduler_config.json is read
//! the way a pipeline folder's is, so this also checks that every option is carried over.
//!
//! Tolerance: 1e-4 relative max-norm error on the final samples (the bound). diffusers
//! runs parts of each step in float32 (σ grids, DPM-Solver/UniPC coefficients, Euler's sample
//! cast), so its "float64" run carries float32 rounding; we compute in f64 throughout.

mod common;

use burn::tensor::DType;
use common::{Replay, fixture, floats, tensor2, usizes};
use diffuse_core::gmm::{GaussianMixture, GmmDenoiser, MixtureSpec};
use diffuse_core::pipeline::{SamplerOverrides, SchedulerConfig};
use diffuse_core::process::schedule::NoiseSchedule;
use diffuse_core::sampling::{SamplingPlan, sample};
use diffuse_core::tensor_ops::{relative_max_error, to_host_f64};
use serde_json::Value;

const TOLERANCE: f64 = 1e-4;

fn plan_for(case: &Value, schedule: &NoiseSchedule) -> (SchedulerConfig, SamplingPlan) {
    let config = SchedulerConfig::from_json(&case["scheduler_config"].to_string())
        .unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
    let sampler = config.sampler(None, &SamplerOverrides::default()).unwrap();
    let plan = SamplingPlan::new(
        sampler,
        schedule,
        case["num_inference_steps"].as_u64().unwrap() as usize,
        config.spacing().unwrap(),
        config.steps_offset,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
    (config, plan)
}

#[test]
fn every_sampler_matches_its_diffusers_scheduler() {
    let fx = fixture("samplers.json");
    let spec: MixtureSpec = serde_json::from_value(fx["mixture"].clone()).unwrap();
    let mixture = GaussianMixture::new(spec).unwrap();
    let shape: [usize; 2] = usizes(&fx["shape"]).try_into().unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 100, "fixture holds {} cases", cases.len());
    let mut worst: std::collections::BTreeMap<String, f64> = Default::default();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let key = case["schedule_key"].as_str().unwrap();
        let schedule =
            NoiseSchedule::from_alphas_cumprod(floats(&fx["alphas_cumprod"][key])).unwrap();
        let (config, plan) = plan_for(case, &schedule);
        assert_eq!(
            plan.sampler.name().as_str(),
            case["sampler"].as_str().unwrap(),
            "{name}: sampler"
        );
        let model_timesteps = floats(&case["model_timesteps"]);
        assert_eq!(plan.timesteps.len(), model_timesteps.len(), "{name}: NFE");
        for (ours, theirs) in plan.timesteps.iter().zip(&model_timesteps) {
            assert!(
                (ours - theirs).abs() < 1e-3,
                "{name}: timesteps {:?} vs {model_timesteps:?}",
                plan.timesteps
            );
        }
        if !case["sigmas"].is_null() && !plan.sigmas.is_empty() {
            let err = relative_max_error(&plan.sigmas, &floats(&case["sigmas"]));
            assert!(err < 1e-6, "{name}: σ grid off by {err:.2e}");
        }
        let init_sigma = case["init_noise_sigma"].as_f64().unwrap();
        assert!(
            (plan.init_noise_sigma - init_sigma).abs() <= 1e-6 * init_sigma,
            "{name}: init_noise_sigma {} vs {init_sigma}",
            plan.init_noise_sigma
        );
        let denoiser = GmmDenoiser::new(
            mixture.clone(),
            schedule.clone(),
            config.prediction().unwrap(),
        );
        let reference = floats(&case["samples"]);
        for dtype in [DType::F64, DType::F32] {
            let mut noise = Replay::new(&case["step_noise"]);
            let z = tensor2(&case["init_noise"], shape, dtype);
            let out = sample(
                &denoiser,
                &schedule,
                &plan,
                z,
                None,
                &mut noise,
                &mut |_, _| {},
            )
            .unwrap();
            assert!(noise.exhausted(), "{name}: diffusers drew more step noise");
            let err = relative_max_error(&to_host_f64(out).unwrap(), &reference);
            assert!(
                err <= TOLERANCE,
                "{name} {dtype:?}: relative error {err:.3e} > {TOLERANCE:e}"
            );
            if dtype == DType::F64 {
                let entry = worst
                    .entry(case["sampler"].as_str().unwrap().to_string())
                    .or_default();
                *entry = entry.max(err);
            }
        }
    }
    for (sampler, err) in &worst {
        println!("{sampler:>16}: worst relative error vs diffusers {err:.2e}");
    }
}
