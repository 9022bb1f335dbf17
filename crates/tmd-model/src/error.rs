//! Typed errors of the model crate. Every message names the file, key, shape or value at fault.

use std::path::PathBuf;

/// Result alias used throughout `tmd-model`.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Everything that can go wrong while configuring, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A weight file is truncated, corrupt or not in the format its name says.
    #[error("{path}: corrupt or unreadable weight file: {reason}")]
    CorruptWeights {
        /// The weight file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },

    /// A weight folder holds no weight file at all.
    #[error("{path}: no weight files found (expected *.safetensors, *.bpk or *.pth)")]
    NoWeights {
        /// The folder searched.
        path: PathBuf,
    },

    /// A tensor is stored in a dtype this crate cannot read.
    #[error("{path}: tensor '{key}' has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// The weight file.
        path: PathBuf,
        /// The checkpoint key.
        key: String,
        /// The dtype found.
        dtype: String,
    },

    /// Two weight files of one source define the same key.
    #[error("key '{key}' is defined twice: in {first} and in {second}")]
    DuplicateKey {
        /// The key, after remapping.
        key: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },

    /// Checkpoint and module disagree: keys missing, keys left over, or shapes that differ.
    #[error("{what}: weights in {source_desc} do not match the model:{}", describe_mismatch(.missing, .unexpected, .shapes))]
    WeightMismatch {
        /// Which model was being loaded (e.g. "DiT").
        what: String,
        /// Where the weights came from.
        source_desc: String,
        /// Module parameters that no checkpoint key provided.
        missing: Vec<String>,
        /// Checkpoint keys that match no module parameter (original key -> mapped path).
        unexpected: Vec<String>,
        /// Shape mismatches: (module path, expected, found).
        shapes: Vec<(String, Vec<usize>, Vec<usize>)>,
    },

    /// A configuration file is missing a field, or a field has an invalid value.
    #[error("{path}: invalid config: {reason}")]
    InvalidConfig {
        /// The config file (or a preset name).
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },

    /// A model cannot be written in the requested format (the path or parameter is named).
    #[error("{path}: cannot export: {reason}")]
    Export {
        /// The output file, or the parameter at fault.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// An unknown preset name.
    #[error("unknown preset '{name}'; known presets: {known}")]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },

    /// An input tensor has the wrong shape.
    #[error("{what}: expected shape {expected}, got {found:?}")]
    BadShape {
        /// Which input.
        what: String,
        /// What was expected, in words.
        expected: String,
        /// The shape received.
        found: Vec<usize>,
    },

    /// A prompt is empty once cleaned.
    #[error("the prompt is empty (after cleaning whitespace and HTML entities); give a non-empty prompt")]
    EmptyPrompt,

    /// The tokenizer failed.
    #[error("tokenizer {path}: {reason}")]
    Tokenizer {
        /// The tokenizer.json file.
        path: PathBuf,
        /// The tokenizer's message.
        reason: String,
    },
}

impl ModelError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// An invalid-config error for `path` with a reason.
    pub fn config(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

fn describe_mismatch(
    missing: &[String],
    unexpected: &[String],
    shapes: &[(String, Vec<usize>, Vec<usize>)],
) -> String {
    const SHOW: usize = 20;
    let mut out = String::new();
    let mut list = |title: &str, items: Vec<String>| {
        if items.is_empty() {
            return;
        }
        out.push_str(&format!("\n  {} {}:", items.len(), title));
        for item in items.iter().take(SHOW) {
            out.push_str(&format!("\n    {item}"));
        }
        if items.len() > SHOW {
            out.push_str(&format!("\n    ... and {} more", items.len() - SHOW));
        }
    };
    list("missing keys", missing.to_vec());
    list("unexpected keys", unexpected.to_vec());
    list(
        "shape mismatches (key: expected, found)",
        shapes
            .iter()
            .map(|(k, e, f)| format!("{k}: expected {e:?}, found {f:?}"))
            .collect(),
    );
    out
}
