//! The TMD student (TMD.md, "Student architecture"): a Wan2.1 DiT of `L` blocks split into
//!
//! - the **main backbone** ([`TmdStudent::backbone`]): embeddings and the first `L - H` blocks,
//!   run once per outer step on `(x_t, t, c)`, giving token features `m`;
//! - the **flow head** ([`TmdStudent::head`]): the last `H` blocks and the output head, run once
//!   per inner step on `(y_s, s, r, m, c)`, with the noisy head variable `y_s` brought in by the
//!   [`fusion`] layer and the step length `s - r` by a zero-initialised time embedding;
//! - the **conditional flow map** ([`TmdStudent::flow_map`]): `f(y_s, s, r) = y_s - (s - r) u`
//!   with the average velocity `u = y1 - head(...)`;
//! - the **rollout** ([`rollout`]): `N` flow-map steps from `y1` over the inner grid, the inner
//!   loop of Algorithm 1 and of the stage-2 generator.
//!
//! Built from a teacher with [`TmdStudent::from_teacher`], the student starts out computing the
//! teacher: the fusion gate is near 0 and the `s - r` embedding is zero, so with `s = t` the head
//! returns the teacher's velocity (pinned by `tests/student.rs`).
//!
//! Notation follows the paper: outer steps `M`, inner steps `N`, head blocks `H`, teacher blocks
//! `L`; flow time runs from data (`0`) to noise (`1`), as in Wan.

pub mod config;
pub mod error;
pub mod fusion;
pub mod rollout;
pub mod student;
pub mod student_dir;
pub mod student_export;

pub use config::{FlowHeadConfig, Fusion};
pub use error::{FlowHeadError, Result};
pub use fusion::{ConcatFusion, FusionLayer, GatedFusion};
pub use rollout::{check_inner_grid, rollout};
pub use student::{Backbone, TmdStudent};
pub use student_dir::{
    has_student, load_student, load_tmd_student, read_manifest, save_student, Student,
    StudentDefaults, StudentManifest, StudentMethod,
};
pub use student_export::{
    export_student, load_exported_student, read_exported_config, ExportedStudentConfig,
};
