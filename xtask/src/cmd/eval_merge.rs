//! `cargo xtask eval-merge`: the evals of independent training runs (issue 22), one `xtask eval`
//! report per run over the same rows, merged into one report whose rows carry the mean over the
//! runs, its min-max range and each run's own scores under `training_runs`.
//!
//! Rows are matched by their sampler configuration (method or label, `M`, `N`, `H`, CFG,
//! effective NFE). A row in every report is merged; a row in exactly one report (the teacher,
//! evaluated once) is copied as it is; a row in some but not all reports is an error, as are
//! reports of another teacher, another prompt set, or a row scored on other prompts or seeds.
//! The merged report reads as an `xtask eval` report too (its rows' scores are the means).
//!
//! `--tables` instead puts merged reports (or plain eval reports) side by side in one: the
//! headline students trained in separate device sessions, or the arms of one experiment, each row
//! kept with its own training runs. Rows identical in every table (the teacher, evaluated once)
//! are kept once; `--names` tells tables with the same rows apart ("tmd (outer shift 2)").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tmd_world::eval::{EvalReport, EvalRow, RowSpec};

/// One training run's scores of a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRun {
    /// The eval report it came from, as given to `--runs`.
    pub source: String,
    /// Mean attribute accuracy over all clips.
    pub prompt_accuracy: f64,
    /// Standard deviation of the per-seed prompt accuracy (the sampling seeds' spread).
    pub accuracy_seed_std: f64,
    /// Accuracy per attribute.
    pub attribute_accuracy: BTreeMap<String, f64>,
    /// Frechet distance of classifier features.
    pub frechet_distance: f64,
    /// Wall seconds of generation per clip.
    pub seconds_per_clip: f64,
}

/// A row over several training runs: the eval row's scores are the means over the runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedRow {
    /// The configuration and the mean scores.
    #[serde(flatten)]
    pub mean: EvalRow,
    /// `[min, max]` of the runs' prompt accuracy (absent for a row evaluated once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_accuracy_range: Option<[f64; 2]>,
    /// `[min, max]` of the runs' Frechet distance (absent for a row evaluated once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frechet_distance_range: Option<[f64; 2]>,
    /// Each training run's own scores, in the order of `--runs` (empty for a row evaluated once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub training_runs: Vec<TrainingRun>,
}

/// The report an eval of one training run came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The report's path, as given to `--runs`.
    pub source: String,
    /// Its `xtask eval` command.
    pub command: String,
    /// Its device.
    pub device: String,
}

/// The merged report (the first report's header, the merge's command, the merged rows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedReport {
    /// The teacher directory every report evaluated.
    pub model: String,
    /// Where the prompts came from (the same in every report).
    pub prompts_source: String,
    /// The first report's unexpressible captions.
    pub unexpressible: Vec<tmd_world::eval::Unexpressible>,
    /// The first report's judge accuracy.
    pub judge_accuracy: Vec<tmd_world::eval::JudgeAccuracy>,
    /// The first report's device.
    pub device: String,
    /// The merge's command.
    pub command: String,
    /// The merged reports, one per training run (none in a plain `xtask eval` report).
    #[serde(default)]
    pub training_run_reports: Vec<RunReport>,
    /// The rows.
    pub rows: Vec<MergedRow>,
}

fn same_spec(a: &RowSpec, b: &RowSpec) -> bool {
    a.method == b.method
        && a.outer_steps == b.outer_steps
        && a.inner_steps == b.inner_steps
        && a.head_blocks == b.head_blocks
        && a.guidance == b.guidance
        && a.effective_nfe == b.effective_nfe
}

/// That every report (`(source, teacher, prompt set)`) evaluated the first one's teacher on its
/// prompt set.
fn same_sources<'a>(
    mut reports: impl Iterator<Item = (&'a String, &'a String, &'a String)>,
) -> Result<()> {
    let Some((first_src, model, prompts)) = reports.next() else {
        return Ok(());
    };
    for (src, m, p) in reports {
        ensure!(
            m == model,
            "{src} evaluated the teacher {m:?}, {first_src} {model:?}: merge evals of one teacher"
        );
        ensure!(
            p == prompts,
            "{src} scored the prompts of {p:?}, {first_src} those of {prompts:?}: merge evals of \
             one prompt set"
        );
    }
    Ok(())
}

