//! `cargo xtask teacher-data`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tmd_distill::teacher_data::{generate_teacher_data, TeacherDataConfig};
use tmd_distill::train::load_stage_config;
use tmd_sampler::TeacherPipeline;
use tmd_world::{ClipSpec, Split, WorldDataset};

use crate::common::DeviceKind;

/// Arguments of `teacher-data` (its help text is the doc comment of `Command::TeacherData`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Teacher model directory (the bundled world model's student/ is ignored).
    #[arg(long, default_value = "assets/world")]
    teacher: PathBuf,
    /// Prompt file, one prompt per line; default: the captions of the world's training clips.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Dataset seed of the world captions used when no prompt file is given.
    #[arg(long, default_value_t = 0)]
    world_seed: u64,
    /// Settings (TOML; keys of `TeacherDataConfig`).
    #[arg(long, default_value = "configs/teacher-data.toml")]
    config: PathBuf,
    /// Override a key, e.g. `--set clips=64` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Output directory (a latent cache: index.json + chunks).
    #[arg(long, default_value = "runs/teacher-data")]
    out: PathBuf,
    /// Backend.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
}

/// Runs `teacher-data`.
pub fn run(args: Args) -> Result<()> {
    let Args {
        teacher,
        prompts,
        world_seed,
        config,
        overrides,
        out,
        device,
    } = args;
    let settings: TeacherDataConfig = load_stage_config(Some(&config), &overrides)?;
    let prompts: Vec<String> = match &prompts {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("reading the prompt file {}", file.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => {
            let data = WorldDataset::new(Some(Split::Train), world_seed, ClipSpec::default());
            (0..settings.clips as u64)
                .map(|i| data.caption(i))
                .collect()
        }
    };
    if prompts.is_empty() {
        bail!("no prompts: the prompt file has no non-empty line");
    }
    let t0 = Instant::now();
    let clips = on_backend!(device, B, dev => {
        let device = dev;
        let pipe = TeacherPipeline::<B>::load(&teacher, &device)
            .with_context(|| format!("loading the teacher {}", teacher.display()))?;
        generate_teacher_data(&out, &pipe, &teacher, &prompts, &settings, &device)
            .map(|cache| cache.len())
    })
    .context("teacher data")?;
    eprintln!(
        "teacher-data: {clips} clips in {} ({:.1} s)",
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
