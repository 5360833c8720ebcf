//! The probability-flow likelihood of Gaussian and mixture data under their exact scores, where
//! log p is known in closed form, and the network VJPs it rests on.

use burn::tensor::Device;
use diffuse_core::denoiser::Denoiser;
use diffuse_core::eval::{OdeLikelihoodSettings, OdeSolve, TraceEstimator, ode_log_likelihood};
use diffuse_core::gmm::{GaussianMixture, GmmDenoiser};
use diffuse_core::nn::mlp::{MlpConfig, MlpDenoiser};
use diffuse_core::nn::network::{Architecture, DenoisingNetwork};
use diffuse_core::pipeline::NetworkDenoiser;
use diffuse_core::process::forward::PredictionType;
use diffuse_core::process::schedule::NoiseSchedule;
use diffuse_core::process::sde::Sde;
use diffuse_core::tensor_ops::{from_host_f64, to_host_f64};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const START: f64 = 1e-5;

/// A VP training schedule whose noise levels σ = √((1 − ᾱ)/ᾱ) span those of `sde` over [ε, 1]
/// (log-spaced, 2000 steps), so that the score at every t is the mixture's own at exactly that
/// noise level, not clamped at a schedule end as a DDPM schedule would below σ ≈ 0.01.
fn covering_schedule(sde: &Sde) -> NoiseSchedule {
    let sigma = |t: f64| {
        let (a, s) = sde.marginal(t);
        s / a
    };
    let (low, high) = ((0.9 * sigma(START)).ln(), (1.1 * sigma(1.0)).ln());
    let n = 2000;
    let alphas_cumprod = (0..n)
        .map(|i| {
            let s = (low + (high - low) * i as f64 / (n - 1) as f64).exp();
            1.0 / (1.0 + s * s)
        })
        .collect();
    NoiseSchedule::from_alphas_cumprod(alphas_cumprod).unwrap()
}

fn points(mixture: &GaussianMixture, n: usize, seed: u64) -> Vec<f64> {
    mixture
        .sample(n, &mut ChaCha8Rng::seed_from_u64(seed))
        .concat()
}

/// One solve of the points `x`, the first of which is sample `first` of the data set.
fn solve(
    mixture: &GaussianMixture,
    sde: Sde,
    prediction: PredictionType,
    trace: TraceEstimator,
    x: &[f64],
    first: usize,
) -> OdeSolve {
    let schedule = covering_schedule(&sde);
    let denoiser = GmmDenoiser::new(mixture.clone(), schedule.clone(), prediction);
    let settings = OdeLikelihoodSettings {
        trace,
        ..OdeLikelihoodSettings::song(sde, 7, Device::flex())
    };
    let dim = mixture.dim();
    let shape = [x.len() / dim, dim];
    ode_log_likelihood(&denoiser, &schedule, x, shape, first, None, &settings).unwrap()
}

/// What the solve should return for each point, given where it took the point: the ODE
/// computes log p_ε(x) = log p_T(x(T)) + ∫ ∇·v but with the prior N(0, s(T)² I) in place of
/// p_T. So, next to the analytic log p_0(x), two known corrections: the start at ε,
/// log p_ε(x) − log p_0(x), and the prior mismatch log N(x(T); 0, s(T)²) − log p_T(x(T)).
/// Returns (analytic, corrected target).
fn analytic_and_target(
    mixture: &GaussianMixture,
    sde: &Sde,
    x: &[f64],
    solution: &OdeSolve,
) -> Vec<(f64, f64)> {
    let dim = mixture.dim();
    let ((a_eps, s_eps), (a_end, s_end)) = (sde.marginal(START), sde.marginal(1.0));
    x.chunks(dim)
        .zip(solution.latent.chunks(dim))
        .zip(&solution.prior_log_likelihood)
        .map(|((x, latent), prior)| {
            let analytic = mixture.log_density(x);
            let start = mixture.marginal_log_density(x, a_eps, s_eps) - analytic;
            let mismatch = prior - mixture.marginal_log_density(latent, a_end, s_end);
            (analytic, analytic + start + mismatch)
        })
        .collect()
}

/// The solver's share of the error, relative to 1 + |log p|: RK45 at rtol = atol = 1e-5 keeps
/// each step's error below atol + rtol·|y| in the RMS sense over the state, and some tens of
/// steps accumulate (with partly cancelling signs) to a few times that. Measured: 2e-5 (VP),
/// 9e-6 (sub-VP), 4e-5 (VE); at rtol = atol = 1e-7, 6e-6, 2e-6 and 3e-7, VP's floor being the
/// f32 σ table [`schedule_sigmas`](diffuse_core::process::sigmas::schedule_sigmas) matches noise
/// levels in, whose 1 − ᾱ loses digits at σ ≈ 1e-3.
const SOLVER_TOLERANCE: f64 = 1e-4;

