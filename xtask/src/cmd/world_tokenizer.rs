//! `cargo xtask world-tokenizer`.

use std::path::PathBuf;

use anyhow::Result;

/// Arguments of `world-tokenizer` (its help text is the doc comment of `Command::WorldTokenizer`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `world-tokenizer`.
pub fn run(args: Args) -> Result<()> {
    let Args { out } = args;
    tmd_world::write_world_tokenizer(&out)?;
    println!(
        "wrote {} ({} words)",
        out.display(),
        tmd_world::world_vocabulary().len()
    );
    Ok(())
}