fn describe(s: &RowSpec) -> String {
    format!(
        "{} M={} N={} H={} CFG={} NFE={}",
        s.method, s.outer_steps, s.inner_steps, s.head_blocks, s.guidance, s.effective_nfe
    )
}

fn range(values: impl Iterator<Item = f64> + Clone) -> [f64; 2] {
    let min = values.clone().fold(f64::INFINITY, f64::min);
    [min, values.fold(f64::NEG_INFINITY, f64::max)]
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n as f64
}

/// Merges `reports` (`(source, report)`, one per training run, at least two) into one.
///
/// # Errors
/// Fewer than two reports; reports of other teachers or prompt sets; a row twice in one report,
/// in some but not all reports, or scored on other prompts, seeds or attributes (each named).
pub fn merge_reports(reports: &[(String, EvalReport)], command: &str) -> Result<MergedReport> {
    ensure!(
        reports.len() >= 2,
        "eval-merge needs the reports of at least two training runs, got {}",
        reports.len()
    );
    let first = &reports[0].1;
    same_sources(
        reports
            .iter()
            .map(|(s, r)| (s, &r.model, &r.prompts_source)),
    )?;
    for (src, r) in reports {
        for (i, a) in r.rows.iter().enumerate() {
            if r.rows[..i].iter().any(|b| same_spec(&a.spec, &b.spec)) {
                bail!(
                    "{src} holds the row {} twice: label one of them (`label` in the rows file)",
                    describe(&a.spec)
                );
            }
        }
    }
    // Every row once, in the order of first appearance.
    let mut specs: Vec<&RowSpec> = Vec::new();
    for (_, r) in reports {
        for row in &r.rows {
            if !specs.iter().any(|s| same_spec(s, &row.spec)) {
                specs.push(&row.spec);
            }
        }
    }
    let mut rows = Vec::with_capacity(specs.len());
    for spec in specs {
        let found: Vec<(&String, &EvalRow)> = reports
            .iter()
            .filter_map(|(src, r)| {
                r.rows
                    .iter()
                    .find(|row| same_spec(&row.spec, spec))
                    .map(|row| (src, row))
            })
            .collect();
        if found.len() == 1 {
            rows.push(MergedRow {
                mean: found[0].1.clone(),
                prompt_accuracy_range: None,
                frechet_distance_range: None,
                training_runs: Vec::new(),
            });
            continue;
        }
        if found.len() < reports.len() {
            let missing: Vec<&str> = reports
                .iter()
                .filter(|(src, _)| !found.iter().any(|(s, _)| *s == src))
                .map(|(src, _)| src.as_str())
                .collect();
            bail!(
                "the row {} is in {} of {} reports (missing from {}): merge the reports of runs \
                 that trained every student",
                describe(spec),
                found.len(),
                reports.len(),
                missing.join(", ")
            );
        }
        let (src0, row0) = found[0];
        for (src, row) in &found[1..] {
            ensure!(
                row.prompts == row0.prompts && row.seeds == row0.seeds,
                "the row {} was scored on {} prompts x {} seeds in {src} and {} x {} in {src0}",
                describe(spec),
                row.prompts,
                row.seeds,
                row0.prompts,
                row0.seeds
            );
            ensure!(
                row.attribute_accuracy
                    .keys()
                    .eq(row0.attribute_accuracy.keys()),
                "the row {} has other attributes in {src} than in {src0}",
                describe(spec)
            );
        }
        let runs: Vec<TrainingRun> = found
            .iter()
            .map(|(src, r)| TrainingRun {
                source: (*src).clone(),
                prompt_accuracy: r.prompt_accuracy,
                accuracy_seed_std: r.accuracy_seed_std,
                attribute_accuracy: r.attribute_accuracy.clone(),
                frechet_distance: r.frechet_distance,
                seconds_per_clip: r.seconds_per_clip,
            })
            .collect();
        let attribute_accuracy = row0
            .attribute_accuracy
            .keys()
            .map(|k| {
                (
                    k.clone(),
                    mean(runs.iter().map(|r| r.attribute_accuracy[k])),
                )
            })
            .collect();
        rows.push(MergedRow {
            mean: EvalRow {
                spec: spec.clone(),
                prompt_accuracy: mean(runs.iter().map(|r| r.prompt_accuracy)),
                accuracy_seed_std: mean(runs.iter().map(|r| r.accuracy_seed_std)),
                attribute_accuracy,
                frechet_distance: mean(runs.iter().map(|r| r.frechet_distance)),
                seconds_per_clip: mean(runs.iter().map(|r| r.seconds_per_clip)),
                prompts: row0.prompts,
                seeds: row0.seeds,
            },
            prompt_accuracy_range: Some(range(runs.iter().map(|r| r.prompt_accuracy))),
            frechet_distance_range: Some(range(runs.iter().map(|r| r.frechet_distance))),
            training_runs: runs,
        });
    }
    Ok(MergedReport {
        model: first.model.clone(),
        prompts_source: first.prompts_source.clone(),
        unexpressible: first.unexpressible.clone(),
        judge_accuracy: first.judge_accuracy.clone(),
        device: first.device.clone(),
        command: command.to_string(),
        training_run_reports: reports
            .iter()
            .map(|(src, r)| RunReport {
                source: src.clone(),
                command: r.command.clone(),
                device: r.device.clone(),
            })
            .collect(),
        rows,
    })
}

