//! `cargo xtask <command>`: the project's fixed pipeline, `convert-weights` -> `adapt-head` ->
//! `distill` -> `eval`, plus helpers that make test models. Only argument parsing and progress
//! display live here; the work is done by the library crates.

mod bench;
mod bench_distill;
mod eval_merge;
mod export;
mod make_random;
mod parallel;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::DType;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tmd_distill::adapt_head::{run_adapt_head, AdaptHeadRecipe};
use tmd_distill::distill::run::{run_distill, DistillRecipe};
use tmd_distill::eval::{
    evaluate_students, evaluate_teacher, judge_accuracy, load_prompts, markdown_table,
    split_prompts, spread, train_evaluator, EvalPlan, EvalReport, EvaluatorRecipe, FeatureStats,
    Judge, CHECK_SEED,
};
use tmd_distill::pretrain::teacher::{
    check_vae, export_teacher, train_teacher_dit, train_teacher_vae, TeacherRecipe, VAE_RUN,
};
use tmd_distill::teacher_data::{generate_teacher_data, TeacherDataConfig};
use tmd_distill::train::load_stage_config;
use tmd_distill::world::{ClipSpec, Split, WorldDataset};
use tmd_model::convert::{convert, recast_model_dir, ConvertEvent, ConvertOptions};
use tmd_model::random::{make_random_model_dir, RandomModelSpec};
use tmd_sampler::TeacherPipeline;

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
    /// IEEE half (half the size, 3 more mantissa bits than bf16; how the bundled model is stored).
    F16,
}

impl Dtype {
    fn burn(self) -> DType {
        match self {
            Dtype::F32 => DType::F32,
            Dtype::Bf16 => DType::BF16,
            Dtype::F16 => DType::F16,
        }
    }
}

/// Stages of `pretrain`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum PretrainStage {
    /// VAE, DiT, then export.
    All,
    /// Train the VAE only.
    Vae,
    /// Train the DiT only (needs the finished VAE).
    Dit,
    /// Export the finished teacher only.
    Export,
    /// Check the newest VAE checkpoint (finished or not) on whole held-out clips: reconstruction
    /// MSE and the evaluator's accuracy on the reconstructions (`--evaluator`); writes
    /// `<run-dir>/vae/check-step-N.json`.
    VaeCheck,
}

/// Compute backend of the training commands.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum DeviceKind {
    /// CPU (burn NdArray).
    Cpu,
    /// NVIDIA GPU (burn CUDA).
    Cuda,
    /// CPU through LibTorch (burn's `tch` backend; a build with `--features tch` linked against
    /// a PyTorch install, see the README). Training only: its native convolutions make the VAE
    /// stage several times faster than NdArray's per-tap path.
    TorchCpu,
    /// NVIDIA GPU through LibTorch (cuDNN convolutions, no kernel compilation before the first step).
    TorchCuda,
}

impl DeviceKind {
    fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
            DeviceKind::TorchCpu => "torch-cpu",
            DeviceKind::TorchCuda => "torch-cuda",
        }
    }
}

/// Evaluates `$body` with the type `$B` bound to the backend `$device` names (NdArray, CUDA or
/// LibTorch) and `$dev` to its device; on CUDA, first checks that a driver and a device are
/// there, and in builds without the backend's feature says how to rebuild.
macro_rules! on_backend {
    ($device:expr, $B:ident, $dev:ident => $body:expr) => {
        on_backend!($device, $B, ranks device_of => {
            let $dev = device_of(0);
            $body
        })
    };
    // `$dev_of(r)`: the device of data-parallel rank r (GPU r; the CPU for every rank).
    ($device:expr, $B:ident, ranks $dev_of:ident => $body:expr) => {
        match $device {
            DeviceKind::Cpu => {
                type $B = NdArray;
                let $dev_of = |_: usize| -> burn::tensor::Device<$B> { Default::default() };
                $body
            }
            DeviceKind::Cuda => {
                tmd_sampler::device::check_cuda(0)?;
                #[cfg(feature = "cuda")]
                {
                    type $B = burn::backend::Cuda;
                    let $dev_of = |r: usize| -> burn::tensor::Device<$B> {
                        burn::backend::cuda::CudaDevice::new(r)
                    };
                    $body
                }
                #[cfg(not(feature = "cuda"))]
                anyhow::bail!(
                    "this xtask was built without CUDA: rebuild with `cargo build --release -p xtask --features cuda`"
                )
            }
            DeviceKind::TorchCpu | DeviceKind::TorchCuda => {
                #[cfg(feature = "tch")]
                {
                    // LibTorch's own convolutions (oneDNN / cuDNN) beat the per-tap matmuls
                    // (measured: 0.30 against 1.44 s per VAE step on 2 CPU cores).
                    if std::env::var_os("TMD_CONV").is_none() {
                        std::env::set_var("TMD_CONV", "native");
                    }
                    type $B = burn::backend::LibTorch;
                    let cuda = $device == DeviceKind::TorchCuda;
                    let $dev_of = |r: usize| -> burn::tensor::Device<$B> {
                        if cuda {
                            burn::backend::libtorch::LibTorchDevice::Cuda(r)
                        } else {
                            burn::backend::libtorch::LibTorchDevice::Cpu
                        }
                    };
                    $body
                }
                #[cfg(not(feature = "tch"))]
                anyhow::bail!(
                    "this xtask was built without LibTorch: rebuild with `cargo build --release -p xtask --features tch` (see the README's LibTorch section)"
                )
            }
        }
    };
}

