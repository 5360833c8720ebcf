//! The variational bound's terms against improved DDPM's formulas (tools/reference/
//! vlb_fixtures.py), and the whole bound of a Gaussian mixture under its exact denoiser.

use diffuse_core::eval::vlb::{prior_bits_per_dim, vlb_term_bits_per_dim};
use diffuse_core::sampler::DdpmVariance;
use diffuse_core::schedule::NoiseSchedule;
use serde_json::Value;

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// Every term for both variances, and the prior, to 1e-9 relative: the arithmetic is the same
/// float64 formulas, reordered.
#[test]
fn terms_match_improved_ddpm() {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/vlb.json")).unwrap();
    // diffusers' float32 linear betas, widened: the same schedule on both sides.
    let schedule = NoiseSchedule::from_betas(floats(&fixture["betas"])).unwrap();
    let dim = fixture["dim"].as_u64().unwrap() as usize;
    let x0 = floats(&fixture["x0"]);
    let close = |ours: f64, theirs: f64, what: &str| {
        assert!(
            (ours - theirs).abs() <= 1e-9 * theirs.abs() + 1e-15,
            "{what}: ours {ours}, improved DDPM {theirs}"
        );
    };
    for (i, expected) in floats(&fixture["prior_bits_per_dim"]).iter().enumerate() {
        let ours = prior_bits_per_dim(&schedule, &x0[i * dim..(i + 1) * dim]);
        close(ours, *expected, &format!("prior of sample {i}"));
    }
    for case in fixture["cases"].as_array().unwrap() {
        let t = case["t"].as_u64().unwrap() as usize;
        let (x_t, predicted) = (floats(&case["x_t"]), floats(&case["x0_predicted"]));
        for (variance, key) in [
            (DdpmVariance::FixedSmall, "fixed_small"),
            (DdpmVariance::FixedLarge, "fixed_large"),
        ] {
            for (i, expected) in floats(&case[key]).iter().enumerate() {
                let rows = i * dim..(i + 1) * dim;
                let ours = vlb_term_bits_per_dim(
                    &schedule,
                    t,
                    variance,
                    &x0[rows.clone()],
                    &x_t[rows.clone()],
                    &predicted[rows],
                );
                close(ours, *expected, &format!("t = {t}, {key}, sample {i}"));
            }
        }
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
    use diffuse_core::forward::PredictionType;
    use diffuse_core::gmm::{GaussianMixture, GmmDenoiser};
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    let schedule = NoiseSchedule::new(
        &diffuse_core::schedule::BetaSchedule::Linear {
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
