//! The variational bound's terms against improved DDPM's formulas (tools/reference/
//! vlb_fixtures.py), and the whole bound of a Gaussian mixture under its exact denoiser.

mod common;

use burn::tensor::{DType, Device, Tensor};
use common::floats;
use diffuse_core::process::bound::{model_log_variance, prior_bits_per_dim, vlb_terms_bits};
use diffuse_core::process::schedule::NoiseSchedule;
use diffuse_core::process::variance::DdpmVariance;
use diffuse_core::tensor_ops::{from_host_f64, to_host_f64};
use serde_json::Value;

/// Every term for the three variances, and the prior, to 1e-9 relative: the same float64
/// formulas as tensors of dtype f64, reordered.
#[test]
fn terms_match_improved_ddpm() {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/vlb.json")).unwrap();
    // diffusers' float32 linear betas, widened: the same schedule on both sides.
    let schedule = NoiseSchedule::from_betas(floats(&fixture["betas"])).unwrap();
    let dim = fixture["dim"].as_u64().unwrap() as usize;
    let device = Device::default();
    let rows =
        |values: Vec<f64>| -> Tensor<2> { from_host_f64(values, [2, dim], &device, DType::F64) };
    let x0 = floats(&fixture["x0"]);
    let close = |ours: &[f64], theirs: &[f64], what: &str| {
        for (o, t) in ours.iter().zip(theirs) {
            assert!(
                (o - t).abs() <= 1e-9 * t.abs() + 1e-15,
                "{what}: ours {ours:?}, improved DDPM {theirs:?}"
            );
        }
    };
    let prior = to_host_f64(prior_bits_per_dim(&schedule, rows(x0.clone()))).unwrap();
    close(&prior, &floats(&fixture["prior_bits_per_dim"]), "prior");
    for case in fixture["cases"].as_array().unwrap() {
        let t = case["t"].as_u64().unwrap() as usize;
        for (variance, key) in [
            (DdpmVariance::FixedSmall, "fixed_small"),
            (DdpmVariance::FixedLarge, "fixed_large"),
            (DdpmVariance::LearnedRange, "learned_range"),
        ] {
            let x_t = rows(floats(&case["x_t"]));
            let variance_output = rows(floats(&case["variance_output"]));
            let log_variance =
                model_log_variance(&schedule, &[t, t], variance, Some(variance_output), &x_t)
                    .unwrap();
            let ours = vlb_terms_bits(
                &schedule,
                &[t, t],
                rows(x0.clone()),
                x_t,
                rows(floats(&case["x0_predicted"])),
                log_variance,
            );
            close(
                &to_host_f64(ours).unwrap(),
                &floats(&case[key]),
                &format!("t = {t}, {key}"),
            );
        }
    }
}

/// Rows at different timesteps in one batch (as the hybrid loss draws them) give each row's own
/// term: the decoder for t = 0, the KL otherwise.
#[test]
fn a_batch_mixing_timesteps_gives_each_row_its_own_term() {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/vlb.json")).unwrap();
    let schedule = NoiseSchedule::from_betas(floats(&fixture["betas"])).unwrap();
    let dim = fixture["dim"].as_u64().unwrap() as usize;
    let device = Device::default();
    let cases = fixture["cases"].as_array().unwrap();
    let (decoder, kl) = (&cases[0], &cases[4]);
    let t = [0, kl["t"].as_u64().unwrap() as usize];
    // Row 0 of the decoder case, row 1 of the KL case.
    let pick = |key: &str| -> Tensor<2> {
        let mut values = floats(&decoder[key])[..dim].to_vec();
        values.extend_from_slice(&floats(&kl[key])[dim..]);
        from_host_f64(values, [2, dim], &device, DType::F64)
    };
    let x0 = from_host_f64(floats(&fixture["x0"]), [2, dim], &device, DType::F64);
    let x_t = pick("x_t");
    let log_variance = model_log_variance(
        &schedule,
        &t,
        DdpmVariance::LearnedRange,
        Some(pick("variance_output")),
        &x_t,
    )
    .unwrap();
    let ours = to_host_f64(vlb_terms_bits(
        &schedule,
        &t,
        x0,
        x_t,
        pick("x0_predicted"),
        log_variance,
    ))
    .unwrap();
    let expected = [
        floats(&decoder["learned_range"])[0],
        floats(&kl["learned_range"])[1],
    ];
    for (o, e) in ours.iter().zip(expected) {
        assert!(
            (o - e).abs() <= 1e-9 * e.abs(),
            "ours {ours:?}, expected {expected:?}"
        );
    }
}

