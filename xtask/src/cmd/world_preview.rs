//! `cargo xtask world-preview`.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// Arguments of `world-preview` (its help text is the doc comment of `Command::WorldPreview`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output folder.
    #[arg(long, default_value = "docs/world")]
    out: PathBuf,
    /// Which split to draw from: train or held-out.
    #[arg(long, default_value = "train")]
    split: String,
    /// Number of clips.
    #[arg(long, default_value_t = 6)]
    count: u64,
    /// Dataset seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs `world-preview`.
pub fn run(args: Args) -> Result<()> {
    let Args {
        out,
        split,
        count,
        seed,
    } = args;
    use tmd_world::{save_contact_sheet, save_gif_scaled, ClipSpec, Split, WorldDataset};
    let split: Split = split.parse().context("--split")?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let data = WorldDataset::new(Some(split), seed, ClipSpec::default());
    let clips: Vec<_> = (0..count).map(|i| data.clip(i)).collect();
    let mut captions = String::new();
    for (i, clip) in clips.iter().enumerate() {
        let path = out.join(format!("{}-{i}.gif", split.name()));
        save_gif_scaled(clip, &path, 2)?;
        captions.push_str(&format!("{}\t{}\n", path.display(), clip.caption));
    }
    let sheet = out.join(format!("{}-sheet.png", split.name()));
    save_contact_sheet(&clips, &[0, 8, 16], 1, &sheet)?;
    std::fs::write(
        out.join(format!("{}-captions.tsv", split.name())),
        &captions,
    )?;
    print!("{captions}");
    Ok(())
}