/// Whether `a` and `b` are one evaluation copied into two tables (same configuration, scores and
/// prompts, no training runs of their own): the teacher row of every arm's eval.
fn same_single_eval(a: &MergedRow, b: &MergedRow) -> bool {
    a.training_runs.is_empty()
        && b.training_runs.is_empty()
        && same_spec(&a.mean.spec, &b.mean.spec)
        && a.mean.prompt_accuracy == b.mean.prompt_accuracy
        && a.mean.frechet_distance == b.mean.frechet_distance
        && (a.mean.prompts, a.mean.seeds) == (b.mean.prompts, b.mean.seeds)
}

/// Whether `row` is the teacher's (the eval names it `teacher-SOLVER`), evaluated once.
fn is_teacher_row(row: &MergedRow) -> bool {
    row.mean.spec.method.starts_with("teacher-") && row.training_runs.is_empty()
}

/// Puts `tables` (`(source, report)`: merged reports, or plain eval reports read as merged ones
/// without training runs; at least two) side by side in one report. With `names` (one per table),
/// each table's rows get " (name)" after their method, so that tables of the same rows (the arms
/// of one experiment) can be combined; a row that is the same single evaluation in several tables
/// (the teacher) is kept once, unnamed, and heads the table (it is every table's reference), as
/// is a teacher row in one table only.
///
/// # Errors
/// Fewer than two tables; a `names` count other than the tables'; tables of other teachers or
/// prompt sets; a row in two tables (name the tables), each named.
pub fn combine_tables(
    tables: &[(String, MergedReport)],
    names: &[String],
    command: &str,
) -> Result<MergedReport> {
    ensure!(
        tables.len() >= 2,
        "eval-merge --tables needs at least two tables, got {}",
        tables.len()
    );
    ensure!(
        names.is_empty() || names.len() == tables.len(),
        "--names gives {} names for {} tables: one per table, in the same order",
        names.len(),
        tables.len()
    );
    let first = &tables[0].1;
    same_sources(tables.iter().map(|(s, t)| (s, &t.model, &t.prompts_source)))?;
    // (the row as written, the table it came from, the row as it was in that table, whether it
    // is one evaluation shared by several tables)
    let mut rows: Vec<(MergedRow, &str, &MergedRow, bool)> = Vec::new();
    for (i, (src, t)) in tables.iter().enumerate() {
        for row in &t.rows {
            if rows
                .iter()
                .any(|(_, _, seen, _)| same_single_eval(seen, row))
            {
                continue;
            }
            // One evaluation in several tables belongs to none of them: it keeps its name. So
            // does a teacher row in one table only (every table evaluated the same teacher on
            // the same prompts, so it is every table's reference), unless another table holds
            // another evaluation of that teacher row.
            let others = || tables.iter().enumerate().filter(|(j, _)| *j != i);
            let shared = others()
                .any(|(_, (_, other))| other.rows.iter().any(|r| same_single_eval(r, row)))
                || (is_teacher_row(row)
                    && !others().any(|(_, (_, other))| {
                        other
                            .rows
                            .iter()
                            .any(|r| same_spec(&r.mean.spec, &row.mean.spec))
                    }));
            let mut named = row.clone();
            if let (Some(name), false) = (names.get(i), shared) {
                named.mean.spec.method = format!("{} ({name})", row.mean.spec.method);
            }
            if let Some((_, other, _, _)) = rows
                .iter()
                .find(|(kept, _, _, _)| same_spec(&kept.mean.spec, &named.mean.spec))
            {
                bail!(
                    "the row {} is in {other} and in {src}: give each table a name (--names) to \
                     keep both",
                    describe(&named.mean.spec)
                );
            }
            rows.push((named, src, row, shared));
        }
    }
    // The shared rows first, each table's own rows after them in their order.
    rows.sort_by_key(|(_, _, _, shared)| !shared);
    // The first table's header (teacher, prompts, judge, device), the merge's own rest.
    Ok(MergedReport {
        command: command.to_string(),
        training_run_reports: tables
            .iter()
            .flat_map(|(_, t)| t.training_run_reports.iter().cloned())
            .collect(),
        rows: rows.into_iter().map(|(row, _, _, _)| row).collect(),
        ..first.clone()
    })
}

