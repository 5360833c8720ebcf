//! One error type for everything a user can get wrong; panics are reserved for bugs.

use std::path::PathBuf;

/// Errors returned by the toolkit. Each message names the offending input.
#[derive(Debug, thiserror::Error)]
pub enum DiffuseError {
    /// A configuration value is out of range or inconsistent with another one.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A name (schedule, sampler, spacing, ...) that the toolkit does not know.
    #[error("unknown {kind} '{name}' (expected one of: {expected})")]
    UnknownName {
        kind: &'static str,
        name: String,
        expected: &'static str,
    },
    /// A file whose content cannot be used.
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    /// An I/O failure, with the path it happened on.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Training cannot go on (the loss diverged); the message says what was kept.
    #[error("training stopped: {0}")]
    Training(String),
    /// A tensor operation failed on the device (read-back, unsupported dtype, ...).
    #[error("tensor error: {0}")]
    Tensor(String),
    /// An ODE integration could not go on (a non-finite right-hand side, a vanishing step).
    #[error("ODE solver failed: {0}")]
    Solver(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = DiffuseError> = std::result::Result<T, E>;

impl DiffuseError {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::InvalidConfig(message.into())
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::BadFile {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A config error as an error of the file the config was read from; others pass unchanged.
    pub(crate) fn in_file(self, path: impl Into<PathBuf>) -> Self {
        match self {
            Self::InvalidConfig(message) => Self::bad_file(path, message),
            other => other,
        }
    }
}
