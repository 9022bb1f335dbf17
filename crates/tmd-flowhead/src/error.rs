//! Errors of the student.

use thiserror::Error;

/// Result of this crate.
pub type Result<T> = std::result::Result<T, FlowHeadError>;

/// What can go wrong building or running the student.
#[derive(Debug, Error)]
pub enum FlowHeadError {
    /// A configuration value is out of range.
    #[error("flow head config: {field} = {value}: {reason}")]
    Config {
        /// Field name.
        field: &'static str,
        /// Offending value.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// An inner time grid is not usable.
    #[error("inner grid {grid:?}: {reason}")]
    Grid {
        /// The grid.
        grid: Vec<f64>,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A tensor has the wrong shape.
    #[error("{what}: expected shape {expected}, found {found:?}")]
    Shape {
        /// Which tensor.
        what: &'static str,
        /// Expected shape, in words.
        expected: String,
        /// Shape found.
        found: Vec<usize>,
    },
    /// The underlying DiT rejected its inputs.
    #[error(transparent)]
    Model(#[from] tmd_model::ModelError),
}
