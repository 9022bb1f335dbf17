//! `cargo xtask convert-weights`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use tmd_model::convert::{convert, recast_model_dir, ConvertEvent, ConvertOptions};

use crate::common::Dtype;

/// Arguments of `convert-weights` (its help text is the doc comment of `Command::ConvertWeights`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Source folder: the official Wan2.1 release (diffusion_pytorch_model*.safetensors,
    /// config.json, Wan2.1_VAE.pth, models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/) or a
    /// diffusers folder (transformer/, vae/, text_encoder/, tokenizer/). A model directory this
    /// program wrote (manifest.json; a distilled student/ included) is re-stored as `--dtype`.
    #[arg(long)]
    src: PathBuf,
    /// Output model directory (created; an existing conversion there is replaced).
    #[arg(long)]
    out: PathBuf,
    /// Storage dtype of the written weights.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    dtype: Dtype,
}

/// Runs `convert-weights`.
pub fn run(args: Args) -> Result<()> {
    let Args { src, out, dtype } = args;
    if src.join("manifest.json").is_file() {
        let manifest = recast_model_dir(&src, &out, dtype.burn()).with_context(|| {
            format!(
                "re-storing {} as {dtype:?} into {}",
                src.display(),
                out.display()
            )
        })?;
        println!(
            "wrote {} ({}, from {})",
            out.display(),
            manifest.dtype,
            src.display()
        );
        return Ok(());
    }
    let opts = ConvertOptions {
        dtype: dtype.burn(),
        ..Default::default()
    };
    let bar = ProgressBar::new(3);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} converting [{bar:20}] {pos}/{len} components  {elapsed_precise}  {msg}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar.set_message("transformer");
    let manifest = convert(&src, &out, &opts, &mut |ev| {
        let ConvertEvent::Done(name, tensors, params) = ev;
        bar.inc(1);
        bar.println(format!("  {name}: {tensors} tensors, {params} parameters"));
        bar.set_message(match name {
            "transformer" => "vae",
            "vae" => "text_encoder",
            _ => "",
        });
    })
    .with_context(|| format!("converting {} into {}", src.display(), out.display()))?;
    bar.finish_and_clear();
    println!("wrote {} ({})", out.display(), manifest.source);
    Ok(())
}
