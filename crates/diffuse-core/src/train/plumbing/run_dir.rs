//! A run's output folder: created and checked writable before the first step, held by one run
//! at a time, and the `summary.json` written when the run ends.

use std::fs::{File, TryLockError};
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

/// One run's exclusive hold on its output folder, for as long as the value lives. The kernel
/// drops an advisory lock with the process that held it, so a crash or `kill -9` never leaves
/// a stale lock (the `.lock` file stays, unlocked).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes `out`'s lock (creating the folder), or fails when another run holds it.
    pub fn acquire(out: &Path) -> Result<Self> {
        std::fs::create_dir_all(out).map_err(|e| DiffuseError::io(out, e))?;
        let path = out.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| DiffuseError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(DiffuseError::config(format!(
                "{} is in use by another training run; wait for it to end or pick another --out",
                out.display()
            ))),
            Err(TryLockError::Error(e)) => Err(DiffuseError::io(&path, e)),
        }
    }
}

/// Writes `summary` as `out/summary.json`.
pub fn write_summary(out: &Path, summary: &impl Serialize) -> Result<()> {
    let json = serde_json::to_string_pretty(summary).expect("summaries always serialise");
    write_atomically(&out.join("summary.json"), json.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_folder_is_held_by_one_run_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("in use by another training run"),
            "{err}"
        );
        drop(first);
        RunLock::acquire(dir.path()).unwrap();
    }
}
