//! The typed error of every training stage.

use std::path::PathBuf;

use tmd_model::error::ModelError;

/// Why a training stage stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Reading or writing a file or directory failed.
    #[error("{path}: {source}")]
    Io {
        /// File or directory concerned.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A stage configuration could not be read: bad TOML, unknown key, wrong type.
    #[error("config {}{}: {message}", file.as_ref().map(|f| f.display().to_string()).unwrap_or_else(|| "<defaults/overrides>".into()), key.as_ref().map(|k| format!(", key '{k}'")).unwrap_or_default())]
    Config {
        /// The config file, if the problem is in it.
        file: Option<PathBuf>,
        /// The offending key, when known.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A checkpoint is damaged or incomplete (bad checksum, missing file, unreadable state).
    #[error("corrupt checkpoint {path}: {reason}")]
    CorruptCheckpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Every checkpoint of a run failed verification: starting over would train over the run's
    /// history, so the run stops instead.
    #[error(
        "no valid checkpoint remains in {}: {} corrupt checkpoint(s) moved aside ({}); not \
         starting over a run's history. Restore a checkpoint, or to start from step 0 on purpose \
         remove the *.corrupt directories and loss.csv (or use a fresh directory)",
        run_dir.display(),
        corrupt.len(),
        corrupt.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NoValidCheckpoint {
        /// The run directory.
        run_dir: PathBuf,
        /// The corrupt checkpoints, moved aside.
        corrupt: Vec<PathBuf>,
    },
    /// A checkpoint was written by a run with different settings.
    #[error("checkpoint {path} was written with config hash {found}, this run has {expected}; use a fresh directory")]
    ConfigMismatch {
        /// The checkpoint directory.
        path: PathBuf,
        /// Hash of this run's settings.
        expected: String,
        /// Hash stored in the checkpoint.
        found: String,
    },
    /// A loss, gradient norm or parameter became NaN or infinite.
    #[error("non-finite {what} at step {step}: {value}")]
    NonFinite {
        /// Optimizer step (1-based) at which it was detected.
        step: u64,
        /// What was checked, e.g. `"loss"` or `"parameter blocks.0.ffn.fc1.weight"`.
        what: String,
        /// The offending value.
        value: f64,
    },
    /// A tensor handed to a stage has the wrong shape.
    #[error("{what}: expected shape {expected:?}, found {found:?}")]
    Shape {
        /// Which tensor.
        what: String,
        /// Expected shape.
        expected: Vec<usize>,
        /// Shape found.
        found: Vec<usize>,
    },
    /// The data source failed or ran out.
    #[error("data at step {step}: {message}")]
    Data {
        /// Step whose batch was asked for.
        step: u64,
        /// What failed.
        message: String,
    },
    /// Joining or running a data-parallel run failed (bad rank/world/address, a collective
    /// error, a batch that does not split over the ranks).
    #[error("data-parallel: {message}")]
    Parallel {
        /// What failed.
        message: String,
    },
    /// A model error (forward pass, weight loading).
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl TrainError {
    /// An [`TrainError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`TrainError::Parallel`] with `message`.
    pub fn parallel(message: impl Into<String>) -> Self {
        Self::Parallel {
            message: message.into(),
        }
    }

    /// A [`TrainError::CorruptCheckpoint`] for `path`.
    pub fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::CorruptCheckpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
