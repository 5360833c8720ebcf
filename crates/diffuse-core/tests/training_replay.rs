//! Training parity with PyTorch + diffusers: 50 steps of the demo recipe (and of v-prediction,
//! min-SNR-γ, gradient accumulation 2, the cosine schedule with weight decay, the learned-variance
//! hybrid loss, and a DiT), replayed from the same initial weights with the batches, timesteps,
//! noise and label dropout that tools/reference/train_replay_fixtures.py recorded. Each step's loss
//! and gradient norm must agree within 1e-5 relative, its learning rate within 1e-7, and the final
//! weights and EMA weights within 1e-4 (per tensor, max-norm relative).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use diffuse_core::data::{DataKind, Dataset};
use diffuse_core::io::{HostTensor, read_safetensors};
use diffuse_core::nn::network::DenoisingNetwork;
use diffuse_core::tensor_ops::relative_max_error;
use diffuse_core::train::objective::Objective;
use diffuse_core::train::{DrawnTimesteps, LossDraw, MicroBatch, StepInputs, TrainConfig, Trainer};

const STEP_TOLERANCE: f64 = 1e-5;
const WEIGHT_TOLERANCE: f64 = 1e-4;
/// The recorded rates are read back as f32: their rounding, 2⁻²⁴ relative, and a little more.
const LR_TOLERANCE: f64 = 1e-7;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay")
}

fn read(path: &Path) -> HashMap<String, HostTensor> {
    read_safetensors(path).unwrap_or_else(|e| panic!("{e}"))
}

fn ints(t: &HostTensor) -> Vec<usize> {
    t.values.iter().map(|&v| v as usize).collect()
}

/// The fixture's 64 images with their labels, as a dataset of 8 × 8 gray images.
fn dataset() -> Dataset {
    let data = read(&fixtures().join("data.safetensors"));
    let names = (0..10).map(|k| k.to_string()).collect();
    let labels = ints(&data["labels"]);
    Dataset::new(
        [1, 8, 8],
        data["images"].values.clone(),
        Some(labels),
        names,
        DataKind::Images,
    )
    .unwrap()
}

/// The recorded micro-batches, handed out in order.
struct Recorded<'a> {
    data: &'a Dataset,
    record: &'a HashMap<String, HostTensor>,
    next: usize,
}

impl Recorded<'_> {
    /// Row `row` of a recorded tensor whose first axis counts micro-batches.
    fn row(&self, name: &str, row: usize) -> &[f32] {
        let tensor = &self.record[name];
        let width = tensor.values.len() / tensor.shape[0];
        &tensor.values[row * width..(row + 1) * width]
    }
}

impl StepInputs for Recorded<'_> {
    fn micro_batch(&mut self, _: &Objective, _: usize, _: usize) -> MicroBatch {
        let row = self.next;
        self.next += 1;
        let indices: Vec<usize> = self
            .row("indices", row)
            .iter()
            .map(|&i| i as usize)
            .collect();
        let Dataset { values, labels, .. } = self.data.subset(&indices).unwrap();
        let timesteps: Vec<f64> = self
            .row("timesteps", row)
            .iter()
            .map(|&t| t as f64)
            .collect();
        MicroBatch {
            values,
            labels,
            draw: LossDraw {
                timesteps: DrawnTimesteps {
                    weights: vec![1.0; timesteps.len()],
                    timesteps,
                },
                noise: self.row("noise", row).to_vec(),
                labels: Some(
                    self.row("class_labels", row)
                        .iter()
                        .map(|&l| l as usize)
                        .collect(),
                ),
            },
            order_after: None,
        }
    }
}

fn relative(actual: f64, expected: f64) -> f64 {
    (actual - expected).abs() / expected.abs().max(f64::MIN_POSITIVE)
}

