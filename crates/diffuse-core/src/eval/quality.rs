//! The sampler × NFE → FD table of a trained image pipeline (DDIM's Table 1 done with our
//! metrics): every cell draws the same seeded samples, classes 0, 1, …, K−1 in turn for
//! class-conditional models, with trailing timestep spacing and x̂₀ clipped to [−1, 1] by
//! every sampler that can clip it (not PNDM or Euler ancestral).

use serde::Serialize;

use super::features::{FeatureNetwork, quantize_to_8bit};
use super::report::{ImageMetrics, ImageReference, evaluate_images};
use crate::data::Dataset;
use crate::error::{DiffuseError, Result};
use crate::pipeline::{DiffusionPipeline, SamplerOverrides};
use crate::sampler::{GenerationConfig, SamplerKind, SamplingPlan, X0Limit, generate};
use crate::schedule::TimestepSpacing;

/// Which cells to fill and how many samples each gets.
#[derive(Debug, Clone)]
pub struct QualitySettings {
    /// `diffuse sample --scheduler` names.
    pub samplers: Vec<String>,
    /// Network evaluations per sample; Heun's two per step get ⌈NFE/2⌉ steps.
    pub nfes: Vec<usize>,
    pub generation: GenerationConfig,
}

/// One cell of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityCell {
    pub sampler: String,
    pub nfe: usize,
    pub steps: usize,
    #[serde(flatten)]
    pub metrics: ImageMetrics,
}

/// Steps that spend `nfe` network evaluations with `sampler`.
fn steps_for(sampler: &str, nfe: usize) -> usize {
    if sampler == "heun" {
        nfe.div_ceil(2)
    } else {
        nfe
    }
}

/// Fills the table cell by cell, with metrics in `network`'s feature space, reporting each cell to
/// `on_cell` as it is done.
pub fn sampler_quality_table(
    pipeline: &DiffusionPipeline,
    network: FeatureNetwork,
    reference: &Dataset,
    settings: &QualitySettings,
    on_cell: &mut dyn FnMut(&QualityCell),
) -> Result<Vec<QualityCell>> {
    let shape = pipeline.network.sample_shape().ok_or_else(|| {
        DiffuseError::config("the network config has no sample_size, so the image size is unknown")
    })?;
    let schedule = pipeline.scheduler.schedule()?;
    let denoiser = pipeline.denoiser()?;
    let reference = ImageReference::new(network, reference, &mut |_, _| {})?;
    let mut generation = settings.generation.clone();
    generation.class_labels = pipeline.network.balanced_class_labels(generation.count);
    let mut cells = Vec::new();
    for name in &settings.samplers {
        let clip = SamplerKind::takes_x0_limit(name).then_some(X0Limit::Dynamic {
            ratio: 1.0,
            max_value: 1.0,
        });
        let overrides = SamplerOverrides {
            x0_limit: clip,
            ..SamplerOverrides::default()
        };
        let sampler = pipeline.scheduler.sampler(Some(name), &overrides)?;
        for &nfe in &settings.nfes {
            let steps = steps_for(name, nfe);
            let plan = SamplingPlan::new(
                sampler.clone(),
                &schedule,
                steps,
                TimestepSpacing::Trailing,
                0,
            )?;
            let samples = generate(
                &denoiser,
                &schedule,
                &plan,
                &shape,
                &generation,
                &mut |_, _| {},
            )?;
            let metrics = evaluate_images(
                network,
                &quantize_to_8bit(&samples),
                generation.class_labels.as_deref(),
                &reference,
                generation.seed,
                &mut |_, _| {},
            )?;
            let cell = QualityCell {
                sampler: name.clone(),
                nfe,
                steps,
                metrics,
            };
            on_cell(&cell);
            cells.push(cell);
        }
    }
    Ok(cells)
}

/// The table as markdown: one row per sampler, "FD (class accuracy)" per NFE.
pub fn markdown_table(cells: &[QualityCell], samplers: &[String], nfes: &[usize]) -> String {
    let mut out = format!(
        "| sampler | {} |\n|---|{}\n",
        nfes.iter()
            .map(|n| format!("NFE {n}"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(nfes.len())
    );
    for sampler in samplers {
        let row: Vec<String> = nfes
            .iter()
            .map(|&nfe| {
                cells
                    .iter()
                    .find(|c| &c.sampler == sampler && c.nfe == nfe)
                    .map_or("—".into(), |c| match c.metrics.class_accuracy {
                        Some(accuracy) => format!("{:.2} ({:.0}%)", c.metrics.fd, 100.0 * accuracy),
                        None => format!("{:.2}", c.metrics.fd),
                    })
            })
            .collect();
        out.push_str(&format!("| {sampler} | {} |\n", row.join(" | ")));
    }
    out
}
