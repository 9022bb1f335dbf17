//! Students on disk. A student directory is a model directory (converted or diffusers layout,
//! see `tmd_model::model_dir`) with one more folder, `student/`:
//!
//! - `student/config.json`: [`StudentManifest`] (the method, TMD with its head configuration or
//!   the DMD2-v baseline; the sampling defaults `M`, `N` and shifts; which stage wrote it);
//! - `student/model.bpk`: every parameter of the student, burnpack, identity keys: the
//!   [`TmdStudent`] (its DiT, fusion layer and step embedding), or the DMD2-v student's DiT.
//!
//! The teacher's own `transformer/` stays, so one directory serves both `generate` (student by
//! default) and `generate --teacher`, and later stages can load the teacher they need (stage 2's
//! teacher and fake score) from the same place.

use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use tmd_model::dit::WanModel;
use tmd_model::model_dir::ModelDir;
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

/// Which few-step generator a student directory holds (tagged `"method"` in
/// `student/config.json`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum StudentMethod {
    /// TMD: main backbone + flow head ([`TmdStudent`]), sampled by Algorithm 1.
    Tmd {
        /// The head: `H`, fusion.
        head: FlowHeadConfig,
    },
    /// The DMD2-v baseline: a plain DiT (the teacher's architecture) sampled in `M` deterministic
    /// steps, one pass each (no flow head, `N` = 1).
    Dmd2V,
}

/// `student/config.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StudentManifest {
    /// TMD (with its head) or the DMD2-v baseline.
    #[serde(flatten)]
    pub method: StudentMethod,
    /// Sampling defaults (`inner_steps` is ignored by a DMD2-v student).
    pub defaults: StudentDefaults,
    /// What wrote it (stage and command).
    pub source: String,
}

/// A loaded student.
#[derive(Debug)]
// One per process, never in collections: boxing the larger variant would save nothing.
#[allow(clippy::large_enum_variant)]
pub enum Student<B: Backend> {
    /// A TMD student.
    Tmd(TmdStudent<B>),
    /// A DMD2-v student (a DiT of the teacher's architecture).
    Dmd2V(WanModel<B>),
}

impl<B: Backend> Student<B> {
    /// Sets the precision policy of the student's DiT (all its blocks, backbone and flow head):
    /// f32, or bf16 matrix products with an f32 stream as the teacher runs under autocast.
    pub fn with_precision(self, precision: tmd_model::dit::Precision) -> Self {
        match self {
            Student::Tmd(mut s) => {
                s.dit = s.dit.with_precision(precision);
                Student::Tmd(s)
            }
            Student::Dmd2V(dit) => Student::Dmd2V(dit.with_precision(precision)),
        }
    }
}

/// Whether `dir` holds a student.
pub fn has_student(dir: &Path) -> bool {
    dir.join(STUDENT_DIR).join("config.json").is_file()
}

/// Writes `student` (a [`TmdStudent`] or, for [`StudentMethod::Dmd2V`], a [`WanModel`]) into the
/// model directory `dir` (whose `transformer/config.json` it must match), atomically file by
/// file: weights first, then the manifest that makes them visible.
///
/// # Errors
/// I/O errors naming the path.
pub fn save_student<B: Backend, M: Module<B>>(
    dir: &Path,
    student: &M,
    manifest: &StudentManifest,
) -> Result<()> {
    let sub = dir.join(STUDENT_DIR);
    std::fs::create_dir_all(&sub).map_err(|e| tmd_model::ModelError::io(&sub, e))?;
    save_burnpack(student, &sub.join("model.bpk"))?;
    // The manifest carries the weights' SHA-256, checked on load (tmd_model::integrity).
    tmd_model::integrity::write_sealed(
        &sub.join("config.json"),
        manifest,
        &sub,
        &["model.bpk".to_string()],
    )?;
    Ok(())
}

/// Reads `student/config.json` of the model directory `dir`.
///
/// # Errors
/// A missing or unreadable manifest (named).
pub fn read_manifest(dir: &Path) -> Result<StudentManifest> {
    let path = dir.join(STUDENT_DIR).join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| tmd_model::ModelError::io(&path, e))?;
    Ok(serde_json::from_str(&text).map_err(|e| {
        tmd_model::ModelError::config(&path, format!("not a student manifest: {e}"))
    })?)
}

/// Loads the student of the model directory `dir`, whichever method wrote it.
///
/// # Errors
/// A missing or corrupt `student/config.json` or `student/model.bpk` (named), a head that does not
/// fit the transformer, missing/unknown/mis-shaped tensors (named by key).
pub fn load_student<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(Student<B>, StudentManifest)> {
    let model = ModelDir::open(dir)?;
    let manifest = read_manifest(dir)?;
    let teacher = model.transformer_config()?.init::<B>(device);
    let sub = dir.join(STUDENT_DIR);
    tmd_model::integrity::verify_files(&sub, &sub.join("config.json"), &["model.bpk".into()])?;
    let source = WeightSource::open_files(&[sub.join("model.bpk")])?;
    let student = match &manifest.method {
        StudentMethod::Tmd { head } => {
            let fresh = TmdStudent::from_teacher(teacher, head)?;
            Student::Tmd(load_module(
                fresh,
                &source,
                &KeyMap::identity(),
                &[],
                "student",
            )?)
        }
        StudentMethod::Dmd2V => Student::Dmd2V(load_module(
            teacher,
            &source,
            &KeyMap::identity(),
            &[],
            "student",
        )?),
    };
    Ok((student, manifest))
}

/// Loads the TMD student of `dir` (stage 2 continues from stage 1's).
///
/// # Errors
/// As [`load_student`], and a directory holding a DMD2-v student (named).
pub fn load_tmd_student<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(TmdStudent<B>, StudentManifest)> {
    match load_student(dir, device)? {
        (Student::Tmd(s), m) => Ok((s, m)),
        (Student::Dmd2V(_), _) => Err(crate::FlowHeadError::Config {
            field: "method",
            value: format!("{}", dir.join(STUDENT_DIR).join("config.json").display()),
            reason: "holds a DMD2-v student, not a TMD one".into(),
        }),
    }
}
