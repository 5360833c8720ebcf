//! Samplers driven by the exact Gaussian-mixture denoiser: with no model error, what is left is the
//! sampler's own error, which these tests bound.

use burn::tensor::{DType, Device};
use diffuse_core::gmm::GmmDenoiser;
use diffuse_core::process::forward::PredictionType;
use diffuse_core::process::schedule::{NoiseSchedule, TimestepSpacing};
use diffuse_core::sampling::{
    DdimOptions, DdpmOptions, GenerationConfig, ParallelSettings, SamplerKind, SamplerSettings,
    SamplingPlan, generate, generate_parallel,
};

mod common;
use common::{assert_matches_mixture, three_blobs};

fn draw(
    denoiser: &GmmDenoiser,
    schedule: &NoiseSchedule,
    sampler: SamplerKind,
    steps: usize,
    count: usize,
    batch_size: usize,
) -> Vec<f64> {
    draw_spaced(
        denoiser,
        schedule,
        sampler,
        steps,
        TimestepSpacing::Leading,
        count,
        batch_size,
    )
}

fn generation(count: usize, batch_size: usize) -> GenerationConfig {
    GenerationConfig {
        count,
        batch_size,
        seed: 20261125,
        device: Device::flex(),
        dtype: DType::F64,
        class_labels: None,
        init_noise: None,
    }
}

fn draw_spaced(
    denoiser: &GmmDenoiser,
    schedule: &NoiseSchedule,
    sampler: SamplerKind,
    steps: usize,
    spacing: TimestepSpacing,
    count: usize,
    batch_size: usize,
) -> Vec<f64> {
    let plan = SamplingPlan::new(sampler, schedule, steps, spacing, 0).unwrap();
    let config = GenerationConfig {
        count,
        batch_size,
        seed: 20261125,
        device: Device::flex(),
        dtype: DType::F32,
        class_labels: None,
        init_noise: None,
    };
    generate(denoiser, schedule, &plan, &[2], &config, &mut |_, _| {}).unwrap()
}

#[test]
fn ddpm_1000_reproduces_the_mixture() {
    let (denoiser, schedule) = three_blobs(PredictionType::Epsilon);
    let samples = draw(
        &denoiser,
        &schedule,
        SamplerKind::Ddpm(DdpmOptions::default()),
        1000,
        4000,
        4000,
    );
    assert_matches_mixture("ddpm-1000", denoiser.mixture(), &samples);
}

/// DDIM has a discretisation bias of its own that shrinks with the step count. Measured with
/// `diffuse sample --gmm examples/mixtures/three-blobs.json --sampler ddim --steps S --n 20000
/// --seed 3`, the worst component-mean coordinate (third blob, y, s = 0.4, true −1.2) was −1.155,
/// −1.173, −1.183, −1.191 at S = 50, 100, 200, 1000. At 100 steps that bias (0.027) stays under
/// one standard error while the blob holds fewer than (0.4/0.027)² ≈ 219 samples, i.e. n ≈ 1000.
#[test]
fn ddim_100_reproduces_the_mixture() {
    let (denoiser, schedule) = three_blobs(PredictionType::VPrediction);
    let samples = draw(
        &denoiser,
        &schedule,
        SamplerKind::Ddim(DdimOptions::default()),
        100,
        1000,
        1000,
    );
    assert_matches_mixture("ddim-100", denoiser.mixture(), &samples);
}

#[test]
fn ddim_error_shrinks_with_more_steps() {
    // DDIM (η = 0) integrates the probability-flow ODE; from the same x_T, its endpoint converges
    // to the 1000-step solution as N grows.
    let (denoiser, schedule) = three_blobs(PredictionType::Epsilon);
    let ddim = SamplerKind::Ddim(DdimOptions::default());
    let reference = draw(&denoiser, &schedule, ddim.clone(), 1000, 500, 500);
    let errors: Vec<f64> = [10, 20, 50]
        .iter()
        .map(|&steps| {
            let samples = draw(&denoiser, &schedule, ddim.clone(), steps, 500, 500);
            let sq: f64 = samples
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).powi(2))
                .sum();
            (sq / 500.0).sqrt()
        })
        .collect();
    println!("RMS distance to DDIM-1000 at 10, 20, 50 steps: {errors:?}");
    assert!(errors[0] > errors[1] && errors[1] > errors[2], "{errors:?}");
}

