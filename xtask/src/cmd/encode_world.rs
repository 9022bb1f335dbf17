//! `cargo xtask encode-world`: world clips -> a latent cache (training or held-out data of
//! `distill-decoder`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use tmd_model::model_dir::ModelDir;
use tmd_world::{ClipSpec, Split, WorldDataset};

use crate::common::DeviceKind;

/// Arguments of `encode-world`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model directory whose VAE encodes the clips.
    #[arg(long, default_value = "assets/world")]
    model: PathBuf,
    /// Split: train or held-out.
    #[arg(long, default_value = "train")]
    split: String,
    /// Clips (the first of the split's seeded sequence).
    #[arg(long)]
    clips: usize,
    /// Dataset seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Clips encoded together (and stored per chunk file).
    #[arg(long, default_value_t = 16)]
    chunk: usize,
    /// Output cache directory (resumes if interrupted).
    #[arg(long)]
    out: PathBuf,
    /// Backend.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
}

/// Runs `encode-world`.
pub fn run(args: Args) -> Result<()> {
    let split: Split = args.split.parse().context("--split")?;
    let t0 = Instant::now();
    on_backend!(args.device, B, dev => {
        let dir = ModelDir::open(&args.model)
            .with_context(|| format!("opening {}", args.model.display()))?;
        let d = dir.defaults();
        let spec = ClipSpec::new(d.frames, d.height, d.width)?;
        let vae = dir.load_vae::<B>(&dev)?;
        let data = WorldDataset::new(Some(split), args.seed, spec);
        tmd_world::latents::encode_world(&args.out, &vae, 0, &data, args.clips, args.chunk, true, &dev)
            .with_context(|| format!("encoding world clips into {}", args.out.display()))?;
        anyhow::Ok(())
    })?;
    eprintln!(
        "encode-world: {} {} clips in {} ({:.1} s)",
        args.clips,
        split.name(),
        args.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
