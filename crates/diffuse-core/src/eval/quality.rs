//! The sampler × NFE → FD table of a trained image pipeline (DDIM's Table 1 done with our
//! metrics): every cell draws the same seeded samples, classes 0, 1, …, K−1 in turn for
//! class-conditional models, with trailing timestep spacing and x̂₀ clipped to [−1, 1] by
//! every sampler that can clip it (not PNDM or Euler ancestral).

use serde::Serialize;

use super::features::{FeatureNetwork, quantize_to_8bit};
use super::report::{ImageMetrics, ImageReference, evaluate_images};
use crate::data::Dataset;
use crate::error::Result;
use crate::pipeline::{DiffusionPipeline, SamplerOverrides};
use crate::process::schedule::TimestepSpacing;
use crate::sampling::{GenerationConfig, Recipe, SamplerChoice, SamplerName, X0Limit};

/// Which cells to fill and how many samples each gets.
#[derive(Debug, Clone)]
pub struct QualitySettings {
    pub samplers: Vec<SamplerName>,
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

/// The cell's sampler: `steps` of `name` with trailing spacing, x̂₀ clipped where it can be.
fn cell_recipe(pipeline: &DiffusionPipeline, name: SamplerName, steps: usize) -> Result<Recipe> {
    let clip = name.capabilities().x0_limit.then_some(X0Limit::Dynamic {
        ratio: 1.0,
        max_value: 1.0,
    });
    let choice = SamplerChoice {
        name: Some(name),
        overrides: SamplerOverrides {
            x0_limit: clip,
            ..SamplerOverrides::default()
        },
        steps,
        spacing: Some(TimestepSpacing::Trailing),
        steps_offset: Some(0),
    };
    Ok(Recipe::plan(choice.plan(&pipeline.scheduler)?))
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
    let reference = ImageReference::new(network, reference, &mut |_, _| {})?;
    let mut generation = settings.generation.clone();
    generation.class_labels = pipeline.network.balanced_class_labels(generation.count);
    let mut cells = Vec::new();
    for &name in &settings.samplers {
        for &nfe in &settings.nfes {
            let steps = name.steps_for_evaluations(nfe);
            let recipe = cell_recipe(pipeline, name, steps)?;
            let drawn = recipe.draw_pipeline(pipeline, None, &generation, &mut ())?;
            let metrics = evaluate_images(
                network,
                &quantize_to_8bit(&drawn.drawn.samples),
                generation.class_labels.as_deref(),
                &reference,
                generation.seed,
                &mut |_, _| {},
            )?;
            let cell = QualityCell {
                sampler: name.to_string(),
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
pub fn markdown_table(cells: &[QualityCell], samplers: &[SamplerName], nfes: &[usize]) -> String {
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
                    .find(|c| c.sampler == sampler.as_str() && c.nfe == nfe)
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
