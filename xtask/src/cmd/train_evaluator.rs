//! `cargo xtask train-evaluator`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use tmd_distill::train::load_stage_config;
use tmd_world::eval::{train_evaluator, EvaluatorRecipe};

use crate::common::DeviceKind;

/// Arguments of `train-evaluator` (its help text is the doc comment of `Command::TrainEvaluator`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Recipe (TOML; keys of `EvaluatorRecipe`).
    #[arg(long, default_value = "configs/world-evaluator.toml")]
    config: PathBuf,
    /// Override a recipe key, e.g. `--set train.steps=100` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Run directory (checkpoints, loss log).
    #[arg(long, default_value = "runs/world-evaluator")]
    run_dir: PathBuf,
    /// Evaluator directory to write.
    #[arg(long, default_value = "assets/world-evaluator")]
    out: PathBuf,
    /// Backend.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
}

/// Runs `train-evaluator`.
pub fn run(args: Args) -> Result<()> {
    let Args {
        config,
        overrides,
        run_dir,
        out,
        device,
    } = args;
    let recipe: EvaluatorRecipe = load_stage_config(Some(&config), &overrides)?;
    let accuracy = on_backend!(device, B, dev => train_evaluator::<Autodiff<B>>(
        &recipe,
        &run_dir,
        &out,
        &dev,
    ))
    .context("training the evaluator")?;
    for a in &accuracy {
        println!(
            "real {} clips ({}): mean attribute accuracy {:.2}%, all five right {:.2}%, {:?}",
            a.split,
            a.clips,
            100.0 * a.mean,
            100.0 * a.all_correct,
            a.per_attribute
        );
    }
    println!("wrote {}", out.display());
    Ok(())
}