// After `on_backend!`, which it uses.
mod distill_decoder;

#[derive(Subcommand, Debug)]
enum Command {
    /// Convert official Wan2.1 weights or a diffusers folder into a model directory that every
    /// command loads (Burnpack weights, configs, tokenizer.json, manifest.json). Streams tensor by
    /// tensor: memory stays near one tensor whatever the model size.
    ConvertWeights {
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
    /// Train the bundled teacher on the synthetic world from a recipe file, in resumable stages
    /// (VAE, frozen text encoder + latent statistics, DiT), then export it as a model directory.
    /// Interrupt at any time: running the same command again resumes from the newest valid
    /// checkpoint of the unfinished stage.
    Pretrain {
        /// Recipe (TOML; keys of `TeacherRecipe`: [world], [vae], [vae_train], [text], [dit],
        /// [dit_train], [sampling]).
        #[arg(long, default_value = "configs/world-teacher.toml")]
        config: PathBuf,
        /// Override a recipe key, e.g. `--set dit_train.steps=100` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Run directory: checkpoints, loss logs, the frozen text encoder, latent statistics.
        #[arg(long, default_value = "runs/world-teacher")]
        run_dir: PathBuf,
        /// Where the finished model directory is written.
        #[arg(long, default_value = "assets/world-teacher")]
        out: PathBuf,
        /// Which stages to run (each resumes or skips what is done).
        #[arg(long, value_enum, default_value_t = PretrainStage::All)]
        stage: PretrainStage,
        /// Evaluator directory, for `--stage vae-check`.
        #[arg(long, default_value = "assets/world-evaluator")]
        evaluator: PathBuf,
        /// Split whose clips `--stage vae-check` reconstructs: held-out (generalisation to unseen
        /// attribute combinations) or train (what the VAE fits).
        #[arg(long, default_value = "held-out")]
        check_split: String,
        /// Backend: cpu (NdArray), cuda (a build with `--features cuda`), or torch-cpu /
        /// torch-cuda (LibTorch, a build with `--features tch`).
        #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
        device: DeviceKind,
        #[command(flatten)]
        parallel: parallel::ParallelArgs,
    },
    /// Stage 1 of TMD (TM-MeanFlow adaptation of the flow head): copy the teacher's model
    /// directory to --out, split its DiT into backbone and flow head, train the whole student on
    /// the clips of a latent cache, and write it into --out/student/. `generate` then samples the
    /// student by default.
    AdaptHead {
        /// Teacher model directory (converted, diffusers, or the bundled world model, whose
        /// teacher is used and whose student/ is ignored).
        #[arg(long, default_value = "assets/world")]
        teacher: PathBuf,
        /// Latent cache of training clips (`index.json` + chunks; `cargo xtask pretrain` writes
        /// one to <run-dir>/latents).
        #[arg(long, default_value = "runs/world-teacher/latents")]
        data: PathBuf,
        /// Recipe (TOML: [head], [train], [sampling]).
        #[arg(long, default_value = "configs/adapt-head.toml")]
        config: PathBuf,
        /// Override a recipe key, e.g. `--set train.steps=100` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Run directory (checkpoints, loss log).
        #[arg(long, default_value = "runs/adapt-head")]
        run_dir: PathBuf,
        /// Student directory to write (a copy of the teacher's plus student/).
        #[arg(long, default_value = "runs/student-stage1")]
        out: PathBuf,
        /// Backend.
        #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
        device: DeviceKind,
        #[command(flatten)]
        parallel: parallel::ParallelArgs,
    },
    /// Sample training pairs from a teacher (stage 2's data and the KD warm-up's noise -> data
    /// pairs): clip i is the teacher's sample for prompt i (cycled) from a noise seeded by
    /// (seed, i). Written in chunks; run again to resume.
    TeacherData {
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
    },
    /// Stage 2 of TMD (DMD2-v with flow-head rollout), or the DMD2-v baseline: train the student
    /// against the teacher with the fake score and the discriminator, on teacher data, and write
    /// it into --out/student/ (a copy of --input otherwise). TMD reads stage 1's output; the
    /// baseline reads the teacher directory (with `--set method=dmd2-v`, or
    /// configs/distill-dmd2v.toml).
    Distill {
        /// Input directory: stage 1's student directory (TMD) or the teacher's (DMD2-v).
        #[arg(long, default_value = "runs/student-stage1")]
        input: PathBuf,
        /// Teacher data (`cargo xtask teacher-data`), or any latent cache for TMD.
        #[arg(long, default_value = "runs/teacher-data")]
        data: PathBuf,
        /// Recipe (TOML: method, [train], [discriminator], [kd]).
        #[arg(long, default_value = "configs/distill.toml")]
        config: PathBuf,
        /// Override a recipe key, e.g. `--set train.steps=100` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Run directory (checkpoints and loss logs of kd/ and stage2/).
        #[arg(long, default_value = "runs/distill")]
        run_dir: PathBuf,
        /// Student directory to write.
        #[arg(long, default_value = "runs/student")]
        out: PathBuf,
        /// Backend.
        #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
        device: DeviceKind,
        #[command(flatten)]
        parallel: parallel::ParallelArgs,
    },
    /// Train the evaluator's classifier on real clips of the world and write it (with its own
    /// accuracy on real clips of both splits) to an evaluator directory.
    TrainEvaluator {
        /// Recipe (TOML; keys of `EvaluatorRecipe`).
        #[arg(long, default_value = "configs/world-evaluator.toml")]
        config: PathBuf,
        /// Override a recipe key, e.g. `--set train.steps=100` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Run directory (checkpoints, loss log).
        #[arg(long, default_value = "runs/world-evaluator")]
        run_dir: PathBuf,
        /// Evaluator directory to write.
        #[arg(long, default_value = "assets/world-evaluator")]
        out: PathBuf,
        /// Backend.
        #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
        device: DeviceKind,
    },
    /// Score a model's clips against their prompts with the evaluator (prompt accuracy, Frechet
    /// distance of classifier features, seconds per clip), one row per sampler configuration;
    /// writes a JSON report and prints a Markdown table.
    Eval {
        /// Model directory to evaluate (its teacher rows; a student directory's teacher is the
        /// one beside its student). Default: the bundled world model.
        #[arg(long, default_value = "assets/world")]
        model: PathBuf,
        /// Evaluator directory (written by `train-evaluator`).
        #[arg(long, default_value = "assets/world-evaluator")]
        evaluator: PathBuf,
        /// Prompt file, one caption per line; default: one caption per held-out combination.
        #[arg(long)]
        prompts: Option<PathBuf>,
        /// Evaluate at most this many prompts, spread over the list (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
        /// Seeds per prompt.
        #[arg(long, default_value_t = 1)]
        seeds: u64,
        /// Rows to evaluate (TOML `[[teacher]]` / `[[student]]` tables): exactly the rows it lists;
        /// default: issue 3's seven teacher rows.
        #[arg(long)]
        rows: Option<PathBuf>,
        /// Override a rows key (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// JSON report to write.
        #[arg(long, default_value = "report.json")]
        out: PathBuf,
        /// Also write the Markdown table here.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Backend.
        #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
        device: DeviceKind,
    },
    /// Merge the `eval` reports of independent training runs of the same rows (one report per
    /// run, e.g. per training seed) into one: each row's mean over the runs, its min-max range and
    /// every run's own scores (`training_runs`); a row in one report only (the teacher) is kept
    /// as it is. Writes a JSON report and prints a Markdown table (mean and min-max).
    EvalMerge {
        /// The `eval` reports, one per training run (at least two).
        #[arg(long, num_args = 2.., required = true, value_name = "REPORT")]
        runs: Vec<PathBuf>,
        /// JSON report to write.
        #[arg(long)]
        out: PathBuf,
        /// Also write the Markdown table here.
        #[arg(long)]
        markdown: Option<PathBuf>,
    },
    /// Time Wan-scale pieces (random weights) on one device and print one JSON line per item:
    /// GEMMs and attention of the 1.3B block (TFLOP/s), DiT forward at 1.3B and 14B, one TMD-N2H5
    /// student step, VAE decode, umT5 encode. `scripts/gpu/bench.sh` runs it beside the PyTorch
    /// reference on the GPU machine.
    Bench {
        /// Items, comma-separated: gemm, attention, dit-1.3b, dit-1.3b-block, dit-14b, bf16-error,
        /// tmd-step, vae-decode (bf16 where the backend has it), vae-decode-f32, vae-bf16-error,
        /// t5 (bf16 likewise), t5-f32, t5-bf16-error.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "gemm,attention,dit-1.3b,tmd-step"
        )]
        items: Vec<String>,
        /// Latent frames,height,width (480x832x81 pixels: 21,60,104).
        #[arg(long, value_delimiter = ',', default_value = "21,60,104")]
        latent: Vec<usize>,
        /// Untimed warm-up runs per item (kernel compilation and autotune happen here).
        #[arg(long, default_value_t = 2)]
        warm: usize,
        /// Timed runs per item (the median is reported).
        #[arg(long, default_value_t = 5)]
        rep: usize,
        /// Backend.
        #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
        device: DeviceKind,
    },
    /// Time stage-2 iterations (TMD: DMD2-v with flow-head rollout, H head blocks) of a
    /// Wan2.1-shaped student with random weights through the `distill` loop, on `--world N`
    /// devices at the same global batch, and print JSON lines: the run's (milliseconds per
    /// iteration, means per update kind, clips per second, the losses, equal for any N), then one
    /// per phase (`stage`, `tokens`, `checkpoint_activations`, `ms_per_iteration`, the computed
    /// memory of weights, gradients and optimizer state). `--phase stage1` times stage-1 steps
    /// instead. Writes no checkpoint; `scripts/gpu/scale.sh` and `scripts/gpu/checkpointing.sh`
    /// run it on the GPU machine with memory sampling.
    BenchDistill {
        /// Wan2.1 shape: 1.3b or 14b.
        #[arg(long, default_value = "1.3b")]
        model: String,
        /// DiT blocks (default: the shape's own, 30 or 40); fewer for a reduced-depth memory probe.
        #[arg(long)]
        blocks: Option<usize>,
        /// Flow-head blocks H.
        #[arg(long, default_value_t = 5)]
        head_blocks: usize,
        /// Latent frames,height,width per clip (default: one 480x832 latent frame, 1,560 tokens).
        #[arg(long, value_delimiter = ',', default_value = "1,60,104")]
        latent: Vec<usize>,
        /// Text tokens per context (Wan pads prompts to 512).
        #[arg(long, default_value_t = 512)]
        text_len: usize,
        /// Global batch, split over the ranks.
        #[arg(long, default_value_t = 2)]
        batch: usize,
        /// Iterations (the first is warm-up, left out of the means).
        #[arg(long, default_value_t = 11)]
        steps: u64,
        /// Run directory (loss log only; emptied first).
        #[arg(long, default_value = "runs/bench-distill")]
        run_dir: PathBuf,
        /// Which iterations: stage-1 steps, the stage-2 cycle (4 critic + 1 student), or one
        /// stage-2 update kind alone (its process peak is that phase's).
        #[arg(long, value_enum, default_value_t = bench_distill::Phase::Stage2)]
        phase: bench_distill::Phase,
        /// Activation checkpointing (`train.checkpoint_activations`): recompute each block's
        /// forward in the backward.
        #[arg(long)]
        checkpoint_activations: bool,
        /// Precision policy of the DiT passes (`train.precision`): f32, or bf16 matrix products
        /// and attention with f32 weights and optimizer state (mixed precision).
        #[arg(long, value_enum, default_value_t = bench_distill::TrainPrecision::F32)]
        precision: bench_distill::TrainPrecision,
        /// Phase stage2: the student updates on every this-many-th iteration (the paper's 5; 2
        /// runs one critic and one student iteration in `--steps 2`).
        #[arg(long, default_value_t = 5)]
        student_every: u64,
        /// Backend.
        #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
        device: DeviceKind,
        #[command(flatten)]
        parallel: parallel::ParallelArgs,
    },
    /// Write a model directory with random weights at a preset's shapes (default: Wan2.1 T2V
    /// 1.3B, stored as bf16) and, by default, a random TMD student (H = 5): what
    /// `scripts/gpu/clip_bench.sh` times `tmd-cli generate` on.
    MakeRandomModel {
        #[command(flatten)]
        args: make_random::MakeRandomArgs,
        /// Backend that initialises the weights (a GPU makes a Wan-sized model in seconds).
        #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
        device: DeviceKind,
    },
    /// Write a model for other tools (docs/export.md): the teacher or a DMD2-v student as a
    /// diffusers `WanTransformer3DModel` folder; a student (TMD with its flow head, or DMD2-v) as
    /// safetensors + config.json; or a student's DiT as a LoRA against its teacher (SVD of the
    /// weight deltas, diffusers key names) with the reconstruction error per module in
    /// `<out>.report.json`.
    Export {
        /// Model directory (converted or diffusers layout; with `student/` for a student).
        #[arg(long)]
        model: PathBuf,
        /// What to write.
        #[arg(long, value_enum)]
        format: export::ExportFormat,
        /// Output: a folder (diffusers, safetensors) or a `.safetensors` file (lora).
        #[arg(long)]
        out: PathBuf,
        /// Export the teacher of a directory that also holds a student (diffusers only).
        #[arg(long)]
        teacher: bool,
        /// LoRA: the model directory whose DiT the LoRA is taken against (default: --model's own
        /// teacher).
        #[arg(long)]
        base: Option<PathBuf>,
        /// LoRA rank.
        #[arg(long, default_value_t = 32)]
        rank: usize,
        /// LoRA: kept modules, comma-separated: groups attn, self-attn, cross-attn, ffn, embed,
        /// proj_out, all; or trailing name parts (to_q, attn2.to_k, ffn.net.2, blocks.3.attn1.to_out.0).
        #[arg(long, value_delimiter = ',', default_value = "attn,ffn")]
        modules: Vec<String>,
        /// Storage dtype of the written weights.
        #[arg(long, value_enum, default_value_t = Dtype::F32)]
        dtype: Dtype,
        /// Diffusers: also write one forward pass (inputs and output) of the DiT to this
        /// safetensors file, for `scripts/reference/check_export.py`.
        #[arg(long)]
        io: Option<PathBuf>,
    },
    /// Train a light decoder (`decoder-light/`) to reproduce a model directory's full VAE
    /// decoder from the latents of a cache, resumable; write it into --out and, given
    /// --eval-data, report its PSNR and SSIM against the full decoder on held-out latents.
    DistillDecoder(distill_decoder::DistillDecoderArgs),
    /// Encode clips of the synthetic world with a model directory's VAE into a latent cache
    /// (training or held-out data of `distill-decoder`).
    EncodeWorld(distill_decoder::EncodeWorldArgs),
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

