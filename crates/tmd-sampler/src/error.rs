//! Typed errors of the sampler crate. Every message names the value, index or shape at fault.

/// Result alias used throughout `tmd-sampler`.
pub type Result<T, E = SamplerError> = std::result::Result<T, E>;

/// Everything that can go wrong while building a schedule or stepping a solver.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// A schedule was asked for zero steps.
    #[error("a sampling schedule needs at least one step, got {steps}")]
    ZeroSteps {
        /// The number of steps requested.
        steps: usize,
    },

    /// The time shift factor is not a finite positive number.
    #[error("time shift must be finite and > 0, got {shift}")]
    InvalidShift {
        /// The shift factor given.
        shift: f64,
    },

    /// A sigma grid entry is out of range or the grid is not strictly decreasing.
    #[error("invalid sigma grid at index {index} (value {value}): {reason}")]
    InvalidSigmas {
        /// Index of the offending entry.
        index: usize,
        /// Its value.
        value: f64,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The number of model timesteps does not match the number of steps of the grid.
    #[error("schedule has {steps} steps but {timesteps} timesteps were given")]
    TimestepCount {
        /// Steps of the sigma grid (its length minus one).
        steps: usize,
        /// Timesteps given.
        timesteps: usize,
    },

    /// A solver option is outside the supported range.
    #[error("invalid solver option {name} = {value}: {reason}")]
    InvalidSolverOption {
        /// The option's name.
        name: &'static str,
        /// Its value, printed.
        value: String,
        /// The supported range.
        reason: &'static str,
    },

    /// A solver was stepped after its last step.
    #[error("solver already took all {steps} steps of its schedule; call reset() to sample again")]
    ScheduleExhausted {
        /// Number of steps of the schedule.
        steps: usize,
    },

    /// A solver coefficient came out NaN or infinite (e.g. a degenerate sigma grid).
    #[error("step {step}: non-finite solver coefficient {what} = {value}")]
    NonFinite {
        /// The step index.
        step: usize,
        /// Which coefficient.
        what: &'static str,
        /// Its value.
        value: f64,
    },

    /// Two tensors that must have the same shape do not.
    #[error("{what}: shape mismatch, expected {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// Which tensors were compared.
        what: &'static str,
        /// The shape required.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },

    /// A batched classifier-free-guidance output cannot be split into two equal halves.
    #[error(
        "batched CFG output must have an even batch size (uncond half, cond half), got {batch}"
    )]
    OddCfgBatch {
        /// The batch size found.
        batch: usize,
    },

    /// The guidance scale is not finite.
    #[error("guidance scale must be finite, got {scale}")]
    InvalidGuidanceScale {
        /// The scale given.
        scale: f64,
    },

    /// Loading or running a model failed.
    #[error(transparent)]
    Model(#[from] tmd_model::ModelError),

    /// The TMD student rejected its inputs or configuration.
    #[error(transparent)]
    Student(#[from] tmd_flowhead::FlowHeadError),

    /// Turning the result into a clip, or writing it, failed.
    #[error(transparent)]
    Video(#[from] crate::video::VideoError),

    /// A requested resolution or frame count does not fit the model.
    #[error("{what} = {value} is not valid for this model: it must be {rule}")]
    BadResolution {
        /// `height`, `width` or `frames`.
        what: &'static str,
        /// The value given.
        value: usize,
        /// The rule it breaks.
        rule: String,
    },

    /// An option does not apply to the loaded model (e.g. CFG for a distilled student).
    #[error("{option} does not apply to {model}: {hint}")]
    OptionNotApplicable {
        /// The option.
        option: &'static str,
        /// What was loaded (`teacher`, `TMD student`, `DMD2-v student`).
        model: &'static str,
        /// What to do instead.
        hint: &'static str,
    },

    /// The prompt is empty or whitespace.
    #[error("the prompt is empty: describe what the clip should show")]
    EmptyPrompt,
}
