//! Checkpoints that survive a crash at any moment.
//!
//! A checkpoint is a folder `checkpoints/step-NNNNNNNN/` holding the model, its EMA, the optimizer
//! moments and `state.json` (step, data order, RNG position, the full config). It is written
//! under a temporary name, every file synced, then renamed into place; only then does
//! `checkpoints/LATEST` (itself replaced atomically) point at it, and only then is the checkpoint
//! before the previous one deleted. A crash at any point leaves LATEST naming a complete folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::timesteps::LossHistory;
use crate::data::loader::DataOrder;
use crate::error::{DiffuseError, Result};
use crate::io::{HostTensor, read_safetensors, write_atomically, write_safetensors};

const LATEST: &str = "LATEST";
const STATE: &str = "state.json";
const MODEL: &str = "model.safetensors";
const EMA: &str = "ema.safetensors";
const OPTIMIZER: &str = "optimizer.safetensors";
/// The fitted network config (diffusers config.json or MlpDenoiser config), rebuilt on resume.
pub const MODEL_CONFIG: &str = "model_config.json";
/// Complete checkpoints kept: the newest and the one before it.
const KEEP: usize = 2;

/// Everything besides tensors that a resumed run needs to continue exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    /// Optimisation steps completed.
    pub step: usize,
    /// AdamW updates applied (t of its bias correction).
    pub optimizer_updates: u64,
    /// Where the next batch starts.
    pub data_order: DataOrder,
    /// The step noise of step s comes from ChaCha8 stream s·grad_accumulation + micro-batch of
    /// the run's seed, so the step count is the whole RNG state; recorded for readers.
    pub rng: String,
    pub class_names: Vec<String>,
    pub config: TrainConfig,
    /// Importance sampling's L_vlb history, which decides the next timesteps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_history: Option<LossHistory>,
}

/// The tensors of a checkpoint, by parameter path.
pub struct CheckpointTensors {
    pub model: BTreeMap<String, HostTensor>,
    pub ema: BTreeMap<String, HostTensor>,
    pub optimizer: BTreeMap<String, HostTensor>,
}

/// A complete checkpoint read back.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub state: TrainingState,
    pub model_config_json: String,
    pub tensors: CheckpointTensors,
}

fn step_name(step: usize) -> String {
    format!("step-{step:08}")
}

fn write_tensors(path: &Path, tensors: &BTreeMap<String, HostTensor>) -> Result<()> {
    let named: Vec<(&str, &HostTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    write_safetensors(path, &named)
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| DiffuseError::io(dir, e))
}

/// Writes every file of a checkpoint into `checkpoints/.incomplete-step-N/` and returns that
/// folder; nothing refers to it until [`commit`] renames it.
pub fn write_incomplete(
    checkpoints: &Path,
    state: &TrainingState,
    model_config_json: &str,
    tensors: &CheckpointTensors,
) -> Result<PathBuf> {
    let tmp = checkpoints.join(format!(".incomplete-{}", step_name(state.step)));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| DiffuseError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| DiffuseError::io(&tmp, e))?;
    write_tensors(&tmp.join(MODEL), &tensors.model)?;
    write_tensors(&tmp.join(EMA), &tensors.ema)?;
    write_tensors(&tmp.join(OPTIMIZER), &tensors.optimizer)?;
    write_atomically(&tmp.join(MODEL_CONFIG), model_config_json.as_bytes())?;
    let state_json = serde_json::to_string_pretty(state).expect("the state always serialises");
    write_atomically(&tmp.join(STATE), state_json.as_bytes())?;
    sync_dir(&tmp)?;
    Ok(tmp)
}

/// Renames a folder from [`write_incomplete`] into place, points LATEST at it, and deletes
/// checkpoints older than the previous one and any leftovers of interrupted writes.
pub fn commit(checkpoints: &Path, incomplete: &Path, step: usize) -> Result<PathBuf> {
    let name = step_name(step);
    let done = checkpoints.join(&name);
    if done.exists() {
        std::fs::remove_dir_all(&done).map_err(|e| DiffuseError::io(&done, e))?;
    }
    std::fs::rename(incomplete, &done).map_err(|e| DiffuseError::io(&done, e))?;
    sync_dir(checkpoints)?;
    write_atomically(&checkpoints.join(LATEST), name.as_bytes())?;
    prune(checkpoints)?;
    Ok(done)
}

