//! `diffuse demo`: the main job on an embedded default, with nothing to download or prepare.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::DType;
use clap::Args;
use diffuse_core::forward::PredictionType;
use diffuse_core::gmm::{GaussianMixture, GmmDenoiser};
use diffuse_core::io::{HostTensor, write_safetensors};
use diffuse_core::plot::{ScatterLayer, scatter_panels_png};
use diffuse_core::sampler::{
    DdimOptions, DdpmOptions, GenerationConfig, SamplerKind, SamplingPlan, generate,
};
use diffuse_core::schedule::{BetaSchedule, NoiseSchedule, TimestepSpacing};
use rand::SeedableRng;

use super::{report_to, step_progress};
use crate::args::DeviceArgs;

/// Eight Gaussians on a ring of radius 2, the classic 2-D diffusion toy.
const EIGHT_GAUSSIANS: &str = include_str!("../../examples/mixtures/eight-gaussians.json");

#[derive(Args, Debug)]
pub struct DemoCommand {
    /// Folder for the samples (safetensors) and the scatter plot (PNG).
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// Samples per sampler.
    #[arg(long, default_value_t = 2000)]
    n: usize,
    /// Seed of the initial and step noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    device: DeviceArgs,
}

impl DemoCommand {
    pub fn run(&self) -> Result<()> {
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("creating output folder {}", self.out.display()))?;
        let mixture = GaussianMixture::from_json(EIGHT_GAUSSIANS)?;
        let linear = BetaSchedule::Linear {
            beta_start: 1e-4,
            beta_end: 0.02,
        };
        let schedule = NoiseSchedule::new(&linear, 1000, false)?;
        let denoiser = GmmDenoiser::new(mixture.clone(), schedule.clone(), PredictionType::Epsilon);
        let config = GenerationConfig {
            count: self.n,
            batch_size: self.n,
            seed: self.seed,
            device: self.device.build()?,
            dtype: DType::F32,
            class_labels: None,
            init_noise: None,
        };
        println!(
            "Sampling {} points from the exact denoiser of eight 2-D Gaussians (linear schedule, T = 1000).",
            self.n
        );
        let runs = [
            ("ddpm-1000", SamplerKind::Ddpm(DdpmOptions::default()), 1000),
            ("ddim-50", SamplerKind::Ddim(DdimOptions::default()), 50),
            ("ddim-10", SamplerKind::Ddim(DdimOptions::default()), 10),
        ];
        let mut results = Vec::new();
        for (name, sampler, steps) in runs {
            let plan = SamplingPlan::new(sampler, &schedule, steps, TimestepSpacing::Leading, 0)?;
            let bar = step_progress(name);
            let samples = generate(
                &denoiser,
                &schedule,
                &plan,
                &[2],
                &config,
                &mut report_to(&bar),
            )?;
            bar.finish_and_clear();
            let path = self.out.join(format!("{name}.safetensors"));
            let tensor = HostTensor {
                shape: vec![self.n, 2],
                values: samples.iter().map(|&v| v as f32).collect(),
            };
            write_safetensors(&path, &[("samples", &tensor)])?;
            results.push((name, samples));
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
        let data: Vec<f64> = mixture.sample(self.n, &mut rng).concat();

        println!(
            "\n{:<10} {:>12} {:>14} {:>16}",
            "sampler", "avg log p", "max weight err", "max error / s.e."
        );
        for (name, samples) in
            std::iter::once(("data", &data)).chain(results.iter().map(|(n, s)| (*n, s)))
        {
            let log_p = samples
                .chunks(2)
                .map(|x| mixture.log_density(x))
                .sum::<f64>()
                / self.n as f64;
            let stats = mixture.component_stats(samples);
            let weight_err = stats
                .iter()
                .map(|s| (s.weight - s.true_weight).abs())
                .fold(0.0, f64::max);
            let in_se = stats
                .iter()
                .map(|s| s.max_error_in_std_errors())
                .fold(0.0, f64::max);
            println!("{name:<10} {log_p:>12.4} {weight_err:>14.4} {in_se:>16.2}");
        }

        println!(
            "(per-component weight and mean errors against the true mixture, in Monte-Carlo standard \
             errors; over 24 statistics, values up to ~3.5 are chance, larger ones are sampler error)"
        );

        let png = self.out.join("samples.png");
        let grey = [150, 150, 150];
        let panels: Vec<Vec<ScatterLayer>> = std::iter::once(vec![ScatterLayer {
            points: &data,
            color: [40, 40, 40],
        }])
        .chain(results.iter().map(|(_, s)| {
            vec![
                ScatterLayer {
                    points: &data,
                    color: grey,
                },
                ScatterLayer {
                    points: s,
                    color: [200, 40, 40],
                },
            ]
        }))
        .collect();
        scatter_panels_png(&png, &panels, 3.0, 320)?;
        println!(
            "\nPanels of {}: exact draws, then {} (red, over the data in grey).",
            png.display(),
            results
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "Samples: {}/<sampler>.safetensors (tensor `samples`, [N, 2]).",
            self.out.display()
        );
        Ok(())
    }
}