/// The merged rows as a Markdown table: the mean over the training runs and its min-max range
/// (a row evaluated once shows its score and its sampling seeds' spread, "±").
pub fn merged_markdown(report: &MergedReport) -> String {
    let mut out = String::from(
        "| method | M | N | H | CFG | effective NFE | training runs | prompt accuracy (%), mean (min-max) | Frechet distance, mean (min-max) |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &report.rows {
        let m = &r.mean;
        let (acc, fd) = match (r.prompt_accuracy_range, r.frechet_distance_range) {
            (Some([a0, a1]), Some([f0, f1])) => (
                format!(
                    "{:.1} ({:.1}-{:.1})",
                    100.0 * m.prompt_accuracy,
                    100.0 * a0,
                    100.0 * a1
                ),
                format!("{:.0} ({:.0}-{:.0})", m.frechet_distance, f0, f1),
            ),
            _ if m.seeds > 1 => (
                format!(
                    "{:.1} ± {:.1}",
                    100.0 * m.prompt_accuracy,
                    100.0 * m.accuracy_seed_std
                ),
                format!("{:.0}", m.frechet_distance),
            ),
            _ => (
                format!("{:.1}", 100.0 * m.prompt_accuracy),
                format!("{:.0}", m.frechet_distance),
            ),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            m.spec.markdown_cells(),
            r.training_runs.len().max(1),
            acc,
            fd
        ));
    }
    out
}

/// `cargo xtask eval-merge`: reads the reports, merges them, writes `out` (JSON) and optionally
/// `markdown`, and returns the table.
///
/// # Errors
/// Unreadable or malformed reports (named), and [`merge_reports`]'s errors.
pub fn merge(
    runs: &[PathBuf],
    out: &Path,
    markdown: Option<&Path>,
    command: &str,
) -> Result<String> {
    let reports = read_reports::<EvalReport>(runs)?;
    write_merged(&merge_reports(&reports, command)?, out, markdown)
}

/// `cargo xtask eval-merge --tables`: reads the tables, combines them ([`combine_tables`]),
/// writes `out` (JSON) and optionally `markdown`, and returns the table.
///
/// # Errors
/// Unreadable or malformed reports (named), and [`combine_tables`]'s errors.
pub fn combine(
    tables: &[PathBuf],
    names: &[String],
    out: &Path,
    markdown: Option<&Path>,
    command: &str,
) -> Result<String> {
    let tables = read_reports::<MergedReport>(tables)?;
    write_merged(&combine_tables(&tables, names, command)?, out, markdown)
}

fn read_reports<T: serde::de::DeserializeOwned>(paths: &[PathBuf]) -> Result<Vec<(String, T)>> {
    paths
        .iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let report: T = serde_json::from_str(&text)
                .with_context(|| format!("{}: not an `xtask eval` report", p.display()))?;
            Ok((p.display().to_string(), report))
        })
        .collect()
}

