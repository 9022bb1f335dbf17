//! Students on disk. A student directory is a model directory (converted or diffusers layout,
//! see `tmd_model::model_dir`) with one more folder, `student/`:
//!
//! - `student/config.json`: [`StudentManifest`] (the head configuration, the sampling defaults
//!   `M`, `N` and shifts, and which stage wrote it);
//! - `student/model.bpk`: every parameter of the [`TmdStudent`] (its DiT, fusion layer and step
//!   embedding), burnpack, identity keys.
//!
//! The teacher's own `transformer/` stays, so one directory serves both `generate` (student by
//! default) and `generate --teacher`, and later stages can load the teacher they need (stage 2's
//! teacher and fake score) from the same place.

use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use tmd_model::model_dir::{write_atomically, ModelDir};
use tmd_model::weights::{load_module, save_burnpack, KeyMap, WeightSource};

use crate::config::FlowHeadConfig;
use crate::error::Result;
use crate::student::TmdStudent;

/// Sub-directory of a model directory holding the student.
pub const STUDENT_DIR: &str = "student";

/// How a student samples by default (TMD.md, "Inference").
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StudentDefaults {
    /// `M`, outer steps.
    pub outer_steps: usize,
    /// `N`, inner (flow-head) steps per outer step.
    pub inner_steps: usize,
    /// Shift of the outer grid (paper: 10).
    pub outer_shift: f64,
    /// Shift of the inner grid (paper: 10).
    pub inner_shift: f64,
}

impl Default for StudentDefaults {
    fn default() -> Self {
        Self {
            outer_steps: 2,
            inner_steps: 2,
            outer_shift: 10.0,
            inner_shift: 10.0,
        }
    }
}

/// `student/config.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StudentManifest {
    /// The head: `H`, fusion.
    pub head: FlowHeadConfig,
    /// Sampling defaults.
    pub defaults: StudentDefaults,
    /// What wrote it (stage and command).
    pub source: String,
}

/// Whether `dir` holds a student.
pub fn has_student(dir: &Path) -> bool {
    dir.join(STUDENT_DIR).join("config.json").is_file()
}

/// Writes `student` into the model directory `dir` (whose `transformer/config.json` it must
/// match), atomically file by file: weights first, then the manifest that makes them visible.
///
/// # Errors
/// I/O errors naming the path.
pub fn save_student<B: Backend>(
    dir: &Path,
    student: &TmdStudent<B>,
    manifest: &StudentManifest,
) -> Result<()> {
    let sub = dir.join(STUDENT_DIR);
    std::fs::create_dir_all(&sub).map_err(|e| tmd_model::ModelError::io(&sub, e))?;
    save_burnpack(student, &sub.join("model.bpk"))?;
    let json = serde_json::to_string_pretty(manifest).expect("student manifest serialises");
    write_atomically(&sub.join("config.json"), json.as_bytes())?;
    Ok(())
}

/// Loads the student of the model directory `dir`.
///
/// # Errors
/// A missing or corrupt `student/config.json` or `student/model.bpk` (named), a head that does not
/// fit the transformer, missing/unknown/mis-shaped tensors (named by key).
pub fn load_student<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(TmdStudent<B>, StudentManifest)> {
    let model = ModelDir::open(dir)?;
    let path = dir.join(STUDENT_DIR).join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| tmd_model::ModelError::io(&path, e))?;
    let manifest: StudentManifest = serde_json::from_str(&text).map_err(|e| {
        tmd_model::ModelError::config(&path, format!("not a student manifest: {e}"))
    })?;
    let teacher = model.transformer_config()?.init::<B>(device);
    let fresh = TmdStudent::from_teacher(teacher, &manifest.head)?;
    let source = WeightSource::open_files(&[dir.join(STUDENT_DIR).join("model.bpk")])?;
    let student = load_module(fresh, &source, &KeyMap::identity(), &[], "student")?;
    Ok((student, manifest))
}