/// Runs the stages of the teacher recipe on backend `B`, printing what each did.
fn pretrain<B: AutodiffBackend>(
    recipe: &TeacherRecipe,
    run_dir: &Path,
    out: &Path,
    stage: PretrainStage,
    source: &str,
    device: &B::Device,
) -> Result<()> {
    // In a data-parallel run, rank 0 writes the run's files and reports; every rank trains.
    let writer = tmd_distill::train::data_parallel::is_writer();
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    if writer {
        std::fs::write(
            run_dir.join("recipe.json"),
            serde_json::to_string_pretty(recipe).context("serialising the recipe")?,
        )
        .with_context(|| format!("writing {}/recipe.json", run_dir.display()))?;
    }
    let report = |what: &str, r: &tmd_distill::train::run::PretrainReport, secs: f64| {
        if !writer {
            return;
        }
        let tail = &r.losses[r.losses.len().saturating_sub(50)..];
        let mean = tail.iter().map(|(_, l)| l).sum::<f64>() / tail.len().max(1) as f64;
        println!(
            "{what}: steps {}..{} in {secs:.1} s ({:.3} s/step), mean loss of the last {} steps {mean:.5}",
            r.start_step,
            r.end_step,
            secs / (r.end_step - r.start_step).max(1) as f64,
            tail.len()
        );
    };
    if matches!(stage, PretrainStage::All | PretrainStage::Vae) {
        let t = Instant::now();
        let (_, r) = train_teacher_vae::<B>(recipe, run_dir, device).context("VAE stage")?;
        report("vae", &r, t.elapsed().as_secs_f64());
    }
    if matches!(stage, PretrainStage::All | PretrainStage::Dit) {
        let t = Instant::now();
        let (_, r) = train_teacher_dit::<B>(recipe, run_dir, device).context("DiT stage")?;
        report("dit", &r, t.elapsed().as_secs_f64());
    }
    if !writer {
        return Ok(());
    }
    if matches!(stage, PretrainStage::All | PretrainStage::Export) {
        let manifest = export_teacher::<B::InnerBackend>(recipe, run_dir, out, source, device)
            .with_context(|| format!("exporting the teacher to {}", out.display()))?;
        println!(
            "wrote {} (DiT {} params, VAE {} params, text encoder {} params)",
            out.display(),
            manifest.transformer.params,
            manifest.vae.params,
            manifest.text_encoder.params
        );
    }
    Ok(())
}