#[test]
fn samples_do_not_depend_on_the_batch_size() {
    let (denoiser, schedule) = three_blobs(PredictionType::Sample);
    let ddpm = SamplerKind::Ddpm(DdpmOptions::default());
    let whole = draw(&denoiser, &schedule, ddpm.clone(), 20, 37, 37);
    let split = draw(&denoiser, &schedule, ddpm, 20, 37, 8);
    assert_eq!(whole, split);
}

fn rms_distance(a: &[f64], b: &[f64]) -> f64 {
    let sq: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    (sq / (a.len() / 2) as f64).sqrt()
}

fn named(name: &str, order: Option<usize>) -> SamplerKind {
    SamplerKind::configured(
        name.parse().unwrap(),
        &SamplerSettings {
            solver_order: order,
            ..SamplerSettings::default()
        },
    )
    .unwrap()
}

/// Every deterministic sampler integrates the same probability-flow ODE from the same x_T (trailing
/// spacing: all start at t = 999). Its error is the RMS distance to a 1000-step DPM-Solver++ 3M
/// solution; higher-order solvers must show it: DPM-Solver++ at 10 and 20 steps beats DDIM.
#[test]
fn higher_order_solvers_beat_ddim_at_few_steps() {
    let (denoiser, schedule) = three_blobs(PredictionType::Epsilon);
    let count = 200;
    let run = |sampler: SamplerKind, steps| {
        draw_spaced(
            &denoiser,
            &schedule,
            sampler,
            steps,
            TimestepSpacing::Trailing,
            count,
            count,
        )
    };
    let reference = run(named("dpmsolver++", Some(3)), 1000);
    let samplers = [
        ("ddim", named("ddim", None)),
        ("dpmsolver++ 2M", named("dpmsolver++", Some(2))),
        ("dpmsolver++ 3M", named("dpmsolver++", Some(3))),
        ("unipc 2", named("unipc", Some(2))),
        ("euler", named("euler", None)),
        ("heun", named("heun", None)),
    ];
    let mut table = std::collections::BTreeMap::new();
    for (name, sampler) in &samplers {
        let errors: Vec<f64> = [10, 20, 50]
            .iter()
            .map(|&steps| rms_distance(&run(sampler.clone(), steps), &reference))
            .collect();
        println!("{name:>15}: RMS error at 10, 20, 50 steps {errors:.4?}");
        assert!(
            errors[2] < errors[0],
            "{name}: more steps must help ({errors:?})"
        );
        table.insert(*name, errors);
    }
    for (i, steps) in [10, 20].iter().enumerate() {
        let (ddim, dpm) = (table["ddim"][i], table["dpmsolver++ 2M"][i]);
        assert!(
            dpm < ddim,
            "at {steps} steps DPM-Solver++ {dpm} vs DDIM {ddim}"
        );
    }
}

/// ParaDiGMS returns the sequential sampler's result within its tolerance, in far fewer
/// sequential rounds; DDPM's step noise is drawn up front in the sequential order.
#[test]
fn parallel_sampling_matches_sequential_in_fewer_rounds() {
    let (denoiser, schedule) = three_blobs(PredictionType::Epsilon);
    let settings = ParallelSettings {
        window: 20,
        tolerance: 1e-4,
    };
    for (name, sampler, steps) in [
        ("ddim", named("ddim", None), 100),
        ("ddpm", named("ddpm", None), 100),
        ("dpmsolver++", named("dpmsolver++", Some(2)), 50),
    ] {
        let plan =
            SamplingPlan::new(sampler, &schedule, steps, TimestepSpacing::Trailing, 0).unwrap();
        let config = generation(16, 16);
        let sequential =
            generate(&denoiser, &schedule, &plan, &[2], &config, &mut |_, _| {}).unwrap();
        let (parallel, report) = generate_parallel(
            &denoiser,
            &schedule,
            &plan,
            &[2],
            &config,
            &settings,
            &mut |_, _| {},
        )
        .unwrap();
        let worst = sequential
            .iter()
            .zip(&parallel)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        println!(
            "{name} {steps} steps: {} rounds, {} evaluations, max |parallel − sequential| {worst:.2e}",
            report.rounds, report.evaluations
        );
        assert!(worst < 10.0 * settings.tolerance, "{name}: {worst:e}");
        assert!(
            report.rounds * 2 < steps,
            "{name}: {} rounds",
            report.rounds
        );
    }
}

