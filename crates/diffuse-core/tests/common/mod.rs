//! Helpers shared by the integration tests: fixtures and tensor construction.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

use burn::tensor::{DType, Device, Tensor};
use diffuse_core::gmm::{GaussianMixture, GmmDenoiser};
use diffuse_core::noise::NoiseSource;
use diffuse_core::process::forward::PredictionType;
use diffuse_core::process::schedule::{BetaSchedule, NoiseSchedule};
use diffuse_core::sampling::{DdimOptions, DdpmOptions, SamplerKind, SamplingPlan, X0Limit};
use diffuse_core::tensor_ops::from_host_f64;
use serde_json::Value;

/// A JSON fixture written by tools/reference/scheduler_fixtures.py.
pub fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is valid JSON")
}

/// Numbers of a fixture array; `null` (a non-finite value in the reference run) reads as NaN.
pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| {
            if x.is_null() {
                f64::NAN
            } else {
                x.as_f64().expect("number")
            }
        })
        .collect()
}

pub fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("non-negative integer") as usize)
        .collect()
}

pub fn tensor2(values: &Value, shape: [usize; 2], dtype: DType) -> Tensor<2> {
    from_host_f64(floats(values), shape, &Device::flex(), dtype)
}

/// The sampler a fixture case ran, from its diffusers scheduler config.
pub fn sampler_of(sampler: &str, cfg: &Value) -> SamplerKind {
    let x0_limit = if cfg["clip_sample"].as_bool().unwrap() {
        X0Limit::Clip(cfg["clip_sample_range"].as_f64().unwrap())
    } else {
        X0Limit::None
    };
    match sampler {
        "ddpm" => SamplerKind::Ddpm(DdpmOptions {
            variance: cfg["variance_type"].as_str().unwrap().parse().unwrap(),
            x0_limit,
        }),
        "ddim" => SamplerKind::Ddim(DdimOptions {
            eta: cfg["eta"].as_f64().unwrap(),
            x0_limit,
            set_alpha_to_one: cfg["set_alpha_to_one"].as_bool().unwrap(),
            use_clipped_model_output: cfg["use_clipped_model_output"].as_bool().unwrap(),
        }),
        other => panic!("unknown sampler {other} in fixture"),
    }
}

/// The sampling plan of a fixture case: its sampler over the case's timesteps.
pub fn plan_of(case: &Value, schedule: &NoiseSchedule) -> SamplingPlan {
    let cfg = &case["config"];
    SamplingPlan::new(
        sampler_of(case["sampler"].as_str().unwrap(), cfg),
        schedule,
        cfg["num_inference_steps"].as_u64().unwrap() as usize,
        cfg["timestep_spacing"].as_str().unwrap().parse().unwrap(),
        cfg["steps_offset"].as_u64().unwrap() as usize,
    )
    .unwrap()
}

/// Step noise replayed from a fixture, in the order the reference implementation consumed it.
pub struct Replay(pub std::vec::IntoIter<Vec<f64>>);

impl Replay {
    pub fn new(draws: &Value) -> Self {
        let draws: Vec<Vec<f64>> = draws.as_array().unwrap().iter().map(floats).collect();
        Self(draws.into_iter())
    }

    /// Whether every recorded draw was used.
    pub fn exhausted(&mut self) -> bool {
        self.0.next().is_none()
    }
}

impl NoiseSource for Replay {
    fn next_like<const D: usize>(&mut self, like: &Tensor<D>) -> Tensor<D> {
        let values = self
            .0
            .next()
            .expect("the sampler asked for more noise than the reference used");
        from_host_f64(values, like.dims(), &like.device(), like.dtype())
    }
}

/// examples/mixtures/three-blobs.json: three 2-D Gaussian blobs.
const THREE_BLOBS: &str = include_str!("../../../../examples/mixtures/three-blobs.json");

/// The three-blob mixture's exact denoiser on DDPM's linear schedule (T = 1000).
pub fn three_blobs(prediction_type: PredictionType) -> (GmmDenoiser, NoiseSchedule) {
    let mixture = GaussianMixture::from_json(THREE_BLOBS).unwrap();
    let linear = BetaSchedule::Linear {
        beta_start: 1e-4,
        beta_end: 0.02,
    };
    let schedule = NoiseSchedule::new(&linear, 1000, false).unwrap();
    (
        GmmDenoiser::new(mixture, schedule.clone(), prediction_type),
        schedule,
    )
}

/// Per-component weight and mean errors within 3 standard errors of the Monte-Carlo noise.
pub fn assert_matches_mixture(name: &str, mixture: &GaussianMixture, samples: &[f64]) {
    for (k, stats) in mixture.component_stats(samples).iter().enumerate() {
        let z = stats.max_error_in_std_errors();
        println!(
            "{name} component {k}: weight {:.4} (true {:.4}), mean {:?} (true {:?}), max error {z:.2} s.e.",
            stats.weight, stats.true_weight, stats.mean, stats.true_mean
        );
        assert!(
            z <= 3.0,
            "{name}: component {k} is {z:.2} standard errors off"
        );
    }
}
