//! `cargo xtask <command>`: the project's fixed pipeline, `convert-weights` -> `adapt-head` ->
//! `distill` -> `eval`, plus helpers that make test models. This file only parses the command
//! line and dispatches: each command's arguments and run live in `cmd/<command>.rs`, what several
//! share (backend and dtype flags, [`on_backend!`]) in `common.rs`, the data-parallel launcher in
//! `parallel.rs`; the work is done by the library crates.

#[macro_use]
mod common;
mod cmd;
mod parallel;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "xtask", about = "Pipeline commands of the tmd workspace.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The commands; each one's arguments and work live in `cmd/<command>.rs`.
#[derive(Subcommand, Debug)]
enum Command {
    /// Convert official Wan2.1 weights or a diffusers folder into a model directory that every
    /// command loads (Burnpack weights, configs, tokenizer.json, manifest.json). Streams tensor by
    /// tensor: memory stays near one tensor whatever the model size.
    ConvertWeights(cmd::convert_weights::Args),
    /// Write example clips of the synthetic world (GIFs and a contact sheet of frames 0, 8, 16) with
    /// their captions, for looking at the data.
    WorldPreview(cmd::world_preview::Args),
    /// Write the world's word-level tokenizer.json (every word its captions use).
    WorldTokenizer(cmd::world_tokenizer::Args),
    /// Train the bundled teacher on the synthetic world from a recipe file, in resumable stages
    /// (VAE, frozen text encoder + latent statistics, DiT), then export it as a model directory.
    /// Interrupt at any time: running the same command again resumes from the newest valid
    /// checkpoint of the unfinished stage.
    Pretrain(cmd::pretrain::Args),
    /// Stage 1 of TMD (TM-MeanFlow adaptation of the flow head): copy the teacher's model
    /// directory to --out, split its DiT into backbone and flow head, train the whole student on
    /// the clips of a latent cache, and write it into --out/student/. `generate` then samples the
    /// student by default.
    AdaptHead(cmd::adapt_head::Args),
    /// Sample training pairs from a teacher (stage 2's data and the KD warm-up's noise -> data
    /// pairs): clip i is the teacher's sample for prompt i (cycled) from a noise seeded by
    /// (seed, i). Written in chunks; run again to resume.
    TeacherData(cmd::teacher_data::Args),
    /// Stage 2 of TMD (DMD2-v with flow-head rollout), or the DMD2-v baseline: train the student
    /// against the teacher with the fake score and the discriminator, on teacher data, and write
    /// it into --out/student/ (a copy of --input otherwise). TMD reads stage 1's output; the
    /// baseline reads the teacher directory (with `--set method=dmd2-v`, or
    /// configs/distill-dmd2v.toml).
    Distill(cmd::distill::Args),
    /// Train the evaluator's classifier on real clips of the world and write it (with its own
    /// accuracy on real clips of both splits) to an evaluator directory.
    TrainEvaluator(cmd::train_evaluator::Args),
    /// Score a model's clips against their prompts with the evaluator (prompt accuracy, Frechet
    /// distance of classifier features, seconds per clip), one row per sampler configuration;
    /// writes a JSON report and prints a Markdown table.
    Eval(cmd::eval::Args),
    /// Merge the `eval` reports of independent training runs of the same rows (one report per
    /// run, e.g. per training seed) into one: each row's mean over the runs, its min-max range and
    /// every run's own scores (`training_runs`); a row in one report only (the teacher) is kept
    /// as it is. Writes a JSON report and prints a Markdown table (mean and min-max).
    EvalMerge(cmd::eval_merge::Args),
    /// Time Wan-scale pieces (random weights) on one device and print one JSON line per item:
    /// GEMMs and attention of the 1.3B block (TFLOP/s), DiT forward at 1.3B and 14B, one TMD-N2H5
    /// student step, VAE decode, umT5 encode. `scripts/gpu/bench.sh` runs it beside the PyTorch
    /// reference on the GPU machine.
    Bench(cmd::bench::Args),
    /// Time stage-2 iterations (TMD: DMD2-v with flow-head rollout, H head blocks) of a
    /// Wan2.1-shaped student with random weights through the `distill` loop, on `--world N`
    /// devices at the same global batch, and print JSON lines: the run's (milliseconds per
    /// iteration, means per update kind, clips per second, the losses, equal for any N), then one
    /// per phase (`stage`, `tokens`, `checkpoint_activations`, `ms_per_iteration`, the computed
    /// memory of weights, gradients and optimizer state). `--phase stage1` times stage-1 steps
    /// instead. Writes no checkpoint; `scripts/gpu/scale.sh` and `scripts/gpu/checkpointing.sh`
    /// run it on the GPU machine with memory sampling.
    BenchDistill(cmd::bench_distill::Args),
    /// Write a model directory with random weights at a preset's shapes (default: Wan2.1 T2V
    /// 1.3B, stored as bf16) and, by default, a random TMD student (H = 5): what
    /// `scripts/gpu/clip_bench.sh` times `tmd-cli generate` on.
    MakeRandomModel(cmd::make_random_model::Args),
    /// Write a model for other tools (docs/export.md): the teacher or a DMD2-v student as a
    /// diffusers `WanTransformer3DModel` folder; a student (TMD with its flow head, or DMD2-v) as
    /// safetensors + config.json; or a student's DiT as a LoRA against its teacher (SVD of the
    /// weight deltas, diffusers key names) with the reconstruction error per module in
    /// `<out>.report.json`.
    Export(cmd::export::Args),
    /// Train a light decoder (`decoder-light/`) to reproduce a model directory's full VAE
    /// decoder from the latents of a cache, resumable; write it into --out and, given
    /// --eval-data, report its PSNR and SSIM against the full decoder on held-out latents.
    DistillDecoder(cmd::distill_decoder::Args),
    /// Encode clips of the synthetic world with a model directory's VAE into a latent cache
    /// (training or held-out data of `distill-decoder`).
    EncodeWorld(cmd::encode_world::Args),
    /// Write a model directory with random weights at tiny sizes (for tests and the README's first
    /// command until a trained model is bundled).
    MakeTinyModel(cmd::make_tiny_model::Args),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::ConvertWeights(args) => cmd::convert_weights::run(args),
        Command::WorldPreview(args) => cmd::world_preview::run(args),
        Command::WorldTokenizer(args) => cmd::world_tokenizer::run(args),
        Command::Pretrain(args) => cmd::pretrain::run(args),
        Command::AdaptHead(args) => cmd::adapt_head::run(args),
        Command::TeacherData(args) => cmd::teacher_data::run(args),
        Command::Distill(args) => cmd::distill::run(args),
        Command::TrainEvaluator(args) => cmd::train_evaluator::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::EvalMerge(args) => cmd::eval_merge::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::BenchDistill(args) => cmd::bench_distill::run(args),
        Command::MakeRandomModel(args) => cmd::make_random_model::run(args),
        Command::Export(args) => cmd::export::run(args),
        Command::DistillDecoder(args) => cmd::distill_decoder::run(args),
        Command::EncodeWorld(args) => cmd::encode_world::run(args),
        Command::MakeTinyModel(args) => cmd::make_tiny_model::run(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    #[test]
    fn every_command_parses_and_keeps_its_help_text() {
        let cli = super::Cli::command();
        cli.clone().debug_assert();
        let about = |name: &str| {
            cli.find_subcommand(name)
                .unwrap_or_else(|| panic!("no command {name}"))
                .get_about()
                .map(|a| a.to_string())
                .unwrap_or_default()
        };
        // The help of a command is its `Command` variant's doc comment, not its `Args` struct's.
        assert!(
            about("pretrain").starts_with("Train the bundled teacher"),
            "{}",
            about("pretrain")
        );
        assert!(about("encode-world").starts_with("Encode clips of the synthetic world"));
        assert!(about("make-random-model").starts_with("Write a model directory with random"));
        assert_eq!(cli.get_subcommands().count(), 17);
        // A flag of a command's own file still reaches it.
        super::Cli::try_parse_from(["xtask", "adapt-head", "--set", "train.optimizer.lr=1e-4"])
            .expect("adapt-head --set");
    }
}
