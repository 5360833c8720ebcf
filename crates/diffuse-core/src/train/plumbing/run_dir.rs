//! A run's output folder: created and checked writable before the first step, and the
//! `summary.json` written when the run ends.

use std::path::Path;

use serde::Serialize;

use crate::error::{DiffuseError, Result};
use crate::io::write_atomically;

/// Creates `out` with its `subfolders` and checks that a file can be written there, so that a
/// run fails before its first step instead of after the first hour of training.
pub fn prepare_out_dir(out: &Path, subfolders: &[&str]) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| DiffuseError::io(out, e))?;
    for folder in subfolders {
        std::fs::create_dir_all(out.join(folder)).map_err(|e| DiffuseError::io(out, e))?;
    }
    let probe = out.join(".write-test");
    write_atomically(&probe, b"ok")?;
    std::fs::remove_file(&probe).map_err(|e| DiffuseError::io(&probe, e))
}

/// Writes `summary` as `out/summary.json`.
pub fn write_summary(out: &Path, summary: &impl Serialize) -> Result<()> {
    let json = serde_json::to_string_pretty(summary).expect("summaries always serialise");
    write_atomically(&out.join("summary.json"), json.as_bytes())
}
