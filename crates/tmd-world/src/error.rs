//! Typed errors of the synthetic world.

use std::path::PathBuf;

use super::attributes::AttributeKind;

/// Why a caption could not be turned into [`Attributes`](super::Attributes).
///
/// Every variant carries the caption it was raised for, so a report over a prompt file can print the
/// error alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptionError {
    /// The caption states no word for this attribute (e.g. no colour word at all).
    #[error("no {kind} word in '{caption}'")]
    Missing {
        /// Attribute that was not stated.
        kind: AttributeKind,
        /// The caption as given.
        caption: String,
    },
    /// The caption states two different values of the same attribute (e.g. "red" and "blue" for the object).
    #[error("conflicting {kind} words in '{caption}': '{first}' vs '{second}'")]
    Conflict {
        /// Attribute stated twice.
        kind: AttributeKind,
        /// First value, in words.
        first: String,
        /// Second, different value, in words.
        second: String,
        /// The caption as given.
        caption: String,
    },
    /// The caption asks for a value the world cannot express (e.g. an orange object, a star, a checkered
    /// background, an object that spins, two objects).
    #[error("the world has no {kind} '{word}' (in '{caption}')")]
    Unsupported {
        /// Attribute (or [`AttributeKind::Count`] for several objects) the word was read as.
        kind: AttributeKind,
        /// The offending word or phrase.
        word: String,
        /// The caption as given.
        caption: String,
    },
}

/// Errors of the world module other than caption parsing.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// A caption could not be parsed.
    #[error(transparent)]
    Caption(#[from] CaptionError),
    /// An attribute combination index is outside `0..Attributes::COUNT`.
    #[error("attribute combination index {index} out of range 0..{count}")]
    IndexOutOfRange {
        /// Index asked for.
        index: usize,
        /// Number of combinations.
        count: usize,
    },
    /// A clip specification is unusable.
    #[error("invalid clip spec {frames}x{height}x{width} (frames x height x width): {reason}")]
    InvalidSpec {
        /// Frames asked for.
        frames: usize,
        /// Height asked for.
        height: usize,
        /// Width asked for.
        width: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Clips given together (to a tensor or a contact sheet) have different specs.
    #[error("clip {index} has spec {found:?}, expected {expected:?} like clip 0")]
    SpecMismatch {
        /// Position of the first clip that differs.
        index: usize,
        /// Spec of clip 0.
        expected: super::render::ClipSpec,
        /// Spec of the differing clip.
        found: super::render::ClipSpec,
    },
    /// An empty list of clips was given where at least one is needed.
    #[error("no clips given to {what}")]
    Empty {
        /// The operation that needed clips.
        what: &'static str,
    },
    /// A frame index is outside the clip.
    #[error("frame {frame} out of range: the clip has {frames} frames")]
    FrameOutOfRange {
        /// Frame asked for.
        frame: usize,
        /// Frames in the clip.
        frames: usize,
    },
    /// An unknown split name.
    #[error("unknown split '{0}' (expected 'train' or 'held-out')")]
    UnknownSplit(String),
    /// Writing an image or GIF failed.
    #[error("cannot write {path}: {source}")]
    Image {
        /// File being written.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: image::ImageError,
    },
    /// Creating or writing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// File being written.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}