/// The largest |ODE − target| / (1 + |target|) of a solve.
fn solver_error(solution: &OdeSolve, expected: &[(f64, f64)]) -> f64 {
    solution
        .log_likelihood
        .iter()
        .zip(expected)
        .map(|(ode, (_, target))| (ode - target).abs() / (1.0 + target.abs()))
        .fold(0.0, f64::max)
}

/// Gaussian data N(μ, diag(s²)) under its exact score, one SDE per parameterisation so that the
/// chain rule through each (ε, x₀, v) is exercised: log p_0(x) to within the two corrections
/// (below 0.01 nats for VP and sub-VP; VE starts at σ_min = 0.01, a 5% noise on s = 0.2, so
/// 0.03 nats) and the solver's tolerance. The flow of Gaussian data is affine
/// per dimension, (x(t) − a_t μ)/σ_t constant with σ_t² = a_t² s² + s(t)², so the latent is
/// checked too. ∫ ∇·v, the log-determinant of that map, Σ_d log(σ_T/σ_ε), is over 2 nats
/// (10⁴ tolerances): a wrong sign or factor in the divergence, the drift or the prior moves
/// the result by far more than the tolerance.
#[test]
fn gaussian_data_under_its_exact_score_has_its_analytic_likelihood() {
    let (mean, std) = ([0.5, -0.3], [0.2, 0.5]);
    let mixture = GaussianMixture::from_json(&format!(
        r#"{{"weights":[1],"means":[{mean:?}],"stds":[{std:?}]}}"#
    ))
    .unwrap();
    let x = points(&mixture, 16, 1);
    for (name, prediction) in [
        ("vp", PredictionType::Epsilon),
        ("subvp", PredictionType::Sample),
        ("ve", PredictionType::VPrediction),
    ] {
        let sde = Sde::from_name(name).unwrap();
        let solution = solve(&mixture, sde, prediction, TraceEstimator::Exact, &x, 0);
        let expected = analytic_and_target(&mixture, &sde, &x, &solution);
        let worst = solver_error(&solution, &expected);
        let corrections = expected
            .iter()
            .map(|(analytic, target)| (target - analytic).abs())
            .fold(0.0, f64::max);
        let divergence_integral = solution
            .log_likelihood
            .iter()
            .zip(&solution.prior_log_likelihood)
            .map(|(l, p)| (l - p).abs())
            .fold(f64::INFINITY, f64::min);
        eprintln!(
            "{name}: nfe {}, max relative error {worst:.2e}, max correction {corrections:.2e}, \
             min |∫∇·v| {divergence_integral:.2}",
            solution.nfe
        );
        for (i, (ode, (analytic, target))) in
            solution.log_likelihood.iter().zip(&expected).enumerate()
        {
            eprintln!("  point {i}: ODE {ode:.6}, analytic {analytic:.6}, target {target:.6}");
        }
        assert!(worst < SOLVER_TOLERANCE, "{name}: {worst:e}");
        assert!(corrections < 0.05, "{name}: {corrections:e}");
        assert!(divergence_integral > 1.0, "{name}: {divergence_integral}");
        let ((a_eps, s_eps), (a_end, s_end)) = (sde.marginal(START), sde.marginal(1.0));
        for (row, latent) in x.chunks(2).zip(solution.latent.chunks(2)) {
            for d in 0..2 {
                let sigma = |a: f64, s: f64| (a * a * std[d] * std[d] + s * s).sqrt();
                let expected = a_end * mean[d]
                    + (row[d] - a_eps * mean[d]) * sigma(a_end, s_end) / sigma(a_eps, s_eps);
                assert!(
                    (latent[d] - expected).abs() < 1e-3 * (1.0 + expected.abs()),
                    "{name}: latent {latent:?}, expected {expected} in dimension {d}"
                );
            }
        }
    }
}

/// The mean of a per-point difference and its standard error.
fn mean_and_std_error(differences: &[f64]) -> (f64, f64) {
    let n = differences.len() as f64;
    let mean = differences.iter().sum::<f64>() / n;
    let variance = differences.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (variance / n).sqrt())
}