/// Removes leftovers of interrupted writes and all but the newest [`KEEP`] checkpoints.
fn prune(checkpoints: &Path) -> Result<()> {
    let mut complete = Vec::new();
    let entries = std::fs::read_dir(checkpoints).map_err(|e| DiffuseError::io(checkpoints, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with(".incomplete-") {
            let _ = std::fs::remove_dir_all(entry.path());
        } else if name.starts_with("step-") {
            complete.push(name);
        }
    }
    complete.sort();
    for old in complete.iter().rev().skip(KEEP) {
        let path = checkpoints.join(old);
        std::fs::remove_dir_all(&path).map_err(|e| DiffuseError::io(&path, e))?;
    }
    Ok(())
}

/// The folder LATEST points at in `checkpoints`.
pub fn latest(checkpoints: &Path) -> Result<PathBuf> {
    let pointer = checkpoints.join(LATEST);
    let name = std::fs::read_to_string(&pointer).map_err(|e| DiffuseError::io(&pointer, e))?;
    let dir = checkpoints.join(name.trim());
    if !dir.join(STATE).is_file() {
        return Err(DiffuseError::bad_file(
            &pointer,
            format!(
                "points at `{}`, which is not a complete checkpoint",
                name.trim()
            ),
        ));
    }
    Ok(dir)
}

/// The run folder a checkpoint folder belongs to (`RUN/checkpoints/step-N`).
pub fn run_dir(checkpoint: &Path) -> PathBuf {
    checkpoint
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The checkpoint folder `dir` designates and its state, without reading tensors.
pub fn load_state(dir: &Path) -> Result<(PathBuf, TrainingState)> {
    let dir = if dir.join(STATE).is_file() {
        dir.to_path_buf()
    } else if dir.join("checkpoints").is_dir() {
        latest(&dir.join("checkpoints"))?
    } else {
        return Err(DiffuseError::config(format!(
            "{} is neither a run folder (with checkpoints/) nor a checkpoint folder",
            dir.display()
        )));
    };
    let state_path = dir.join(STATE);
    let text =
        std::fs::read_to_string(&state_path).map_err(|e| DiffuseError::io(&state_path, e))?;
    let state: TrainingState = serde_json::from_str(&text)
        .map_err(|e| DiffuseError::bad_file(&state_path, format!("malformed state: {e}")))?;
    Ok((dir, state))
}

/// Reads a checkpoint folder: a run folder (its latest checkpoint) or a `step-N` folder.
pub fn load(dir: &Path) -> Result<Checkpoint> {
    let (dir, state) = load_state(dir)?;
    let config_path = dir.join(MODEL_CONFIG);
    let model_config_json =
        std::fs::read_to_string(&config_path).map_err(|e| DiffuseError::io(&config_path, e))?;
    let read = |name: &str| -> Result<BTreeMap<String, HostTensor>> {
        Ok(read_safetensors(&dir.join(name))?.into_iter().collect())
    };
    let tensors = CheckpointTensors {
        model: read(MODEL)?,
        ema: read(EMA)?,
        optimizer: read(OPTIMIZER)?,
    };
    Ok(Checkpoint {
        dir,
        state,
        model_config_json,
        tensors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: usize) -> TrainingState {
        TrainingState {
            step,
            optimizer_updates: step as u64,
            data_order: DataOrder::new(1),
            rng: "chacha8".into(),
            class_names: vec![],
            config: TrainConfig::default(),
            loss_history: None,
        }
    }

    fn tensors(value: f32) -> CheckpointTensors {
        let t = || {
            BTreeMap::from([(
                "w".to_string(),
                HostTensor {
                    shape: vec![2],
                    values: vec![value; 2],
                },
            )])
        };
        CheckpointTensors {
            model: t(),
            ema: t(),
            optimizer: t(),
        }
    }

    #[test]
    fn a_crash_before_commit_leaves_the_previous_checkpoint_loadable() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = dir.path().join("checkpoints");
        let first = write_incomplete(&checkpoints, &state(10), "{}", &tensors(1.0)).unwrap();
        commit(&checkpoints, &first, 10).unwrap();
        // The next checkpoint dies half-way: one file truncated, never renamed into place.
        let second = write_incomplete(&checkpoints, &state(20), "{}", &tensors(2.0)).unwrap();
        let model = second.join(MODEL);
        let bytes = std::fs::read(&model).unwrap();
        std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.state.step, 10);
        assert_eq!(loaded.tensors.model["w"].values, vec![1.0, 1.0]);
        // The next successful save clears the debris and moves LATEST.
        let third = write_incomplete(&checkpoints, &state(30), "{}", &tensors(3.0)).unwrap();
        commit(&checkpoints, &third, 30).unwrap();
        assert!(!second.exists());
        assert_eq!(load(dir.path()).unwrap().state.step, 30);
    }

    #[test]
    fn only_the_two_newest_checkpoints_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        for step in [1, 2, 3] {
            let tmp = write_incomplete(dir.path(), &state(step), "{}", &tensors(0.0)).unwrap();
            commit(dir.path(), &tmp, step).unwrap();
        }
        assert!(!dir.path().join(step_name(1)).exists());
        assert!(dir.path().join(step_name(2)).exists());
        assert_eq!(latest(dir.path()).unwrap(), dir.path().join(step_name(3)));
    }

    #[test]
    fn a_latest_pointer_to_nothing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LATEST), "step-00000005").unwrap();
        assert!(
            latest(dir.path())
                .unwrap_err()
                .to_string()
                .contains("not a complete checkpoint")
        );
    }
}
