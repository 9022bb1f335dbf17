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
    /// Write example clips of the synthetic world (GIFs and a contact sheet of frames 0, 8, 16) with
    /// their captions, for looking at the data.
    WorldPreview {
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
    },
    /// Write the world's word-level tokenizer.json (every word its captions use).
    WorldTokenizer {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
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
        }
        Command::WorldPreview {
            out,
            split,
            count,
            seed,
        } => {
            use tmd_distill::world::{
                save_contact_sheet, save_gif_scaled, ClipSpec, Split, WorldDataset,
            };
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
        }
        Command::WorldTokenizer { out } => {
            tmd_distill::world::write_world_tokenizer(&out)?;
            println!(
                "wrote {} ({} words)",
                out.display(),
                tmd_distill::world::world_vocabulary().len()
            );
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