/// Writes the report (JSON) and its Markdown table, each whole or not at all.
fn write_merged(merged: &MergedReport, out: &Path, markdown: Option<&Path>) -> Result<String> {
    let json = serde_json::to_string_pretty(merged).context("serialising the merged report")?;
    tmd_model::model_dir::write_atomically(out, json.as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    let table = merged_markdown(merged);
    if let Some(md) = markdown {
        tmd_model::model_dir::write_atomically(md, table.as_bytes())
            .with_context(|| format!("writing {}", md.display()))?;
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `xtask eval` report as it is written (the format of `docs/results/*.json`), with a
    /// teacher row and two student rows whose scores are offset by `k`.
    fn report_json(k: f64, with_dmd: bool) -> String {
        let row = |method: &str,
                   m: usize,
                   n: usize,
                   h: usize,
                   g: f64,
                   nfe: f64,
                   acc: f64,
                   fd: f64| {
            format!(
                r#"{{"method": "{method}", "outer_steps": {m}, "inner_steps": {n}, "head_blocks": {h},
                "guidance": {g:?}, "effective_nfe": {nfe:?}, "prompt_accuracy": {acc:?},
                "accuracy_seed_std": 0.01, "attribute_accuracy": {{"colour": {acc:?}, "shape": 0.5}},
                "frechet_distance": {fd:?}, "seconds_per_clip": 0.04, "prompts": 160, "seeds": 2}}"#
            )
        };
        let mut rows = vec![row("tmd", 2, 2, 1, 1.0, 2.5, 0.85 + k, 2000.0 + 100.0 * k)];
        if with_dmd {
            rows.push(row("dmd2-v", 2, 0, 0, 1.0, 2.0, 0.84 - k, 2100.0));
        }
        if k == 0.0 {
            rows.insert(0, row("teacher-unipc", 50, 0, 0, 4.0, 100.0, 0.927, 1415.0));
        }
        format!(
            r#"{{"model": "runs/teacher", "prompts_source": "held-out split (one caption per combination)",
            "unexpressible": [], "judge_accuracy": [{{"split": "held-out", "clips": 128,
            "per_attribute": {{"colour": 1.0, "shape": 1.0}}, "mean": 1.0, "all_correct": 1.0}}],
            "device": "cpu", "command": "xtask eval --seed-run {k}", "rows": [{}]}}"#,
            rows.join(",")
        )
    }

    fn reports(ks: &[f64]) -> Vec<(String, EvalReport)> {
        ks.iter()
            .map(|&k| {
                (
                    format!("run{k}.json"),
                    serde_json::from_str(&report_json(k, true)).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn merges_means_ranges_and_each_runs_scores() {
        let merged = merge_reports(&reports(&[0.0, 0.02, 0.01]), "xtask eval-merge").unwrap();
        assert_eq!(merged.rows.len(), 3);
        let teacher = &merged.rows[0];
        assert_eq!(teacher.mean.spec.method, "teacher-unipc");
        assert!(teacher.training_runs.is_empty() && teacher.prompt_accuracy_range.is_none());
        let tmd = &merged.rows[1];
        assert_eq!(tmd.mean.spec.method, "tmd");
        assert!((tmd.mean.prompt_accuracy - 0.86).abs() < 1e-12);
        assert!((tmd.mean.attribute_accuracy["colour"] - 0.86).abs() < 1e-12);
        assert!((tmd.mean.frechet_distance - 2001.0).abs() < 1e-9);
        let [lo, hi] = tmd.prompt_accuracy_range.unwrap();
        assert!((lo - 0.85).abs() < 1e-12 && (hi - 0.87).abs() < 1e-12);
        assert_eq!(tmd.frechet_distance_range, Some([2000.0, 2002.0]));
        let sources: Vec<&str> = tmd
            .training_runs
            .iter()
            .map(|r| r.source.as_str())
            .collect();
        assert_eq!(sources, ["run0.json", "run0.02.json", "run0.01.json"]);
        assert!((tmd.training_runs[1].prompt_accuracy - 0.87).abs() < 1e-12);
        let dmd = &merged.rows[2];
        assert!((dmd.mean.prompt_accuracy - 0.83).abs() < 1e-12);
        assert_eq!(merged.training_run_reports.len(), 3);

        // The JSON carries `training_runs` per row and still reads as an eval report (the means).
        let json = serde_json::to_string(&merged).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value["rows"][1]["training_runs"].as_array().unwrap().len(),
            3
        );
        assert!(value["rows"][1]["training_runs"][0]["frechet_distance"].is_number());
        assert!(value["rows"][0].get("training_runs").is_none());
        let plain: EvalReport = serde_json::from_str(&json).unwrap();
        assert_eq!(plain.rows[1].prompt_accuracy, tmd.mean.prompt_accuracy);
        let back: MergedReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, merged);

        let table = merged_markdown(&merged);
        assert!(
            table.contains(
                "| tmd | 2 | 2 | 1 | - | 2.5 | 3 | 86.0 (85.0-87.0) | 2001 (2000-2002) |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| teacher-unipc | 50 | - | - | 4 | 100 | 1 | 92.7 ± 1.0 | 1415 |"),
            "{table}"
        );
    }

    #[test]
    fn refuses_reports_that_do_not_match() {
        let mut r = reports(&[0.0, 0.01]);
        assert!(
            merge_reports(&r[..1], "").is_err(),
            "one run is not a spread"
        );

        // A student missing from one run's eval.
        let partial: EvalReport = serde_json::from_str(&report_json(0.03, false)).unwrap();
        r.push(("run3.json".into(), partial));
        let err = merge_reports(&r, "").unwrap_err().to_string();
        assert!(
            err.contains("dmd2-v") && err.contains("missing from run3.json"),
            "{err}"
        );

        // Another prompt count, another prompt set, another teacher.
        let mut r = reports(&[0.0, 0.01]);
        r[1].1.rows[0].prompts = 64;
        let err = merge_reports(&r, "").unwrap_err().to_string();
        assert!(err.contains("64 prompts x 2 seeds"), "{err}");
        let mut r = reports(&[0.0, 0.01]);
        r[1].1.prompts_source = "prompts.txt".into();
        assert!(merge_reports(&r, "")
            .unwrap_err()
            .to_string()
            .contains("prompt set"));
        let mut r = reports(&[0.0, 0.01]);
        r[1].1.model = "runs/other".into();
        assert!(merge_reports(&r, "")
            .unwrap_err()
            .to_string()
            .contains("one teacher"));

        // The same row twice in one report.
        let mut r = reports(&[0.0, 0.01]);
        let dup = r[1].1.rows[0].clone();
        r[1].1.rows.push(dup);
        assert!(merge_reports(&r, "")
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }

    #[test]
    fn combines_tables_side_by_side_keeping_each_rows_runs() {
        let merged = merge_reports(&reports(&[0.0, 0.02, 0.01]), "").unwrap();
        let mut other = merge_reports(&reports(&[0.0, 0.04]), "").unwrap();
        let tables = vec![
            ("base.json".to_string(), merged.clone()),
            ("shift2.json".to_string(), other.clone()),
        ];
        // The same rows in both: refused unless the tables are named.
        let err = combine_tables(&tables, &[], "").unwrap_err().to_string();
        assert!(
            err.contains("tmd M=2") && err.contains("base.json") && err.contains("--names"),
            "{err}"
        );
        let names = ["outer shift 10".to_string(), "outer shift 2".to_string()];
        let combined = combine_tables(&tables, &names, "xtask eval-merge --tables").unwrap();
        let methods: Vec<&str> = combined
            .rows
            .iter()
            .map(|r| r.mean.spec.method.as_str())
            .collect();
        // The teacher, one evaluation in both tables, once and unnamed.
        assert_eq!(
            methods,
            [
                "teacher-unipc",
                "tmd (outer shift 10)",
                "dmd2-v (outer shift 10)",
                "tmd (outer shift 2)",
                "dmd2-v (outer shift 2)"
            ]
        );
        assert_eq!(combined.rows[1].training_runs, merged.rows[1].training_runs);
        assert_eq!(combined.rows[3].training_runs.len(), 2);
        assert_eq!(combined.training_run_reports.len(), 5);
        assert!(merged_markdown(&combined)
            .contains("| tmd (outer shift 2) | 2 | 2 | 1 | - | 2.5 | 2 | 87.0 (85.0-89.0) |"));

        // The shared teacher heads the table also when the first table has no teacher row.
        let mut students = merged.clone();
        students
            .rows
            .retain(|r| r.mean.spec.method != "teacher-unipc");
        let three = [
            ("m1.json".to_string(), students),
            tables[0].clone(),
            tables[1].clone(),
        ];
        let names3 = ["m1".to_string(), names[0].clone(), names[1].clone()];
        let combined3 = combine_tables(&three, &names3, "").unwrap();
        assert_eq!(combined3.rows[0].mean.spec.method, "teacher-unipc");
        assert_eq!(combined3.rows[1].mean.spec.method, "tmd (m1)");
        assert_eq!(combined3.rows.len(), 7);
        // ... and when only one table has it, unnamed.
        let mut no_teacher = tables[1].clone();
        no_teacher
            .1
            .rows
            .retain(|r| r.mean.spec.method != "teacher-unipc");
        let one = [three[0].clone(), no_teacher, tables[0].clone()];
        let combined1 = combine_tables(&one, &names3, "").unwrap();
        assert_eq!(combined1.rows[0].mean.spec.method, "teacher-unipc");
        assert_eq!(
            combined1.rows[0].training_runs,
            merged.rows[0].training_runs
        );
        assert_eq!(combined1.rows.len(), 7);
        // Two other evaluations of the same teacher row stay apart, each named.
        let mut other_teacher = tables[1].clone();
        other_teacher.1.rows[0].mean.prompt_accuracy += 0.01;
        let two = [tables[0].clone(), other_teacher];
        let combined2 = combine_tables(&two, &names, "").unwrap();
        assert!(combined2
            .rows
            .iter()
            .any(|r| r.mean.spec.method == "teacher-unipc (outer shift 2)"));

        // Tables of other students need no names; a plain eval report is a table too.
        other.rows.retain(|r| r.mean.spec.method == "dmd2-v");
        let mut first = merged.clone();
        first.rows.retain(|r| r.mean.spec.method != "dmd2-v");
        let plain: MergedReport = serde_json::from_str(&report_json(0.0, false)).unwrap();
        assert!(plain.training_run_reports.is_empty());
        let combined = combine_tables(
            &[
                ("m2.json".into(), first),
                ("m1.json".into(), other.clone()),
                ("plain.json".into(), plain),
            ],
            &[],
            "",
        );
        let err = combined.unwrap_err().to_string();
        assert!(err.contains("in m2.json and in plain.json"), "{err}");

        // Other teachers, other prompts, a names count that does not fit.
        let mut t = tables.clone();
        t[1].1.model = "runs/other".into();
        assert!(combine_tables(&t, &names, "")
            .unwrap_err()
            .to_string()
            .contains("one teacher"));
        let mut t = tables.clone();
        t[1].1.prompts_source = "prompts.txt".into();
        assert!(combine_tables(&t, &names, "")
            .unwrap_err()
            .to_string()
            .contains("prompt set"));
        assert!(combine_tables(&tables, &names[..1], "")
            .unwrap_err()
            .to_string()
            .contains("1 names for 2 tables"));
        assert!(combine_tables(&tables[..1], &[], "").is_err());
    }

    #[test]
    fn run_reads_writes_and_names_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = [0.0, 0.02]
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                let p = dir.path().join(format!("seed{i}.json"));
                std::fs::write(&p, report_json(k, true)).unwrap();
                p
            })
            .collect();
        let out = dir.path().join("merged.json");
        let md = dir.path().join("merged.md");
        let table = merge(&paths, &out, Some(&md), "xtask eval-merge").unwrap();
        assert_eq!(std::fs::read_to_string(&md).unwrap(), table);
        let merged: MergedReport =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(merged.rows[1].training_runs.len(), 2);

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{}").unwrap();
        let err = format!(
            "{:#}",
            merge(&[paths[0].clone(), bad], &out, None, "").unwrap_err()
        );
        assert!(
            err.contains("bad.json") && err.contains("not an `xtask eval` report"),
            "{err}"
        );
    }
}