/// A two-component mixture: its score's Jacobian is not diagonal (the responsibilities couple
/// the dimensions), so Hutchinson's estimate is noisy. The exact trace lands on the analytic
/// log p (with the corrections above); Rademacher and Gaussian probes scatter around it, their
/// mean within 4 standard errors, and the scatter is real (so a biased estimator would show).
/// On Gaussian data, whose Jacobian is diagonal, Rademacher probes are exact: εᵀJε = Σ J_ii.
#[test]
fn hutchinson_estimates_scatter_around_the_exact_trace() {
    let mixture = GaussianMixture::from_json(
        r#"{"weights":[1,2],"means":[[-1.0,0.5],[1.0,-0.5]],"stds":[[0.5,0.3],[0.4,0.6]]}"#,
    )
    .unwrap();
    let sde = Sde::from_name("vp").unwrap();
    let x = points(&mixture, 48, 2);
    let exact = solve(
        &mixture,
        sde,
        PredictionType::Epsilon,
        TraceEstimator::Exact,
        &x,
        0,
    );
    let expected = analytic_and_target(&mixture, &sde, &x, &exact);
    let worst = solver_error(&exact, &expected);
    eprintln!(
        "exact trace: nfe {}, max relative error {worst:.2e}",
        exact.nfe
    );
    assert!(worst < SOLVER_TOLERANCE, "{worst:e}");
    for trace in [TraceEstimator::Rademacher, TraceEstimator::Gaussian] {
        let estimate = solve(&mixture, sde, PredictionType::Epsilon, trace, &x, 0);
        let differences: Vec<f64> = estimate
            .log_likelihood
            .iter()
            .zip(&exact.log_likelihood)
            .map(|(e, x)| e - x)
            .collect();
        let (mean, std_error) = mean_and_std_error(&differences);
        eprintln!(
            "{}: nfe {}, mean difference {mean:.4} ± {std_error:.4}",
            trace.name(),
            estimate.nfe
        );
        assert!(std_error > 1e-3, "{}: no scatter", trace.name());
        assert!(mean.abs() < 4.0 * std_error, "{}: biased", trace.name());
        // Probes are seeded per sample: the last 8 points solved on their own keep their
        // estimates up to the solver's tolerance (the steps differ), far below the scatter.
        let alone = solve(&mixture, sde, PredictionType::Epsilon, trace, &x[80..], 40);
        for (a, b) in alone
            .log_likelihood
            .iter()
            .zip(&estimate.log_likelihood[40..])
        {
            assert!(
                (a - b).abs() < SOLVER_TOLERANCE * (1.0 + b.abs()),
                "{a} vs {b}"
            );
        }
    }

    let gaussian =
        GaussianMixture::from_json(r#"{"weights":[1],"means":[[0.2,-0.1]],"stds":[[0.5,0.9]]}"#)
            .unwrap();
    let x = points(&gaussian, 8, 3);
    let [exact, rademacher] = [TraceEstimator::Exact, TraceEstimator::Rademacher]
        .map(|trace| solve(&gaussian, sde, PredictionType::Epsilon, trace, &x, 0).log_likelihood);
    for (e, r) in exact.iter().zip(&rademacher) {
        assert!(
            (e - r).abs() < SOLVER_TOLERANCE * (1.0 + e.abs()),
            "{e} vs {r}"
        );
    }
}

/// The default VJP, by autodiff through a network whose weights stay constants, against central
/// differences of its predictions (f32, so a step of 1e-2 and a 1e-3 relative tolerance).
#[test]
fn network_vjps_match_finite_differences() {
    let device = Device::flex();
    let network = DenoisingNetwork::Mlp(MlpDenoiser::new(&MlpConfig::new(3), &device).unwrap());
    let denoiser = NetworkDenoiser::new(&network, PredictionType::Epsilon);
    let (batch, dim) = (4, 3);
    let x: Vec<f64> = (0..batch * dim).map(|i| (i as f64 * 0.7).sin()).collect();
    let w: Vec<f64> = (0..batch * dim).map(|i| (i as f64 * 1.3).cos()).collect();
    let timesteps = [10.0, 200.0, 500.0, 900.0];
    let tensor = |v: &[f64]| {
        from_host_f64(
            v.to_vec(),
            [batch, dim, 1, 1],
            &device,
            burn::tensor::DType::F32,
        )
    };
    let predict =
        |v: &[f64]| to_host_f64(denoiser.predict(tensor(v), &timesteps, None).unwrap()).unwrap();
    let (output, vjp) = denoiser
        .predict_with_vjp(tensor(&x), &timesteps, None, tensor(&w))
        .unwrap();
    assert!(!output.is_autodiff() && !vjp.is_autodiff());
    let (output, vjp) = (to_host_f64(output).unwrap(), to_host_f64(vjp).unwrap());
    assert_eq!(output, predict(&x), "the prediction is predict's");
    let h = 1e-2;
    let mut finite_difference = vec![0.0; batch * dim];
    for i in 0..batch * dim {
        // Rows never mix, so the derivative by x_i only reaches its own row's outputs.
        let row = i / dim;
        let shifted = |step: f64| {
            let mut y = x.clone();
            y[i] += step;
            predict(&y)
        };
        let (up, down) = (shifted(h), shifted(-h));
        finite_difference[i] = (row * dim..(row + 1) * dim)
            .map(|j| w[j] * (up[j] - down[j]) / (2.0 * h))
            .sum();
    }
    let scale = vjp.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    for (ours, fd) in vjp.iter().zip(&finite_difference) {
        assert!(
            (ours - fd).abs() < 1e-3 * scale,
            "{vjp:?} vs {finite_difference:?}"
        );
    }
}
