//! A student outside the project: one safetensors file in PyTorch layout and a JSON config
//! (`cargo xtask export --format safetensors`; the format is described in `docs/export.md`).
//!
//! ```text
//! OUT/config.json        ExportedStudentConfig: format "tmd-student", version, method (+ head),
//!                        sampling defaults, the DiT's diffusers config, dtype
//! OUT/model.safetensors  the DiT under diffusers' WanTransformer3DModel key names, and for a
//!                        TMD student the flow-head parts under `flow_head.`:
//!                        flow_head.step_embedding.linear_{1,2}.{weight,bias}
//!                        flow_head.fusion.gated.{modulation,fc1,fc2}.{weight,bias},
//!                        flow_head.fusion.gated.gate_logit   (gated fusion), or
//!                        flow_head.fusion.concat.proj.{weight,bias}  (concat fusion)
//! ```
//!
//! The DiT part alone is a `WanTransformer3DModel` state dict (its `load_state_dict(...,
//! strict=False)` takes it); [`load_exported_student`] reads the whole file back into a
//! [`TmdStudent`] (or a DMD2-v DiT).

use std::path::Path;

use burn::prelude::*;
use burn::tensor::DType;
use serde::{Deserialize, Serialize};
use tmd_model::dit::{diffusers_export_key_map, diffusers_key_map, WanConfig, WanModel};
use tmd_model::export::{diffusers_transformer_config, pytorch_tensors, write_safetensors};
use tmd_model::model_dir::write_atomically;
use tmd_model::weights::{load_module, KeyMap, WeightSource};
use tmd_model::ModelError;

use crate::error::Result;
use crate::student::TmdStudent;
use crate::student_dir::{Student, StudentDefaults, StudentManifest, StudentMethod};

/// `format` of an exported student's `config.json`.
pub const EXPORT_FORMAT: &str = "tmd-student";
/// Current version of the exported format.
pub const EXPORT_VERSION: u32 = 1;
/// Weight file of an exported student.
pub const EXPORT_WEIGHTS: &str = "model.safetensors";
/// Prefix of the flow-head parts in the weight file.
pub const FLOW_HEAD_PREFIX: &str = "flow_head.";

/// `config.json` of an exported student.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ExportedStudentConfig {
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    /// [`EXPORT_VERSION`].
    pub version: u32,
    /// `"tmd"` with its `head` (`head_blocks` = H, the last H DiT blocks form the flow head;
    /// `fusion` = `gated` or `concat`; the rest are initialisation settings), or `"dmd2-v"`.
    #[serde(flatten)]
    pub method: StudentMethod,
    /// How the student samples: `outer_steps` M, `inner_steps` N, the two grid shifts.
    pub defaults: StudentDefaults,
    /// The DiT's diffusers `WanTransformer3DModel` config (plus `text_len`).
    pub transformer: serde_json::Value,
    /// The weight file, relative to the folder.
    pub weights: String,
    /// Storage dtype of the weights (`f32`, `f16`, `bf16`).
    pub dtype: String,
    /// Where the student came from (its manifest's `source`).
    pub source: String,
}

/// File key -> student parameter path.
fn import_map() -> KeyMap {
    diffusers_key_map()
        .with_prefix_added("dit.")
        .with_branch(FLOW_HEAD_PREFIX, KeyMap::identity())
}

/// Student parameter path (PyTorch naming) -> file key.
fn export_map() -> KeyMap {
    KeyMap::identity()
        .with_prefix_added(FLOW_HEAD_PREFIX)
        .with_branch("dit.", diffusers_export_key_map())
}

fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        _ => "f32",
    }
}

/// Writes `student` (whose DiT has `config`) with its `manifest` into the folder `out` as
/// [`EXPORT_WEIGHTS`] + `config.json`, weights stored as `dtype`; the config comes last.
///
/// # Errors
/// I/O errors and export errors naming the path or parameter.
pub fn export_student<B: Backend>(
    student: &Student<B>,
    config: &WanConfig,
    manifest: &StudentManifest,
    dtype: DType,
    out: &Path,
) -> Result<usize> {
    let transformer = diffusers_transformer_config(config, out)?;
    std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;
    let config_path = out.join("config.json");
    if config_path.exists() {
        std::fs::remove_file(&config_path).map_err(|e| ModelError::io(&config_path, e))?;
    }
    let tensors = match student {
        Student::Tmd(s) => pytorch_tensors(s, &export_map(), "student")?,
        Student::Dmd2V(dit) => pytorch_tensors(dit, &diffusers_export_key_map(), "student")?,
    };
    let n = write_safetensors(&tensors, dtype, None, &out.join(EXPORT_WEIGHTS))?;
    let exported = ExportedStudentConfig {
        format: EXPORT_FORMAT.into(),
        version: EXPORT_VERSION,
        method: manifest.method.clone(),
        defaults: manifest.defaults.clone(),
        transformer,
        weights: EXPORT_WEIGHTS.into(),
        dtype: dtype_name(dtype).into(),
        source: manifest.source.clone(),
    };
    let text = serde_json::to_string_pretty(&exported).expect("config serialises");
    write_atomically(&config_path, text.as_bytes())?;
    Ok(n)
}

/// Reads an exported student's `config.json`.
///
/// # Errors
/// A missing or unreadable file, another format or a newer version (named).
pub fn read_exported_config(dir: &Path) -> Result<ExportedStudentConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
    let config: ExportedStudentConfig = serde_json::from_str(&text)
        .map_err(|e| ModelError::config(&path, format!("not an exported student config: {e}")))?;
    if config.format != EXPORT_FORMAT || config.version > EXPORT_VERSION {
        return Err(ModelError::config(
            &path,
            format!(
                "format '{}' version {}: expected '{EXPORT_FORMAT}' version <= {EXPORT_VERSION}",
                config.format, config.version
            ),
        )
        .into());
    }
    Ok(config)
}

/// Loads a student written by [`export_student`] from the folder `dir`; also returns its
/// manifest and DiT config.
///
/// # Errors
/// An unreadable config or weight file, missing/unknown/mis-shaped tensors (named by key).
pub fn load_exported_student<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(Student<B>, StudentManifest, WanConfig)> {
    let exported = read_exported_config(dir)?;
    let config = WanConfig::from_diffusers_json(&exported.transformer, &dir.join("config.json"))?;
    let source = WeightSource::open_files(&[dir.join(&exported.weights)])?;
    let dit: WanModel<B> = config.init(device);
    let student = match &exported.method {
        StudentMethod::Tmd { head } => Student::Tmd(load_module(
            TmdStudent::from_teacher(dit, head)?,
            &source,
            &import_map(),
            &[],
            "student",
        )?),
        StudentMethod::Dmd2V => Student::Dmd2V(load_module(
            dit,
            &source,
            &diffusers_key_map(),
            &[],
            "student",
        )?),
    };
    let manifest = StudentManifest {
        method: exported.method,
        defaults: exported.defaults,
        source: exported.source,
    };
    Ok((student, manifest, config))
}
