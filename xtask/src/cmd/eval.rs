//! `cargo xtask eval`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use tmd_sampler::TeacherPipeline;
use tmd_world::eval::{
    evaluate_students, evaluate_teacher, judge_accuracy, load_prompts, markdown_table,
    split_prompts, spread, EvalCase, EvalPlan, EvalReport, FeatureStats, Judge, Unexpressible,
    CHECK_SEED,
};
use tmd_world::{ClipSpec, Split};

use crate::common::DeviceKind;

/// Arguments of `eval` (its help text is the doc comment of `Command::Eval`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model directory to evaluate (its teacher rows; a student directory's teacher is the
    /// one beside its student). Default: the bundled world model.
    #[arg(long, default_value = "assets/world")]
    model: PathBuf,
    /// Evaluator directory (written by `train-evaluator`).
    #[arg(long, default_value = "assets/world-evaluator")]
    evaluator: PathBuf,
    /// Prompt file, one caption per line; default: one caption per combination of --split.
    #[arg(long, conflicts_with = "split")]
    prompts: Option<PathBuf>,
    /// Without --prompts: the split whose combinations are the prompts, "held-out" (the 160
    /// combinations never trained on: the comparison's split) or "train" (the 800 trained on:
    /// how much of a row's score is generalisation to unseen shape-colour pairs).
    #[arg(long, default_value = "held-out")]
    split: Split,
    /// Evaluate at most this many prompts, spread over the list (0: all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Seeds per prompt.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Which draw of the evaluation: the wording of the split's captions, the sampling seeds and
    /// the real clips the Frechet distance compares with all change with it (the combinations do
    /// not). 0 is the comparison's set; another draw re-measures a row on captions and noise it
    /// was not chosen on. With --prompts, only the seeds and the real clips change.
    #[arg(long, default_value_t = 0)]
    draw: u64,
    /// Rows to evaluate (TOML `[[teacher]]` / `[[student]]` tables): exactly the rows it lists;
    /// default: issue 3's seven teacher rows.
    #[arg(long)]
    rows: Option<PathBuf>,
    /// Override a rows key (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// JSON report to write.
    #[arg(long, default_value = "report.json")]
    out: PathBuf,
    /// Also write the Markdown table here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Backend.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
}

/// Runs `eval`.
pub fn run(args: Args) -> Result<()> {
    let Args {
        model,
        evaluator,
        prompts,
        split,
        limit,
        seeds,
        draw,
        rows,
        overrides,
        out,
        markdown,
        device,
    } = args;
    let plan = EvalPlan::load(rows.as_deref(), &overrides)?;
    let args = EvalArgs {
        model: &model,
        evaluator: &evaluator,
        prompts: prompts.as_deref(),
        split,
        limit,
        seeds,
        draw,
        plan: &plan,
    };
    let report = on_backend!(device, B, dev => run_eval::<B>(&args, &dev, device.name()))?;
    let json = serde_json::to_string_pretty(&report).context("serialising the report")?;
    std::fs::write(&out, json).with_context(|| format!("writing {}", out.display()))?;
    let table = markdown_table(&report);
    if let Some(md) = markdown {
        std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    }
    print!("{table}");
    println!("wrote {}", out.display());
    Ok(())
}

/// What `eval` evaluates.
struct EvalArgs<'a> {
    model: &'a Path,
    evaluator: &'a Path,
    prompts: Option<&'a Path>,
    split: Split,
    limit: usize,
    seeds: u64,
    draw: u64,
    plan: &'a EvalPlan,
}

/// The prompts: a prompt file's parsed captions (with the lines the world cannot express), or one
/// caption per combination of `split`, worded by `draw`; and the report's `prompts_source`, which
/// names a draw other than 0 (so reports of different draws never merge).
fn prompt_cases(
    prompts: Option<&Path>,
    split: Split,
    draw: u64,
) -> Result<(Vec<EvalCase>, Vec<Unexpressible>, String)> {
    let (cases, bad, source) = match prompts {
        Some(path) => {
            let (cases, bad) = load_prompts(path)?;
            (cases, bad, path.display().to_string())
        }
        None => (
            split_prompts(split, draw),
            Vec::new(),
            format!("{split} split (one caption per combination)"),
        ),
    };
    let source = match draw {
        0 => source,
        d => format!("{source}, draw {d}"),
    };
    Ok((cases, bad, source))
}

/// The sampling seeds of `draw`: `0..n` for draw 0, disjoint ranges for the others.
fn draw_seeds(draw: u64, n: u64) -> Vec<u64> {
    (0..n).map(|s| (draw << 32) + s).collect()
}

/// The seed of the real clips the Frechet distance compares with, per draw (draw 0's as before).
fn draw_real_seed(draw: u64) -> u64 {
    0x7ea1 + (draw << 32)
}

