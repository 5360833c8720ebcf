//! `metrics.jsonl`: one JSON line per logged step, also kept in memory for the loss curve and the
//! summary.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{DiffuseError, Result};
use crate::io::write_atomically;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsLine {
    pub step: usize,
    /// The loss of this step.
    pub loss: f64,
    /// Mean loss since the previous line.
    pub loss_mean: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub images_per_second: f64,
}

/// What one optimisation step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    pub loss: f64,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
    pub lr: f64,
}

/// The steps since the last line: when they began, their summed loss, how many.
#[derive(Debug)]
struct Interval {
    began: Instant,
    loss_sum: f64,
    steps: usize,
}

impl Interval {
    fn new() -> Self {
        Self {
            began: Instant::now(),
            loss_sum: 0.0,
            steps: 0,
        }
    }
}

/// A run's logged lines, the file they are appended to, and the interval since the last one.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    lines: Vec<MetricsLine>,
    file: Option<File>,
    interval: Interval,
}

impl MetricsLog {
    /// No lines yet; they go to `path` once [`MetricsLog::open`] is called.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lines: Vec::new(),
            file: None,
            interval: Interval::new(),
        }
    }

    /// The lines of `path` up to step `step`: a resumed run forgets those after its checkpoint.
    pub fn resumed(path: PathBuf, step: usize) -> Result<Self> {
        let lines = read_metrics(&path)?
            .into_iter()
            .filter(|m| m.step <= step)
            .collect();
        Ok(Self {
            lines,
            ..Self::new(path)
        })
    }

    /// The logged lines, oldest first.
    pub fn lines(&self) -> &[MetricsLine] {
        &self.lines
    }

    /// Rewrites the file to hold exactly the lines so far, opens it for appending, and starts
    /// the first interval.
    pub fn open(&mut self) -> Result<()> {
        let mut text = String::new();
        for line in &self.lines {
            text.push_str(&serde_json::to_string(line).expect("metrics always serialise"));
            text.push('\n');
        }
        write_atomically(&self.path, text.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| DiffuseError::io(&self.path, e))?;
        self.file = Some(file);
        self.interval = Interval::new();
        Ok(())
    }

    /// Counts a step's loss into the current interval.
    pub fn count(&mut self, loss: f64) {
        self.interval.loss_sum += loss;
        self.interval.steps += 1;
    }

    /// Appends the line of step `step`, with the interval's mean loss and throughput, and starts
    /// the next interval.
    pub fn write(&mut self, step: usize, stats: StepStats, images_per_step: usize) -> Result<()> {
        let seconds = self.interval.began.elapsed().as_secs_f64().max(1e-9);
        let line = MetricsLine {
            step,
            loss: stats.loss,
            loss_mean: self.interval.loss_sum / self.interval.steps as f64,
            lr: stats.lr,
            grad_norm: stats.grad_norm,
            images_per_second: (self.interval.steps * images_per_step) as f64 / seconds,
        };
        let json = serde_json::to_string(&line).expect("metrics always serialise");
        let file = self
            .file
            .as_mut()
            .expect("the log is opened before the run");
        writeln!(file, "{json}").map_err(|e| DiffuseError::io(&self.path, e))?;
        file.flush().map_err(|e| DiffuseError::io(&self.path, e))?;
        self.lines.push(line);
        self.interval = Interval::new();
        Ok(())
    }
}

/// Reads a run's metrics.jsonl (missing file: no lines).
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsLine>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DiffuseError::io(path, e)),
    };
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| DiffuseError::bad_file(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_numbers_read_back_bit_for_bit() {
        // Values a run logged that serde_json's default float parser read back one ulp off.
        let line = MetricsLine {
            step: 2,
            loss: 1.0173662232118659,
            loss_mean: 1.2076116077660117,
            lr: 0.00010999999999999999,
            grad_norm: 3.8662039074276198,
            images_per_second: 33329.49696935926,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let text = serde_json::to_string(&line).unwrap();
        std::fs::write(&path, format!("{text}\n")).unwrap();
        let read = read_metrics(&path).unwrap();
        assert_eq!(read.len(), 1);
        for (a, b) in [
            (read[0].loss, line.loss),
            (read[0].loss_mean, line.loss_mean),
            (read[0].lr, line.lr),
            (read[0].grad_norm, line.grad_norm),
        ] {
            assert_eq!(a.to_bits(), b.to_bits(), "{b} read back as {a}");
        }
    }
}
