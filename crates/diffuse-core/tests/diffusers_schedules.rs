//! Schedules and timesteps against diffusers 0.42 (fixtures: tools/reference/scheduler_fixtures.py).

mod common;

use common::{fixture, floats, usizes};
use diffuse_core::process::schedule::{
    BetaSchedule, NoiseSchedule, TimestepSpacing, inference_timesteps,
};

/// diffusers computes schedules in f32; we compute in f64: |Δ| ≤ 5e-5·|ref| + 1e-6.
/// Returns the largest |Δ| as a fraction of that bound.
fn assert_close_to_f32_reference(what: &str, ours: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(ours.len(), reference.len(), "{what}: length");
    let mut worst: f64 = 0.0;
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        let bound = 5e-5 * b.abs() + 1e-6;
        assert!(
            (a - b).abs() <= bound,
            "{what}[{i}]: ours {a}, diffusers {b}"
        );
        worst = worst.max((a - b).abs() / bound);
    }
    worst
}

#[test]
fn every_schedule_and_rescale_matches_diffusers() {
    let fx = fixture("schedules.json");
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 16, "4 schedules x 2 rescale x 2 lengths");
    let mut worst: f64 = 0.0;
    for case in cases {
        let name = case["beta_schedule"].as_str().unwrap();
        let t = case["num_train_timesteps"].as_u64().unwrap() as usize;
        let rescale = case["rescale_betas_zero_snr"].as_bool().unwrap();
        let kind = BetaSchedule::from_name(
            name,
            case["beta_start"].as_f64().unwrap(),
            case["beta_end"].as_f64().unwrap(),
            (-3.0, 3.0, 1.0),
        )
        .unwrap();
        let schedule = NoiseSchedule::new(&kind, t, rescale).unwrap();
        let what = format!("{name} T={t} rescale={rescale}");
        worst = worst.max(assert_close_to_f32_reference(
            &format!("{what} betas"),
            schedule.betas(),
            &floats(&case["betas"]),
        ));
        worst = worst.max(assert_close_to_f32_reference(
            &format!("{what} alphas_cumprod"),
            schedule.alphas_cumprod(),
            &floats(&case["alphas_cumprod"]),
        ));
    }
    println!("largest |Δ| over all schedules, as a fraction of the tolerance: {worst:.3}");
}

#[test]
fn continuous_sigmoid_matches_chen_2023_reference() {
    let fx = fixture("schedules.json");
    for case in fx["continuous_sigmoid"].as_array().unwrap() {
        let (start, end, tau) = (
            case["start"].as_f64().unwrap(),
            case["end"].as_f64().unwrap(),
            case["tau"].as_f64().unwrap(),
        );
        let kind = BetaSchedule::ContinuousSigmoid { start, end, tau };
        let t = case["num_train_timesteps"].as_u64().unwrap() as usize;
        let schedule = NoiseSchedule::new(&kind, t, false).unwrap();
        // Both sides are f64 implementations of the same formula.
        for (ours, reference) in [
            (schedule.betas(), floats(&case["betas"])),
            (schedule.alphas_cumprod(), floats(&case["alphas_cumprod"])),
        ] {
            for (a, b) in ours.iter().zip(&reference) {
                assert!((a - b).abs() <= 1e-12 * b.abs() + 1e-15, "{a} vs {b}");
            }
        }
    }
}

#[test]
fn every_spacing_matches_diffusers_timesteps_exactly() {
    let fx = fixture("schedules.json");
    let cases = fx["timesteps"].as_array().unwrap();
    assert!(cases.len() > 50);
    for case in cases {
        let t = case["num_train_timesteps"].as_u64().unwrap() as usize;
        let n = case["num_inference_steps"].as_u64().unwrap() as usize;
        let offset = case["steps_offset"].as_u64().unwrap() as usize;
        let spacing: TimestepSpacing = case["timestep_spacing"].as_str().unwrap().parse().unwrap();
        let ours = inference_timesteps(t, n, spacing, offset).unwrap();
        assert_eq!(
            ours,
            usizes(&case["timesteps"]),
            "T={t} N={n} {spacing:?} offset={offset}"
        );
    }
}