/// Data x ~ N(0.1, 0.3²) on 8-bit levels under its exact denoiser. The full bound lies above the
/// data's discrete NLL, −log₂(p(x)·2/255); its diffusion terms have a closed-form expectation:
/// with the exact x̂₀ = E[x₀ | x_t] and σ_t² = β̃_t only the mean error is left,
/// E[L_t] = c_t² Var(x₀ | x_t) / (2 β̃_t) with c_t = √ᾱ_{t−1} β_t / (1 − ᾱ_t) and
/// Var(x₀ | x_t) = s² (1 − ᾱ_t) / (ᾱ_t s² + 1 − ᾱ_t).
#[test]
fn the_bound_of_gaussian_data_under_its_exact_denoiser_has_its_expected_terms() {
    use burn::tensor::Device;
    use diffuse_core::eval::{VlbSettings, VlbTimesteps, variational_bound};
    use diffuse_core::gmm::{GaussianMixture, GmmDenoiser};
    use diffuse_core::process::forward::PredictionType;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    let schedule = NoiseSchedule::new(
        &diffuse_core::process::schedule::BetaSchedule::Linear {
            beta_start: 1e-4,
            beta_end: 0.02,
        },
        1000,
        false,
    )
    .unwrap();
    let (mean, std): (f64, f64) = (0.1, 0.3);
    let mixture = GaussianMixture::from_json(&format!(
        r#"{{"weights":[1],"means":[[{mean}]],"stds":[[{std}]]}}"#
    ))
    .unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let normal = Normal::new(mean, std).unwrap();
    let n = 2000;
    let x0: Vec<f64> = (0..n)
        .map(|_| (normal.sample(&mut rng).clamp(-1.0, 1.0) * 127.5 + 127.5).round() / 127.5 - 1.0)
        .collect();
    let discrete_nll = x0
        .iter()
        .map(|&x| -(mixture.log_density(&[x]) + (2.0f64 / 255.0).ln()) / std::f64::consts::LN_2)
        .sum::<f64>()
        / n as f64;
    let denoiser = GmmDenoiser::new(mixture, schedule.clone(), PredictionType::Epsilon);
    let settings = VlbSettings {
        variance: DdpmVariance::FixedSmall,
        timesteps: VlbTimesteps::All,
        seed: 1,
        device: Device::flex(),
    };
    let report = variational_bound(
        &denoiser,
        &schedule,
        &x0,
        [n, 1],
        None,
        &settings,
        &mut |_, _| {},
    )
    .unwrap();
    let expected_diffusion = (1..1000)
        .map(|t| {
            let (a, a_prev) = (schedule.alpha_bar(t), schedule.alpha_bar(t - 1));
            let beta = 1.0 - a / a_prev;
            let posterior_variance = (1.0 - a_prev) / (1.0 - a) * beta;
            let c = a_prev.sqrt() * beta / (1.0 - a);
            let x0_variance = std * std * (1.0 - a) / (a * std * std + 1.0 - a);
            c * c * x0_variance / (2.0 * posterior_variance)
        })
        .sum::<f64>()
        / std::f64::consts::LN_2;
    eprintln!("{report:?}; discrete NLL {discrete_nll}; expected Σ L_t {expected_diffusion}");
    assert_eq!(report.terms_evaluated, 1000);
    assert!(
        report.bits_per_dim > discrete_nll,
        "{report:?} vs {discrete_nll}"
    );
    // 2000 samples × 999 terms of Monte Carlo: within 2% of the expectation.
    assert!(
        (report.diffusion_bits_per_dim - expected_diffusion).abs() < 0.02 * expected_diffusion,
        "{report:?} vs expected Σ L_t {expected_diffusion}"
    );
}