/// Loads the model and the judge on `B` and evaluates every row.
fn run_eval<B: burn::prelude::Backend>(
    args: &EvalArgs,
    device: &B::Device,
    device_name: &str,
) -> Result<EvalReport> {
    let pipeline = TeacherPipeline::<B>::load(args.model, device)
        .with_context(|| format!("loading model {}", args.model.display()))?;
    let judge = Judge::<B>::load(args.evaluator, device)
        .with_context(|| format!("loading evaluator {}", args.evaluator.display()))?;
    let (cases, unexpressible, source) = prompt_cases(args.prompts, args.split, args.draw)?;
    for u in &unexpressible {
        eprintln!(
            "line {}: the world cannot express '{}': {}",
            u.line, u.caption, u.reason
        );
    }
    let cases = spread(cases, args.limit);
    anyhow::ensure!(!cases.is_empty(), "no prompts to evaluate");
    let defaults = pipeline.options("");
    let spec = ClipSpec::new(defaults.frames, defaults.height, defaults.width)?;
    let judge_accuracy = [Split::Train, Split::HeldOut]
        .into_iter()
        .map(|s| judge_accuracy(&judge, s, 128, CHECK_SEED, spec))
        .collect::<Result<Vec<_>, _>>()?;
    let attributes: Vec<_> = cases.iter().map(|c| c.attributes).collect();
    let real = FeatureStats::from_rows(
        &judge.real_features(&attributes, draw_real_seed(args.draw), spec)?,
        judge.config.feature_dim(),
    );
    let seeds = draw_seeds(args.draw, args.seeds);
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} clips [{elapsed}<{eta}]")
            .expect("valid template"),
    );
    let rows = evaluate_teacher(
        &pipeline,
        &judge,
        &cases,
        &seeds,
        args.plan,
        &real,
        &mut |row| {
            bar.reset();
            bar.set_message(format!(
                "{} M={} CFG={}",
                row.method, row.outer_steps, row.guidance
            ));
        },
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    let student_rows = evaluate_students(
        &judge,
        &cases,
        &seeds,
        args.plan,
        &real,
        device,
        &mut |row| {
            bar.reset();
            bar.set_message(format!(
                "{} M={} N={} H={}",
                row.method, row.outer_steps, row.inner_steps, row.head_blocks
            ));
        },
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    let rows = rows.into_iter().chain(student_rows).collect();
    bar.finish_and_clear();
    Ok(EvalReport {
        model: args.model.display().to_string(),
        prompts_source: source,
        unexpressible,
        judge_accuracy,
        device: device_name.to_string(),
        command: crate::common::command_line(&std::env::args().collect::<Vec<_>>()),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use tmd_world::split_of;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn split_picks_the_prompts_and_names_them() {
        for (split, n) in [(Split::HeldOut, 160), (Split::Train, 800)] {
            let (cases, bad, source) = prompt_cases(None, split, 0).unwrap();
            assert_eq!(cases.len(), n);
            assert!(bad.is_empty());
            assert!(cases.iter().all(|c| split_of(&c.attributes) == split));
            assert_eq!(
                source,
                format!("{split} split (one caption per combination)")
            );
        }
        // The held-out source reads as it always has, so older reports still merge with new ones.
        let (_, _, source) = prompt_cases(None, Split::HeldOut, 0).unwrap();
        assert_eq!(source, "held-out split (one caption per combination)");
    }

    #[test]
    fn another_draw_rewords_the_same_combinations_with_other_seeds() {
        let (base, _, base_source) = prompt_cases(None, Split::HeldOut, 0).unwrap();
        let (other, _, source) = prompt_cases(None, Split::HeldOut, 1).unwrap();
        assert_eq!(source, format!("{base_source}, draw 1"));
        assert_eq!(base.len(), other.len());
        assert!(base
            .iter()
            .zip(&other)
            .all(|(a, b)| a.attributes == b.attributes));
        let reworded = base
            .iter()
            .zip(&other)
            .filter(|(a, b)| a.caption != b.caption)
            .count();
        assert!(
            reworded > base.len() / 2,
            "only {reworded} captions reworded"
        );
        assert_eq!(draw_seeds(0, 2), vec![0, 1]);
        let (a, b) = (draw_seeds(0, 1000), draw_seeds(1, 1000));
        assert!(a.iter().all(|s| !b.contains(s)));
        assert_eq!(draw_real_seed(0), 0x7ea1);
        assert_ne!(draw_real_seed(1), draw_real_seed(0));
    }

    #[test]
    fn split_flag_defaults_to_held_out_and_excludes_a_prompt_file() {
        let parse =
            |a: &[&str]| Cli::try_parse_from(std::iter::once("eval").chain(a.iter().copied()));
        assert_eq!(parse(&[]).unwrap().args.split, Split::HeldOut);
        assert_eq!(
            parse(&["--split", "train"]).unwrap().args.split,
            Split::Train
        );
        assert!(parse(&["--prompts", "p.txt"]).is_ok());
        let err = parse(&["--split", "train", "--prompts", "p.txt"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--prompts"), "{err}");
        let err = parse(&["--split", "tran"]).err().unwrap().to_string();
        assert!(err.contains("tran") && err.contains("held-out"), "{err}");
    }
}