/// The NFE table of docs/PERFORMANCE.md (not part of CI; run with
/// `cargo test --release -p diffuse-core --test gmm_sampling -- --ignored --nocapture nfe_table`).
/// Quality: the NLL gap (nats) of 2000 samples under the true mixture, minus that of 2000 exact
/// draws (0 is perfect); for the ODE samplers also the RMS distance to a 1000-step
/// DPM-Solver++ 3M solution from the same x_T. Trailing spacing, ε-prediction.
#[test]
#[ignore]
fn nfe_table() {
    use diffuse_core::sampling::PndmOptions;
    use rand::SeedableRng;
    let (denoiser, schedule) = three_blobs(PredictionType::Epsilon);
    let mixture = denoiser.mixture().clone();
    let count = 2000;
    let exact = mixture.sample(count, &mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
    let exact_nll = -exact.iter().map(|x| mixture.log_density(x)).sum::<f64>() / count as f64;
    let nll_gap = |samples: &[f64]| {
        -samples
            .chunks(2)
            .map(|x| mixture.log_density(x))
            .sum::<f64>()
            / count as f64
            - exact_nll
    };
    let run = |sampler: SamplerKind, steps| {
        let plan =
            SamplingPlan::new(sampler, &schedule, steps, TimestepSpacing::Trailing, 0).unwrap();
        let nfe = plan.evaluations();
        let samples = generate(
            &denoiser,
            &schedule,
            &plan,
            &[2],
            &generation(count, count),
            &mut |_, _| {},
        )
        .unwrap();
        (samples, nfe)
    };
    let (reference, _) = run(named("dpmsolver++", Some(3)), 1000);
    let pndm = SamplerKind::Pndm(PndmOptions {
        skip_prk_steps: true,
        ..PndmOptions::default()
    });
    // (name, sampler, deterministic, steps for a given NFE budget)
    type StepsFor = fn(usize) -> usize;
    let one: StepsFor = |nfe| nfe;
    let heun_steps: StepsFor = |nfe| nfe.div_ceil(2);
    let pndm_steps: StepsFor = |nfe| nfe - 1;
    let rows: Vec<(&str, SamplerKind, bool, StepsFor)> = vec![
        ("ddpm", named("ddpm", None), false, one),
        ("ddim", named("ddim", None), true, one),
        ("dpmsolver++ 2M", named("dpmsolver++", Some(2)), true, one),
        ("dpmsolver++ 3M", named("dpmsolver++", Some(3)), true, one),
        (
            "dpmsolver++-sde 2M",
            named("dpmsolver++-sde", Some(2)),
            false,
            one,
        ),
        ("unipc 2", named("unipc", Some(2)), true, one),
        ("unipc 3", named("unipc", Some(3)), true, one),
        ("euler", named("euler", None), true, one),
        (
            "euler-ancestral",
            named("euler-ancestral", None),
            false,
            one,
        ),
        ("heun", named("heun", None), true, heun_steps),
        ("pndm (PLMS)", pndm, true, pndm_steps),
    ];
    let budgets = [5, 10, 20, 50, 100, 1000];
    println!(
        "| sampler | {} |",
        budgets.map(|b| format!("NFE {b}")).join(" | ")
    );
    println!("|---|{}", "---|".repeat(budgets.len()));
    for (name, sampler, deterministic, steps_for) in rows {
        let cells: Vec<String> = budgets
            .iter()
            .map(|&budget| {
                let (samples, nfe) = run(sampler.clone(), steps_for(budget).max(1));
                let mut cell = format!("{:.3}", nll_gap(&samples));
                if deterministic {
                    cell += &format!(" / {:.3}", rms_distance(&samples, &reference));
                }
                if nfe != budget {
                    cell += &format!(" ({nfe})");
                }
                cell
            })
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
}