/// Arguments of `eval-merge`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["runs", "tables"])))]
pub struct Args {
    /// The `eval` reports, one per training run (at least two).
    #[arg(long, num_args = 2.., value_name = "REPORT")]
    runs: Vec<PathBuf>,
    /// Instead of --runs: merged reports (or plain `eval` reports) to put side by side in one
    /// table, each row with its own training runs (at least two).
    #[arg(long, num_args = 2.., value_name = "REPORT")]
    tables: Vec<PathBuf>,
    /// With --tables: one name per table, appended to its rows' method ("tmd (outer shift 2)"),
    /// for tables of the same rows.
    #[arg(long, num_args = 1.., requires = "tables", value_name = "NAME")]
    names: Vec<String>,
    /// JSON report to write.
    #[arg(long)]
    out: PathBuf,
    /// Also write the Markdown table here.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

/// Runs `eval-merge`: merges, prints the Markdown table, writes the report.
pub fn run(args: Args) -> Result<()> {
    let command = crate::common::command_line(&std::env::args().collect::<Vec<_>>());
    let table = if args.tables.is_empty() {
        merge(&args.runs, &args.out, args.markdown.as_deref(), &command)?
    } else {
        combine(
            &args.tables,
            &args.names,
            &args.out,
            args.markdown.as_deref(),
            &command,
        )?
    };
    print!("{table}");
    println!("wrote {}", args.out.display());
    Ok(())
}
