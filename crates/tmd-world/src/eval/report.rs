//! The evaluation report: one row per sampler configuration, as JSON and as a Markdown table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{JudgeAccuracy, Unexpressible};

/// The sampler configuration a row measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowSpec {
    /// What generated the clips, e.g. `teacher-unipc`, `teacher-euler`, `dmd2v`, `tmd`.
    pub method: String,
    /// Outer steps `M` (the solver steps for a teacher).
    pub outer_steps: usize,
    /// Inner flow-map steps `N` of a TMD flow head (0 when there is no flow head).
    pub inner_steps: usize,
    /// Flow-head blocks `H` (0 when there is no flow head).
    pub head_blocks: usize,
    /// CFG scale (1 = no CFG).
    pub guidance: f64,
    /// Effective number of function evaluations, in full-DiT forward passes per clip.
    pub effective_nfe: f64,
}

impl RowSpec {
    /// The row's configuration as the first six cells of a Markdown table row (`method | M | N |
    /// H | CFG | effective NFE`, no outer pipes; `-` for an absent flow head or CFG), shared by
    /// every results table.
    pub fn markdown_cells(&self) -> String {
        let dash = |v: usize| {
            if v == 0 {
                "-".to_string()
            } else {
                v.to_string()
            }
        };
        let cfg = if self.guidance == 1.0 {
            "-".to_string()
        } else {
            format!("{}", self.guidance)
        };
        format!(
            "{} | {} | {} | {} | {} | {}",
            self.method,
            self.outer_steps,
            dash(self.inner_steps),
            dash(self.head_blocks),
            cfg,
            self.effective_nfe
        )
    }
}

/// The measurements of one row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// The configuration.
    #[serde(flatten)]
    pub spec: RowSpec,
    /// Mean attribute accuracy over all clips (prompt adherence).
    pub prompt_accuracy: f64,
    /// Standard deviation of the per-seed prompt accuracy (0 for one seed).
    pub accuracy_seed_std: f64,
    /// Accuracy per attribute.
    pub attribute_accuracy: BTreeMap<String, f64>,
    /// Frechet distance between classifier features of generated and real clips.
    pub frechet_distance: f64,
    /// Wall seconds of generation per clip.
    pub seconds_per_clip: f64,
    /// Number of prompts.
    pub prompts: usize,
    /// Number of seeds per prompt.
    pub seeds: usize,
}

/// A whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The model directory evaluated.
    pub model: String,
    /// Where the prompts came from (a file, or `held-out split`).
    pub prompts_source: String,
    /// Captions the world cannot express (reported, not evaluated).
    pub unexpressible: Vec<Unexpressible>,
    /// The judge's own accuracy on real clips.
    pub judge_accuracy: Vec<JudgeAccuracy>,
    /// Device the clips were generated on.
    pub device: String,
    /// The command that produced the report.
    pub command: String,
    /// The rows.
    pub rows: Vec<EvalRow>,
}

/// The rows as a Markdown table (accuracy in percent with the seed spread when there are several
/// seeds).
pub fn markdown_table(report: &EvalReport) -> String {
    let mut out = String::from(
        "| method | M | N | H | CFG | effective NFE | prompt accuracy (%) | Frechet distance | s/clip |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &report.rows {
        let acc = if r.seeds > 1 {
            format!(
                "{:.1} ± {:.1}",
                100.0 * r.prompt_accuracy,
                100.0 * r.accuracy_seed_std
            )
        } else {
            format!("{:.1}", 100.0 * r.prompt_accuracy)
        };
        out.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} |\n",
            r.spec.markdown_cells(),
            acc,
            r.frechet_distance,
            r.seconds_per_clip
        ));
    }
    out
}
