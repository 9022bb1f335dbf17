//! `cargo xtask <command>`: the project's fixed pipeline, `convert-weights` -> `adapt-head` ->
//! `distill` -> `eval`, plus helpers that make test models. Only argument parsing and progress
//! display live here; the work is done by the library crates.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::backend::NdArray;
use burn::tensor::DType;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tmd_model::convert::{convert, ConvertEvent, ConvertOptions};
use tmd_model::random::{make_random_model_dir, RandomModelSpec};

#[derive(Parser, Debug)]
#[command(name = "xtask", about = "Pipeline commands of the tmd workspace.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Storage dtype of converted weights.
#[derive(ValueEnum, Clone, Copy, Debug)]
enum Dtype {
    /// 32-bit float (exact copy of an f32 checkpoint).
    F32,
    /// bfloat16 (half the size; what the GPU runs in).
    Bf16,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Convert official Wan2.1 weights or a diffusers folder into a model directory that every
    /// command loads (Burnpack weights, configs, tokenizer.json, manifest.json). Streams tensor by
    /// tensor: memory stays near one tensor whatever the model size.
    ConvertWeights {
        /// Source folder: the official Wan2.1 release (diffusion_pytorch_model*.safetensors,
        /// config.json, Wan2.1_VAE.pth, models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/) or a
        /// diffusers folder (transformer/, vae/, text_encoder/, tokenizer/).
        #[arg(long)]
        src: PathBuf,
        /// Output model directory (created; an existing conversion there is replaced).
        #[arg(long)]
        out: PathBuf,
        /// Storage dtype of the written weights.
        #[arg(long, value_enum, default_value_t = Dtype::F32)]
        dtype: Dtype,
    },
    /// Write a model directory with random weights at tiny sizes (for tests and the README's first
    /// command until a trained model is bundled).
    MakeTinyModel {
        /// Output model directory.
        #[arg(long, default_value = "assets/tiny-random")]
        out: PathBuf,
        /// Seed of the random weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// tokenizer.json to ship with it.
        #[arg(long, default_value = "tests/fixtures/t5/tokenizer/tokenizer.json")]
        tokenizer: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::ConvertWeights { src, out, dtype } => {
            let opts = ConvertOptions {
                dtype: match dtype {
                    Dtype::F32 => DType::F32,
                    Dtype::Bf16 => DType::BF16,
                },
                ..Default::default()
            };
            let bar = ProgressBar::new(3);
            bar.set_style(
                ProgressStyle::with_template("{spinner} converting [{bar:20}] {pos}/{len} components  {elapsed_precise}  {msg}")
                    .expect("valid template"),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar.set_message("transformer");
            let manifest = convert(&src, &out, &opts, &mut |ev| {
                if let ConvertEvent::Done(name, tensors, params) = ev {
                    bar.inc(1);
                    bar.println(format!("  {name}: {tensors} tensors, {params} parameters"));
                    bar.set_message(match name {
                        "transformer" => "vae",
                        "vae" => "text_encoder",
                        _ => "",
                    });
                }
            })
            .with_context(|| format!("converting {} into {}", src.display(), out.display()))?;
            bar.finish_and_clear();
            println!("wrote {} ({})", out.display(), manifest.source);
        }
        Command::MakeTinyModel {
            out,
            seed,
            tokenizer,
        } => {
            let spec = RandomModelSpec::tiny(seed);
            make_random_model_dir::<NdArray>(&out, &spec, &tokenizer, &Default::default())
                .with_context(|| format!("writing random model directory {}", out.display()))?;
            println!("wrote {}", out.display());
        }
    }
    Ok(())
}