/// `pretrain --stage vae-check`: the newest VAE checkpoint on 128 whole clips of `split`.
fn vae_check<B: burn::prelude::Backend>(
    recipe: &TeacherRecipe,
    run_dir: &Path,
    evaluator: &Path,
    split: Split,
    device: &B::Device,
) -> Result<()> {
    let judge = Judge::<B>::load(evaluator, device)
        .with_context(|| format!("loading the evaluator {}", evaluator.display()))?;
    let check = check_vae(recipe, run_dir, &judge, split, 128, CHECK_SEED, device)
        .context("checking the VAE")?;
    let json = serde_json::to_string_pretty(&check).context("serialising the check")?;
    let path = run_dir.join(VAE_RUN).join(match split {
        Split::HeldOut => format!("check-step-{:06}.json", check.step),
        _ => format!("check-{}-step-{:06}.json", split.name(), check.step),
    });
    std::fs::write(&path, &json).with_context(|| format!("writing {}", path.display()))?;
    let sheet = path.with_extension("png");
    let last = recipe.world.frames - 1;
    tmd_distill::world::save_contact_sheet(&check.samples, &[0, last / 2, last], 2, &sheet)
        .with_context(|| format!("writing {}", sheet.display()))?;
    println!(
        "{json}\nreal and reconstructed clips (rows alternate): {}",
        sheet.display()
    );
    Ok(())
}

