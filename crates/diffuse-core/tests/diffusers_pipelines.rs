//! Whole DDPM/DDIM sampling loops against diffusers 0.42, both driven by the exact Gaussian-mixture
//! denoiser from the same initial noise and the same step noise (fixtures:
//! tools/reference/scheduler_fixtures.py, which runs diffusers in float64 with a numpy port of
//! gmm.rs). This checks the loop itself: timesteps, previous timesteps, and noise order.

mod common;

use burn::tensor::{DType, Tensor};
use common::{fixture, floats, plan_of, tensor2, usizes};
use diffuse_core::gmm::{GaussianMixture, GmmDenoiser, MixtureSpec};
use diffuse_core::noise::NoiseSource;
use diffuse_core::sampler::sample;
use diffuse_core::schedule::NoiseSchedule;
use diffuse_core::tensor_ops::{from_host_f64, relative_max_error, to_host_f64};

/// Step noise replayed from the fixture, in the order diffusers consumed it.
struct Replay(std::vec::IntoIter<Vec<f64>>);

impl NoiseSource for Replay {
    fn next_like<const D: usize>(&mut self, like: &Tensor<D>) -> Tensor<D> {
        let values = self
            .0
            .next()
            .expect("the sampler asked for more noise than diffusers used");
        from_host_f64(values, like.dims(), &like.device(), like.dtype())
    }
}

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
            let step_noise: Vec<Vec<f64>> = case["step_noise"]
                .as_array()
                .unwrap()
                .iter()
                .map(floats)
                .collect();
            let mut noise = Replay(step_noise.into_iter());
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
                noise.0.next().is_none(),
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
