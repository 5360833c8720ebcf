//! Whole DDPM/DDIM sampling loops against diffusers 0.42, both driven by the exact Gaussian-mixture
//! denoiser from the same initial noise and the same step noise (fixtures:
//! tools/reference/scheduler_fixtures.py, which runs diffusers in float64 with a numpy port of
//! gmm.rs). This checks the loop itself: timesteps, previous timesteps, and noise order.

mod common;

use burn::tensor::DType;
use common::{Replay, fixture, floats, plan_of, tensor2, usizes};
use diffuse_core::gmm::{GaussianMixture, GmmDenoiser, MixtureSpec};
use diffuse_core::process::schedule::NoiseSchedule;
use diffuse_core::sampling::sample;
use diffuse_core::tensor_ops::{relative_max_error, to_host_f64};

#[test]
fn sampling_loops_match_diffusers() {
    let fx = fixture("pipelines.json");
    let spec: MixtureSpec = serde_json::from_value(fx["mixture"].clone()).unwrap();
    let mixture = GaussianMixture::new(spec).unwrap();
    let schedule = NoiseSchedule::from_alphas_cumprod(floats(&fx["alphas_cumprod"])).unwrap();
    let shape: [usize; 2] = usizes(&fx["shape"]).try_into().unwrap();
    for case in fx["cases"].as_array().unwrap() {
        let cfg = &case["config"];
        let plan = plan_of(case, &schedule);
        let denoiser = GmmDenoiser::new(
            mixture.clone(),
            schedule.clone(),
            cfg["prediction_type"].as_str().unwrap().parse().unwrap(),
        );
        let reference = floats(&case["samples"]);
        let label = format!(
            "{} {} {} 20 steps",
            case["sampler"].as_str().unwrap(),
            cfg["prediction_type"].as_str().unwrap(),
            cfg["timestep_spacing"].as_str().unwrap()
        );
        for (dtype, tolerance) in [(DType::F64, 1e-6), (DType::F32, 1e-5)] {
            let mut noise = Replay::new(&case["step_noise"]);
            let x_t = tensor2(&case["init_noise"], shape, dtype);
            let out = sample(
                &denoiser,
                &schedule,
                &plan,
                x_t,
                None,
                &mut noise,
                &mut |_, _| {},
            )
            .unwrap();
            assert!(
                noise.exhausted(),
                "diffusers used more step noise than we did"
            );
            let err = relative_max_error(&to_host_f64(out).unwrap(), &reference);
            println!("{label} {dtype:?}: relative error {err:.3e}");
            assert!(
                err <= tolerance,
                "{label} {dtype:?}: {err:.3e} > {tolerance:e}"
            );
        }
    }
}
