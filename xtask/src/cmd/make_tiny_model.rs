//! `cargo xtask make-tiny-model`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::backend::NdArray;
use tmd_model::random::{make_random_model_dir, RandomModelSpec};

/// Arguments of `make-tiny-model` (its help text is the doc comment of `Command::MakeTinyModel`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output model directory.
    #[arg(long, default_value = "assets/tiny-random")]
    out: PathBuf,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// tokenizer.json to ship with it.
    #[arg(long, default_value = "tests/fixtures/t5/tokenizer/tokenizer.json")]
    tokenizer: PathBuf,
}

/// Runs `make-tiny-model`.
pub fn run(args: Args) -> Result<()> {
    let Args {
        out,
        seed,
        tokenizer,
    } = args;
    let spec = RandomModelSpec::tiny(seed);
    make_random_model_dir::<NdArray>(&out, &spec, &tokenizer, &Default::default())
        .with_context(|| format!("writing random model directory {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}
