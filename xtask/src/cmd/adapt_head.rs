//! `cargo xtask adapt-head`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use tmd_distill::adapt_head::{run_adapt_head, AdaptHeadRecipe};
use tmd_distill::train::load_stage_config;

use crate::common::{invocation, DeviceKind};
use crate::parallel;

/// Arguments of `adapt-head` (its help text is the doc comment of `Command::AdaptHead`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Teacher model directory (converted, diffusers, or the bundled world model, whose
    /// teacher is used and whose student/ is ignored).
    #[arg(long, default_value = "assets/world")]
    teacher: PathBuf,
    /// Latent cache of training clips (`index.json` + chunks; `cargo xtask pretrain` writes
    /// one to <run-dir>/latents).
    #[arg(long, default_value = "runs/world-teacher/latents")]
    data: PathBuf,
    /// Recipe (TOML: [head], [train], [sampling]).
    #[arg(long, default_value = "configs/adapt-head.toml")]
    config: PathBuf,
    /// Override a recipe key, e.g. `--set train.steps=100` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Run directory (checkpoints, loss log).
    #[arg(long, default_value = "runs/adapt-head")]
    run_dir: PathBuf,
    /// Student directory to write (a copy of the teacher's plus student/).
    #[arg(long, default_value = "runs/student-stage1")]
    out: PathBuf,
    /// Backend.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
    #[command(flatten)]
    parallel: parallel::ParallelArgs,
}

/// Runs `adapt-head`.
pub fn run(args: Args) -> Result<()> {
    let Args {
        teacher,
        data,
        config,
        overrides,
        run_dir,
        out,
        device,
        parallel,
    } = args;
    let recipe: AdaptHeadRecipe = load_stage_config(Some(&config), &overrides)?;
    if let Some(note) = recipe.sampling_shift_mismatch() {
        eprintln!("adapt-head: warning: {note}");
    }
    let source = invocation();
    let t0 = Instant::now();
    let report = on_backend!(device, B, ranks device_of => parallel.run::<B, _>(device_of, |dev| {
        run_adapt_head::<Autodiff<B>>(&recipe, &teacher, &data, &run_dir, &out, &source, dev)
            .map(|(_, report)| report)
            .context("stage 1 (adapt-head)")
    }))?;
    eprintln!(
        "adapt-head: steps {}..{} in {:.1} s; student written to {} (generate --model {})",
        report.start_step,
        report.end_step,
        t0.elapsed().as_secs_f64(),
        out.display(),
        out.display()
    );
    Ok(())
}