/// What `eval` evaluates.
struct EvalArgs<'a> {
    model: &'a Path,
    evaluator: &'a Path,
    prompts: Option<&'a Path>,
    limit: usize,
    seeds: u64,
    plan: &'a EvalPlan,
}

/// Loads the model and the judge on `B` and evaluates every row.
fn run_eval<B: burn::prelude::Backend>(
    args: &EvalArgs,
    device: &B::Device,
    device_name: &str,
) -> Result<EvalReport> {
    let pipeline = TeacherPipeline::<B>::load(args.model, device)
        .with_context(|| format!("loading model {}", args.model.display()))?;
    let judge = Judge::<B>::load(args.evaluator, device)
        .with_context(|| format!("loading evaluator {}", args.evaluator.display()))?;
    let (cases, unexpressible, source) = match args.prompts {
        Some(path) => {
            let (cases, bad) = load_prompts(path)?;
            (cases, bad, path.display().to_string())
        }
        None => (
            split_prompts(Split::HeldOut, 0),
            Vec::new(),
            "held-out split (one caption per combination)".to_string(),
        ),
    };
    for u in &unexpressible {
        eprintln!(
            "line {}: the world cannot express '{}': {}",
            u.line, u.caption, u.reason
        );
    }
    let cases = spread(cases, args.limit);
    anyhow::ensure!(!cases.is_empty(), "no prompts to evaluate");
    let defaults = pipeline.options("");
    let spec = ClipSpec::new(defaults.frames, defaults.height, defaults.width)?;
    let judge_accuracy = [Split::Train, Split::HeldOut]
        .into_iter()
        .map(|s| judge_accuracy(&judge, s, 128, CHECK_SEED, spec))
        .collect::<Result<Vec<_>, _>>()?;
    let attributes: Vec<_> = cases.iter().map(|c| c.attributes).collect();
    let real = FeatureStats::from_rows(
        &judge.real_features(&attributes, 0x7ea1, spec)?,
        judge.config.feature_dim(),
    );
    let seeds: Vec<u64> = (0..args.seeds).collect();
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} clips [{elapsed}<{eta}]")
            .expect("valid template"),
    );
    let rows = evaluate_teacher(
        &pipeline,
        &judge,
        &cases,
        &seeds,
        args.plan,
        &real,
        &mut |row| {
            bar.reset();
            bar.set_message(format!(
                "{} M={} CFG={}",
                row.method, row.outer_steps, row.guidance
            ));
        },
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    let student_rows = evaluate_students(
        &judge,
        &cases,
        &seeds,
        args.plan,
        &real,
        device,
        &mut |row| {
            bar.reset();
            bar.set_message(format!(
                "{} M={} N={} H={}",
                row.method, row.outer_steps, row.inner_steps, row.head_blocks
            ));
        },
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    let rows = rows.into_iter().chain(student_rows).collect();
    bar.finish_and_clear();
    Ok(EvalReport {
        model: args.model.display().to_string(),
        prompts_source: source,
        unexpressible,
        judge_accuracy,
        device: device_name.to_string(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        rows,
    })
}

/// The command line as run (`cargo xtask <args>`), stored as the provenance of what it writes.
fn invocation() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("`cargo xtask {}`", args.join(" "))
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::ConvertWeights { src, out, dtype } => {
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
        Command::Pretrain {
            config,
            overrides,
            run_dir,
            out,
            stage,
            evaluator,
            check_split,
            device,
            parallel,
        } => {
            let recipe: TeacherRecipe = load_stage_config(Some(&config), &overrides)?;
            if stage == PretrainStage::VaeCheck {
                let split: Split = check_split.parse().context("--check-split")?;
                return on_backend!(device, B, dev => vae_check::<B>(&recipe, &run_dir, &evaluator, split, &dev));
            }
            let source = format!(
                "bundled world teacher, `cargo xtask pretrain --config {}{}`",
                config.display(),
                overrides
                    .iter()
                    .map(|o| format!(" --set {o}"))
                    .collect::<String>()
            );
            on_backend!(device, B, ranks device_of => parallel.run::<B, _>(device_of, |dev| {
                pretrain::<Autodiff<B>>(&recipe, &run_dir, &out, stage, &source, dev)
            }))?;
        }
        Command::AdaptHead {
            teacher,
            data,
            config,
            overrides,
            run_dir,
            out,
            device,
            parallel,
        } => {
            let recipe: AdaptHeadRecipe = load_stage_config(Some(&config), &overrides)?;
            let source = invocation();
            let t0 = Instant::now();
            let report = on_backend!(device, B, ranks device_of => parallel.run::<B, _>(device_of, |dev| {
                run_adapt_head::<Autodiff<B>>(&recipe, &teacher, &data, &run_dir, &out, &source, dev)
                    .map(|(_, report)| report)
                    .context("stage 1 (adapt-head)")
            }))?;
            eprintln!(
                "adapt-head: steps {}..{} in {:.1} s; student written to {} (generate --model {})",
                report.start_step,
                report.end_step,
                t0.elapsed().as_secs_f64(),
                out.display(),
                out.display()
            );
        }
        Command::Bench {
            items,
            latent,
            warm,
            rep,
            device,
        } => {
            let [f, h, w] = latent[..] else {
                bail!("--latent takes frames,height,width (e.g. 21,60,104), got {latent:?}");
            };
            let args = bench::BenchArgs {
                latent: [f, h, w],
                warm,
                rep,
            };
            for item in &items {
                let t0 = Instant::now();
                let record = on_backend!(device, B, dev => bench::run_item::<B>(item, &args, &dev))
                    .with_context(|| format!("bench item {item}"))?;
                let mut record = record;
                record["device"] = serde_json::json!(device.name());
                record["wall_s"] = serde_json::json!(t0.elapsed().as_secs_f64());
                println!("{record}");
            }
        }
        Command::BenchDistill {
            model,
            blocks,
            head_blocks,
            latent,
            text_len,
            batch,
            steps,
            run_dir,
            phase,
            checkpoint_activations,
            precision,
            student_every,
            device,
            parallel,
        } => {
            let [f, h, w] = latent[..] else {
                bail!("--latent takes frames,height,width (e.g. 1,60,104), got {latent:?}");
            };
            // Never empties a directory it did not make: an existing --run-dir must be empty.
            if std::fs::read_dir(&run_dir).is_ok_and(|mut d| d.next().is_some()) {
                bail!(
                    "--run-dir {} is not empty; bench-distill needs a new or empty directory \
                     (it starts every run from scratch)",
                    run_dir.display()
                );
            }
            let args = bench_distill::DistillBenchArgs {
                phase,
                checkpoint_activations,
                precision: precision.into(),
                student_every,
                model,
                blocks,
                head_blocks,
                latent: [f, h, w],
                text_len,
                batch,
                steps,
                run_dir,
            };
            let t0 = Instant::now();
            let records =
                on_backend!(device, B, ranks device_of => parallel.run::<B, _>(device_of, |dev| {
                    bench_distill::run::<Autodiff<B>>(&args, dev)
                }))
                .context("bench-distill")?;
            // The run's record, then one per phase (JSON lines).
            for mut record in records {
                record["device"] = serde_json::json!(device.name());
                record["wall_s"] = serde_json::json!(t0.elapsed().as_secs_f64());
                println!("{record}");
            }
        }
        Command::TeacherData {
            teacher,
            prompts,
            world_seed,
            config,
            overrides,
            out,
            device,
        } => {
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
                    let data =
                        WorldDataset::new(Some(Split::Train), world_seed, ClipSpec::default());
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
        }
        Command::Distill {
            input,
            data,
            config,
            overrides,
            run_dir,
            out,
            device,
            parallel,
        } => {
            let recipe: DistillRecipe = load_stage_config(Some(&config), &overrides)?;
            let source = invocation();
            let t0 = Instant::now();
            let report = on_backend!(device, B, ranks device_of => parallel.run::<B, _>(device_of, |dev| {
                run_distill::<Autodiff<B>>(&recipe, &input, &data, &run_dir, &out, &source, dev)
                    .map(|(_, report)| report)
                    .context("stage 2 (distill)")
            }))?;
            if let Some(kd) = &report.kd {
                eprintln!("KD warm-up: steps {}..{}", kd.start_step, kd.end_step);
            }
            eprintln!(
                "distill ({:?}): steps {}..{} in {:.1} s; student written to {} (generate --model {})",
                recipe.method,
                report.stage2.start_step,
                report.stage2.end_step,
                t0.elapsed().as_secs_f64(),
                out.display(),
                out.display()
            );
        }
        Command::TrainEvaluator {
            config,
            overrides,
            run_dir,
            out,
            device,
        } => {
            let recipe: EvaluatorRecipe = load_stage_config(Some(&config), &overrides)?;
            let accuracy = on_backend!(device, B, dev => train_evaluator::<Autodiff<B>>(
                &recipe,
                &run_dir,
                &out,
                &dev,
            ))
            .context("training the evaluator")?;
            for a in &accuracy {
                println!(
                    "real {} clips ({}): mean attribute accuracy {:.2}%, all five right {:.2}%, {:?}",
                    a.split, a.clips, 100.0 * a.mean, 100.0 * a.all_correct, a.per_attribute
                );
            }
            println!("wrote {}", out.display());
        }
        Command::Eval {
            model,
            evaluator,
            prompts,
            limit,
            seeds,
            rows,
            overrides,
            out,
            markdown,
            device,
        } => {
            let plan = EvalPlan::load(rows.as_deref(), &overrides)?;
            let args = EvalArgs {
                model: &model,
                evaluator: &evaluator,
                prompts: prompts.as_deref(),
                limit,
                seeds,
                plan: &plan,
            };
            let report = on_backend!(device, B, dev => run_eval::<B>(&args, &dev, device.name()))?;
            let json = serde_json::to_string_pretty(&report).context("serialising the report")?;
            std::fs::write(&out, json).with_context(|| format!("writing {}", out.display()))?;
            let table = markdown_table(&report);
            if let Some(md) = markdown {
                std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
            }
            print!("{table}");
            println!("wrote {}", out.display());
        }
        Command::EvalMerge {
            runs,
            out,
            markdown,
        } => {
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let table = eval_merge::run(&runs, &out, markdown.as_deref(), &command)?;
            print!("{table}");
            println!("wrote {}", out.display());
        }
        Command::MakeRandomModel { args, device } => {
            on_backend!(device, B, dev => make_random::run::<B>(&args, &dev))?;
        }
        Command::Export {
            model,
            format,
            out,
            teacher,
            base,
            rank,
            modules,
            dtype,
            io,
        } => export::run(&export::ExportArgs {
            model: &model,
            format,
            out: &out,
            teacher,
            base: base.as_deref(),
            rank,
            modules: &modules,
            dtype: dtype.burn(),
            io: io.as_deref(),
        })?,
        Command::DistillDecoder(args) => distill_decoder::distill_decoder(args)?,
        Command::EncodeWorld(args) => distill_decoder::encode_world(args)?,
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
