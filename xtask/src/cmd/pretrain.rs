//! `cargo xtask pretrain`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use tmd_distill::train::load_stage_config;
use tmd_world::eval::{Judge, CHECK_SEED};
use tmd_world::pretrain::teacher::{
    check_vae, export_teacher, train_teacher_dit, train_teacher_vae, TeacherRecipe, VAE_RUN,
};
use tmd_world::Split;

use crate::common::DeviceKind;
use crate::parallel;

/// Stages of `pretrain`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PretrainStage {
    /// VAE, DiT, then export.
    All,
    /// Train the VAE only.
    Vae,
    /// Train the DiT only (needs the finished VAE).
    Dit,
    /// Export the finished teacher only.
    Export,
    /// Check the newest VAE checkpoint (finished or not) on whole held-out clips: reconstruction
    /// MSE and the evaluator's accuracy on the reconstructions (`--evaluator`); writes
    /// `<run-dir>/vae/check-step-N.json`.
    VaeCheck,
}

/// Arguments of `pretrain` (its help text is the doc comment of `Command::Pretrain`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Recipe (TOML; keys of `TeacherRecipe`: [world], [vae], [vae_train], [text], [dit],
    /// [dit_train], [sampling]).
    #[arg(long, default_value = "configs/world-teacher.toml")]
    config: PathBuf,
    /// Override a recipe key, e.g. `--set dit_train.steps=100` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Run directory: checkpoints, loss logs, the frozen text encoder, latent statistics.
    #[arg(long, default_value = "runs/world-teacher")]
    run_dir: PathBuf,
    /// Where the finished model directory is written.
    #[arg(long, default_value = "assets/world-teacher")]
    out: PathBuf,
    /// Which stages to run (each resumes or skips what is done).
    #[arg(long, value_enum, default_value_t = PretrainStage::All)]
    stage: PretrainStage,
    /// Evaluator directory, for `--stage vae-check`.
    #[arg(long, default_value = "assets/world-evaluator")]
    evaluator: PathBuf,
    /// Split whose clips `--stage vae-check` reconstructs: held-out (generalisation to unseen
    /// attribute combinations) or train (what the VAE fits).
    #[arg(long, default_value = "held-out")]
    check_split: String,
    /// Backend: cpu (NdArray), cuda (a build with `--features cuda`), or torch-cpu /
    /// torch-cuda (LibTorch, a build with `--features tch`).
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
    #[command(flatten)]
    parallel: parallel::ParallelArgs,
}

/// Runs `pretrain`.
pub fn run(args: Args) -> Result<()> {
    let Args {
        config,
        overrides,
        run_dir,
        out,
        stage,
        evaluator,
        check_split,
        device,
        parallel,
    } = args;
    let recipe: TeacherRecipe = load_stage_config(Some(&config), &overrides)?;
    if stage == PretrainStage::VaeCheck {
        let split: Split = check_split.parse().context("--check-split")?;
        return on_backend!(device, B, dev => vae_check::<B>(&recipe, &run_dir, &evaluator, split, &dev));
    }
    let source = format!(
        "bundled world teacher, `cargo xtask pretrain --config {}{}`",
        config.display(),
        overrides
            .iter()
            .map(|o| format!(" --set {o}"))
            .collect::<String>()
    );
    on_backend!(device, B, ranks device_of => parallel.run::<B, _>(device_of, |dev| {
        pretrain::<Autodiff<B>>(&recipe, &run_dir, &out, stage, &source, dev)
    }))?;
    Ok(())
}

/// Runs the stages of the teacher recipe on backend `B`, printing what each did.
fn pretrain<B: AutodiffBackend>(
    recipe: &TeacherRecipe,
    run_dir: &Path,
    out: &Path,
    stage: PretrainStage,
    source: &str,
    device: &B::Device,
) -> Result<()> {
    // In a data-parallel run, rank 0 writes the run's files and reports; every rank trains.
    let writer = tmd_distill::train::data_parallel::is_writer();
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    if writer {
        std::fs::write(
            run_dir.join("recipe.json"),
            serde_json::to_string_pretty(recipe).context("serialising the recipe")?,
        )
        .with_context(|| format!("writing {}/recipe.json", run_dir.display()))?;
    }
    let report = |what: &str, r: &tmd_distill::train::run::PretrainReport, secs: f64| {
        if !writer {
            return;
        }
        let tail = &r.losses[r.losses.len().saturating_sub(50)..];
        let mean = tail.iter().map(|(_, l)| l).sum::<f64>() / tail.len().max(1) as f64;
        println!(
            "{what}: steps {}..{} in {secs:.1} s ({:.3} s/step), mean loss of the last {} steps {mean:.5}",
            r.start_step,
            r.end_step,
            secs / (r.end_step - r.start_step).max(1) as f64,
            tail.len()
        );
    };
    if matches!(stage, PretrainStage::All | PretrainStage::Vae) {
        let t = Instant::now();
        let (_, r) = train_teacher_vae::<B>(recipe, run_dir, device).context("VAE stage")?;
        report("vae", &r, t.elapsed().as_secs_f64());
    }
    if matches!(stage, PretrainStage::All | PretrainStage::Dit) {
        let t = Instant::now();
        let (_, r) = train_teacher_dit::<B>(recipe, run_dir, device).context("DiT stage")?;
        report("dit", &r, t.elapsed().as_secs_f64());
    }
    if !writer {
        return Ok(());
    }
    if matches!(stage, PretrainStage::All | PretrainStage::Export) {
        let manifest = export_teacher::<B::InnerBackend>(recipe, run_dir, out, source, device)
            .with_context(|| format!("exporting the teacher to {}", out.display()))?;
        println!(
            "wrote {} (DiT {} params, VAE {} params, text encoder {} params)",
            out.display(),
            manifest.transformer.params,
            manifest.vae.params,
            manifest.text_encoder.params
        );
    }
    Ok(())
}

/// `pretrain --stage vae-check`: the newest VAE checkpoint on 128 whole clips of `split`.
fn vae_check<B: burn::prelude::Backend>(
    recipe: &TeacherRecipe,
    run_dir: &Path,
    evaluator: &Path,
    split: Split,
    device: &B::Device,
) -> Result<()> {
    let judge = Judge::<B>::load(evaluator, device)
        .with_context(|| format!("loading the evaluator {}", evaluator.display()))?;
    let check = check_vae(recipe, run_dir, &judge, split, 128, CHECK_SEED, device)
        .context("checking the VAE")?;
    let json = serde_json::to_string_pretty(&check).context("serialising the check")?;
    let path = run_dir.join(VAE_RUN).join(match split {
        Split::HeldOut => format!("check-step-{:06}.json", check.step),
        _ => format!("check-{}-step-{:06}.json", split.name(), check.step),
    });
    std::fs::write(&path, &json).with_context(|| format!("writing {}", path.display()))?;
    let sheet = path.with_extension("png");
    let last = recipe.world.frames - 1;
    tmd_world::save_contact_sheet(&check.samples, &[0, last / 2, last], 2, &sheet)
        .with_context(|| format!("writing {}", sheet.display()))?;
    println!(
        "{json}\nreal and reconstructed clips (rows alternate): {}",
        sheet.display()
    );
    Ok(())
}