/// Compares every tensor of `network`, saved the way a pipeline folder holds it, with the
/// recorded `prefix/<name>` tensors.
fn assert_weights_match(
    case: &str,
    what: &str,
    network: &DenoisingNetwork,
    record: &HashMap<String, HostTensor>,
) {
    let dir = tempfile::tempdir().unwrap();
    network.save(dir.path()).unwrap();
    let file = dir
        .path()
        .join(network.component())
        .join("diffusion_pytorch_model.safetensors");
    let saved = read(&file);
    let mut worst = (0.0_f64, String::new());
    for (name, tensor) in &saved {
        if name.ends_with("to_k.bias") {
            // Its gradient is zero in exact arithmetic (softmax(q·(k + b)) does not depend on b:
            // q·b is the same for every key), so both frameworks move it by rounding noise, which
            // Adam's normalisation blows up to full-size steps: the two runs cannot agree on it,
            // and it cannot change the network's output.
            continue;
        }
        let expected = &record
            .get(&format!("{what}/{name}"))
            .unwrap_or_else(|| panic!("{case}: the replay has no {what}/{name}"));
        assert_eq!(tensor.shape, expected.shape, "{case}: {what}/{name}");
        let as_f64 = |t: &HostTensor| t.values.iter().map(|&v| v as f64).collect::<Vec<_>>();
        let err = relative_max_error(&as_f64(tensor), &as_f64(expected));
        if err > worst.0 {
            worst = (err, name.clone());
        }
    }
    let recorded = record
        .keys()
        .filter(|k| k.starts_with(&format!("{what}/")))
        .count();
    assert_eq!(saved.len(), recorded, "{case}: {what} tensor count");
    println!(
        "{case}: {what} worst relative error {:.2e} ({})",
        worst.0, worst.1
    );
    assert!(
        worst.0 <= WEIGHT_TOLERANCE,
        "{case}: {what}/{} differs by {:.2e} > {WEIGHT_TOLERANCE:e}",
        worst.1,
        worst.0
    );
}

fn replay(case: &str) {
    let dir = fixtures().join(case);
    let recipe = std::fs::read_to_string(dir.join("recipe.json")).unwrap();
    let config = TrainConfig {
        // Only named: the replay hands the trainer its data.
        dataset: "replay".into(),
        ..serde_json::from_str(&recipe).unwrap()
    };
    let data = dataset();
    let device = Device::default();
    let mut trainer =
        Trainer::from_pipeline(config.clone(), data.clone(), &dir.join("init"), &device).unwrap();
    let record = read(&dir.join("replay.safetensors"));
    let mut inputs = Recorded {
        data: &data,
        record: &record,
        next: 0,
    };
    let expected = |name: &str| {
        record[name]
            .values
            .iter()
            .map(|&v| v as f64)
            .collect::<Vec<_>>()
    };
    let (losses, norms, rates) = (expected("loss"), expected("grad_norm"), expected("lr"));
    let mut worst_loss: f64 = 0.0;
    let mut worst_norm: f64 = 0.0;
    for step in 0..config.steps {
        let stats = trainer.step_with(&mut inputs).unwrap();
        let (loss, norm) = (
            relative(stats.loss, losses[step]),
            relative(stats.grad_norm, norms[step]),
        );
        assert!(
            loss <= STEP_TOLERANCE && norm <= STEP_TOLERANCE,
            "{case} step {step}: loss {} vs {} ({loss:.2e}), grad norm {} vs {} ({norm:.2e})",
            stats.loss,
            losses[step],
            stats.grad_norm,
            norms[step]
        );
        assert!(
            (stats.lr - rates[step]).abs() <= LR_TOLERANCE * rates[step],
            "{case} step {step}: lr {} vs {}",
            stats.lr,
            rates[step]
        );
        worst_loss = worst_loss.max(loss);
        worst_norm = worst_norm.max(norm);
    }
    assert_eq!(
        inputs.next, record["noise"].shape[0],
        "{case}: micro-batches used"
    );
    println!("{case}: worst step loss error {worst_loss:.2e}, grad norm {worst_norm:.2e}");
    assert_weights_match(case, "model", trainer.network(), &record);
    assert_weights_match(case, "ema", trainer.ema(), &record);
}

#[test]
fn unet_epsilon_matches_pytorch() {
    replay("unet_epsilon");
}

#[test]
fn unet_v_prediction_matches_pytorch() {
    replay("unet_v_prediction");
}

#[test]
fn unet_min_snr_matches_pytorch() {
    replay("unet_min_snr");
}

#[test]
fn unet_gradient_accumulation_matches_pytorch() {
    replay("unet_accumulation");
}

#[test]
fn unet_cosine_schedule_with_weight_decay_matches_pytorch() {
    replay("unet_cosine");
}

#[test]
fn unet_learned_variance_hybrid_loss_matches_improved_diffusion() {
    replay("unet_learned_range");
}

#[test]
fn dit_epsilon_matches_pytorch() {
    replay("dit_epsilon");
}
