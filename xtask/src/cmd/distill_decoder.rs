//! `cargo xtask distill-decoder`: train a light decoder from the full VAE decoder (on latents
//! that, for the world, `cargo xtask encode-world` writes).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use tmd_distill::distill_decoder::{run_distill_decoder, DistillDecoderRecipe};
use tmd_distill::train::load_stage_config;

use crate::common::DeviceKind;

/// Arguments of `distill-decoder`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model directory whose VAE decoder is distilled (converted or diffusers; the bundled world
    /// model by default).
    #[arg(long, default_value = "assets/world")]
    model: PathBuf,
    /// Latent cache of training latents (`index.json` + chunks): `cargo xtask encode-world`,
    /// `cargo xtask teacher-data`, or a `pretrain` run's `latents/`.
    #[arg(long)]
    data: PathBuf,
    /// Latent cache of held-out latents: the light decoder's PSNR and SSIM against the full
    /// decoder on them are printed and written to <run-dir>/quality.json.
    #[arg(long)]
    eval_data: Option<PathBuf>,
    /// Recipe (TOML, keys of `DistillDecoderRecipe`).
    #[arg(long, default_value = "configs/distill-decoder.toml")]
    config: PathBuf,
    /// Override a recipe key, e.g. `--set steps=100` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Run directory (targets, checkpoints, loss log); an interrupted run resumes from it.
    #[arg(long, default_value = "runs/distill-decoder")]
    run_dir: PathBuf,
    /// Model directory to write `decoder-light/` into: a copy of --model (made first), or
    /// --model itself.
    #[arg(long)]
    out: PathBuf,
    /// Backend.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
}

/// Runs `distill-decoder`.
pub fn run(args: Args) -> Result<()> {
    let recipe: DistillDecoderRecipe = load_stage_config(Some(&args.config), &args.overrides)?;
    let t0 = Instant::now();
    let (start, end, quality, params) = on_backend!(args.device, B, dev => {
        run_distill_decoder::<Autodiff<B>>(
            &recipe,
            &args.model,
            &args.data,
            args.eval_data.as_deref(),
            &args.run_dir,
            &args.out,
            &dev,
        )
        .map(|(_, r)| (r.train.start_step, r.train.end_step, r.quality, r.params))
        .context("distill-decoder")
    })?;
    eprintln!(
        "distill-decoder: steps {start}..{end} in {:.1} s; light decoder ({params} parameters) \
         written to {}/decoder-light (generate --model {} --decoder light)",
        t0.elapsed().as_secs_f64(),
        args.out.display(),
        args.out.display()
    );
    if let Some(q) = quality {
        println!(
            "held-out ({} clips of {}): PSNR {:.2} dB (lowest {:.2}), SSIM {:.4} against the full decoder",
            q.clips, q.data, q.psnr_db, q.psnr_min_db, q.ssim
        );
    }
    Ok(())
}
