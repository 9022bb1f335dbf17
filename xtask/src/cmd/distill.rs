//! `cargo xtask distill`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use tmd_distill::distill::run::{run_distill, DistillRecipe};
use tmd_distill::train::load_stage_config;

use crate::common::{invocation, DeviceKind};
use crate::parallel;

/// Arguments of `distill` (its help text is the doc comment of `Command::Distill`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Input directory: stage 1's student directory (TMD) or the teacher's (DMD2-v).
    #[arg(long, default_value = "runs/student-stage1")]
    input: PathBuf,
    /// Teacher data (`cargo xtask teacher-data`), or any latent cache for TMD.
    #[arg(long, default_value = "runs/teacher-data")]
    data: PathBuf,
    /// Recipe (TOML: method, [train], [discriminator], [kd]).
    #[arg(long, default_value = "configs/distill.toml")]
    config: PathBuf,
    /// Override a recipe key, e.g. `--set train.steps=100` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Run directory (checkpoints and loss logs of kd/ and stage2/).
    #[arg(long, default_value = "runs/distill")]
    run_dir: PathBuf,
    /// Student directory to write.
    #[arg(long, default_value = "runs/student")]
    out: PathBuf,
    /// Backend.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
    #[command(flatten)]
    parallel: parallel::ParallelArgs,
}

/// Runs `distill`.
pub fn run(args: Args) -> Result<()> {
    let Args {
        input,
        data,
        config,
        overrides,
        run_dir,
        out,
        device,
        parallel,
    } = args;
    let recipe: DistillRecipe = load_stage_config(Some(&config), &overrides)?;
    let source = invocation();
    let t0 = Instant::now();
    let report = on_backend!(device, B, ranks device_of => parallel.run::<B, _>(device_of, |dev| {
        run_distill::<Autodiff<B>>(&recipe, &input, &data, &run_dir, &out, &source, dev)
            .map(|(_, report)| report)
            .context("stage 2 (distill)")
    }))?;
    if let Some(kd) = &report.kd {
        eprintln!("KD warm-up: steps {}..{}", kd.start_step, kd.end_step);
    }
    eprintln!(
        "distill ({:?}): steps {}..{} in {:.1} s; student written to {} (generate --model {})",
        recipe.method,
        report.stage2.start_step,
        report.stage2.end_step,
        t0.elapsed().as_secs_f64(),
        out.display(),
        out.display()
    );
    Ok(())
}
