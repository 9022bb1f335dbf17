//! `tmd-cli`: generate video clips from text with a Wan2.1-architecture model.
//!
//! ```text
//! cargo run --release -p tmd-cli -- generate --prompt "a red ball moves left" --out clip.gif
//! ```
//!
//! This binary parses arguments, resolves configuration (model defaults < `--config` file < flags),
//! picks a backend and shows progress; every algorithm lives in the library crates.

mod checks;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use tmd_sampler::pipeline::{
    DecoderKind, Solver, StudentOptions, StudentPipeline, TeacherOptions, TeacherPipeline, Timings,
};
use tmd_sampler::{Sampler, Video};

/// The model directory used when `--model` is not given: the small world model bundled in
/// `assets/world` (a TMD student with its teacher; see the README's "bundled world").
const BUNDLED_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/world");

#[derive(Parser, Debug)]
#[command(name = "tmd-cli", version, about = "Text-to-video with Wan2.1-architecture models in Rust (Burn).", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate one clip from a prompt and write it as .gif, .mp4 or a folder of PNG frames.
    Generate(GenerateArgs),
}

/// Compute device.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Device {
    /// CPU (burn NdArray backend).
    Cpu,
    /// NVIDIA GPU (burn CUDA backend; needs a build with `--features cuda`).
    Cuda,
    /// CPU through LibTorch (burn's `tch` backend; needs a build with `--features tch`, linked
    /// against PyTorch as the README's LibTorch section describes).
    TorchCpu,
    /// NVIDIA GPU through LibTorch: PyTorch's fused attention and cuBLAS, the fast path on GPUs
    /// (README, "GPU speed against PyTorch"; needs a build with `--features tch`).
    TorchCuda,
}

/// Precision policy.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum PrecisionArg {
    /// bf16 on GPUs (`cuda`, `torch-cuda`), f32 on CPUs.
    Auto,
    /// f32 everywhere.
    F32,
    /// As the reference runs on GPUs: DiT with bf16 matrix products and an f32 stream (autocast),
    /// VAE and umT5 in bf16 where the backend has it.
    Bf16,
}

#[derive(Args, Debug)]
struct GenerateArgs {
    /// Model directory: converted (`cargo xtask convert-weights`) or diffusers format.
    /// Defaults to $TMD_MODEL, else the bundled model in assets/.
    #[arg(long, env = "TMD_MODEL")]
    model: Option<PathBuf>,
    /// What the clip should show.
    #[arg(long)]
    prompt: String,
    /// Negative prompt for classifier-free guidance (default: the model's, Wan2.1's for official weights).
    #[arg(long)]
    negative_prompt: Option<String>,
    /// Sampling steps (default: the model's, 50 for Wan2.1).
    #[arg(long)]
    steps: Option<usize>,
    /// Classifier-free guidance scale; 1 disables CFG (default: the model's, 5 for Wan2.1).
    #[arg(long)]
    guidance: Option<f64>,
    /// Timestep shift of the flow-matching schedule (default: the model's, 5 for Wan2.1).
    #[arg(long)]
    shift: Option<f64>,
    /// Number of frames, 4k+1 for Wan's VAE (default: the model's, 81 for Wan2.1).
    #[arg(long)]
    frames: Option<usize>,
    /// Height in pixels, a multiple of 16 for Wan2.1 (default: the model's, 480).
    #[arg(long)]
    height: Option<usize>,
    /// Width in pixels, a multiple of 16 for Wan2.1 (default: the model's, 832).
    #[arg(long)]
    width: Option<usize>,
    /// Noise seed: the same seed, prompt and settings give the same clip.
    #[arg(long)]
    seed: Option<u64>,
    /// ODE solver of the teacher.
    #[arg(long, value_parser = ["unipc", "euler"])]
    solver: Option<String>,
    /// Sample with the teacher even though the model directory holds a distilled student.
    #[arg(long)]
    teacher: bool,
    /// Student only: M, the outer (transition) steps (default: the student's).
    #[arg(long)]
    outer_steps: Option<usize>,
    /// Student only: N, the flow-head steps inside each outer step (default: the student's).
    #[arg(long)]
    inner_steps: Option<usize>,
    /// TOML file with any of the options above (keys as the flag names with underscores);
    /// flags given on the command line win.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Compute device.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    device: Device,
    /// Precision: f32 everywhere, or bf16 as the reference runs on GPUs (the DiT's matrix
    /// products under the original's autocast policy, the VAE and umT5 in bf16).
    #[arg(long, value_enum, default_value_t = PrecisionArg::Auto)]
    precision: PrecisionArg,
    /// Generate this many throwaway clips first (same settings), so that `--timings` shows the
    /// steady state: cuDNN/cuBLAS kernel selection and allocator growth happen in the first clip
    /// of a process.
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// Decoder from latents to pixels: `light` (the model directory's distilled `decoder-light/`,
    /// several times faster) or `full` (the VAE's own decoder). Default: light when the model
    /// directory has a `decoder-light/`, else full.
    #[arg(long, value_parser = ["light", "full"])]
    decoder: Option<String>,
    /// Print the time spent in the text encoder, the DiT and the decoder (and which decoder ran).
    #[arg(long)]
    timings: bool,
    /// Skip the SHA-256 check of the model directory's files against its manifest (saves the
    /// time of reading every weight file once more; see docs/bad-inputs.md).
    #[arg(long)]
    no_verify: bool,
    /// Output: `*.gif`, `*.mp4` (build with `--features mp4`) or a folder for PNG frames.
    #[arg(long)]
    out: PathBuf,
}

/// Options that a `--config` file may set.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileOptions {
    model: Option<PathBuf>,
    negative_prompt: Option<String>,
    steps: Option<usize>,
    guidance: Option<f64>,
    shift: Option<f64>,
    frames: Option<usize>,
    height: Option<usize>,
    width: Option<usize>,
    seed: Option<u64>,
    solver: Option<String>,
    outer_steps: Option<usize>,
    inner_steps: Option<usize>,
    decoder: Option<String>,
}

/// Reads a `--config` file strictly: TOML types as written (`frames = true` is an error naming
/// `frames`, not a 1-frame clip), unknown keys refused, each error naming the key.
fn read_config_file(path: &Path) -> Result<FileOptions> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("reading config file {}", path.display()))?;
    for (key, value) in &table {
        let mut one = toml::Table::new();
        one.insert(key.clone(), value.clone());
        if let Err(e) = toml::Value::Table(one).try_into::<FileOptions>() {
            bail!(
                "invalid options in config file {}: key '{key}': {e}",
                path.display()
            );
        }
    }
    toml::Value::Table(table)
        .try_into()
        .with_context(|| format!("invalid options in config file {}", path.display()))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Generate(args) => match args.device {
            Device::Cpu => generate::<burn::backend::NdArray>(&args, &Default::default()),
            Device::Cuda => generate_cuda(&args),
            Device::TorchCpu | Device::TorchCuda => generate_libtorch(&args),
        },
    }
}

fn generate_libtorch(args: &GenerateArgs) -> Result<()> {
    #[cfg(feature = "tch")]
    {
        use burn::backend::libtorch::LibTorchDevice;
        // (LibTorch finds CUDA itself; `check_cuda` is the burn CUDA backend's check.)
        let device = if args.device == Device::TorchCuda {
            LibTorchDevice::Cuda(0)
        } else {
            LibTorchDevice::Cpu
        };
        // (LibTorch's own 3D convolutions, cuDNN / oneDNN, are taken by `tmd_model::conv`.)
        generate::<burn::backend::LibTorch>(args, &device)
    }
    #[cfg(not(feature = "tch"))]
    {
        let _ = args;
        anyhow::bail!(
            "this tmd-cli was built without LibTorch: rebuild with `--features tch` (see the README's LibTorch section)"
        )
    }
}

fn generate_cuda(args: &GenerateArgs) -> Result<()> {
    tmd_sampler::device::check_cuda(0)?;
    #[cfg(feature = "cuda")]
    return generate::<burn::backend::Cuda>(args, &Default::default());
    #[cfg(not(feature = "cuda"))]
    {
        let _ = args;
        unreachable!("check_cuda fails in builds without CUDA")
    }
}

fn generate<B: burn::prelude::Backend>(args: &GenerateArgs, device: &B::Device) -> Result<()> {
    tmd_sampler::Video::check_output_path(&args.out)?;
    let file = match &args.config {
        Some(p) => read_config_file(p)?,
        None => FileOptions::default(),
    };
    let model = args
        .model
        .clone()
        .or(file.model.clone())
        .unwrap_or_else(|| PathBuf::from(BUNDLED_MODEL));
    if args.no_verify {
        tmd_model::integrity::set_verify(false);
    }
    let use_student = tmd_flowhead::has_student(&model) && !args.teacher;
    // Flags of the other side are refused before anything is loaded.
    if use_student {
        check_student_flags(&model, &file, args)?;
    } else if args.outer_steps.or(file.outer_steps).is_some()
        || args.inner_steps.or(file.inner_steps).is_some()
    {
        bail!(
            "--outer-steps/--inner-steps need a distilled student, and {} has none{}: \
             distill one with `cargo xtask adapt-head` / `cargo xtask distill`, or use --steps",
            model.display(),
            if args.teacher {
                " in use (--teacher)"
            } else {
                ""
            }
        );
    }
    let load_start = std::time::Instant::now();
    let sampler = if use_student {
        Sampler::<B>::load(&model, device)
    } else {
        Sampler::<B>::load_teacher(&model, device)
    }
    .with_context(|| format!("loading model directory {}", model.display()))?;
    let load_time = load_start.elapsed();
    let sampled = sampler.kind();
    checks::prompt(&model, &args.prompt);
    let (video, timings, seed) = match sampler {
        Sampler::Student(pipe) => generate_student(*pipe, &model, &file, args)?,
        Sampler::Teacher(pipe) => generate_teacher(*pipe, &model, &file, args)?,
    };
    video
        .save(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({} frames, {}x{}, seed {}, {})",
        args.out.display(),
        video.num_frames(),
        video.width,
        video.height,
        seed,
        sampled
    );
    if args.timings {
        println!("{timings} | model load {:.3} s", load_time.as_secs_f64());
    }
    Ok(())
}

fn progress(len: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} sampling [{{bar:30}}] {{pos}}/{{len}} {unit}  {{elapsed_precise}} (eta {{eta}})"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// The precision policy of `--precision` on `--device`.
fn precision(args: &GenerateArgs) -> tmd_model::dit::Precision {
    use tmd_model::dit::Precision;
    match args.precision {
        PrecisionArg::F32 => Precision::F32,
        PrecisionArg::Bf16 => Precision::Bf16Matmul,
        PrecisionArg::Auto => match args.device {
            Device::Cuda | Device::TorchCuda => Precision::Bf16Matmul,
            Device::Cpu | Device::TorchCpu => Precision::F32,
        },
    }
}

fn generate_teacher<B: burn::prelude::Backend>(
    pipe: TeacherPipeline<B>,
    model: &Path,
    file: &FileOptions,
    args: &GenerateArgs,
) -> Result<(Video, Timings, u64)> {
    let pipe = pipe.with_precision(precision(args));
    let opts = resolve_options(&pipe.options(args.prompt.clone()), file, args)?;
    checks::numbers(opts.guidance, opts.shift)?;
    let cfg = opts.guidance != 1.0;
    let cpu = args.device == Device::Cpu;
    checks::memory(model, opts.frames, opts.height, opts.width, cfg, cpu)?;
    for _ in 0..args.warmup {
        pipe.generate(&opts, &mut |_, _| {})
            .context("warm-up generation failed")?;
    }
    // The timed clip encodes its prompt again, as a new process would.
    pipe.text.cache().clear();
    let bar = progress(opts.steps as u64, "steps");
    let (video, timings) = pipe
        .generate(&opts, &mut |k, _| bar.set_position(k as u64))
        .context("generation failed")?;
    bar.finish_and_clear();
    Ok((video, timings, opts.seed))
}

/// Refuses teacher-only flags for a directory whose student will be sampled.
fn check_student_flags(model: &Path, file: &FileOptions, args: &GenerateArgs) -> Result<()> {
    let teacher_only = [
        ("--steps", args.steps.or(file.steps).is_some()),
        ("--guidance", args.guidance.or(file.guidance).is_some()),
        ("--shift", args.shift.or(file.shift).is_some()),
        ("--solver", args.solver.is_some() || file.solver.is_some()),
        (
            "--negative-prompt",
            args.negative_prompt.is_some() || file.negative_prompt.is_some(),
        ),
    ];
    if let Some((flag, _)) = teacher_only.iter().find(|(_, given)| *given) {
        bail!(
            "{flag} applies to the teacher, but {} holds a distilled student (which samples with \
             --outer-steps/--inner-steps and no CFG); add --teacher to sample the teacher",
            model.display()
        );
    }
    Ok(())
}

fn generate_student<B: burn::prelude::Backend>(
    pipe: StudentPipeline<B>,
    model: &Path,
    file: &FileOptions,
    args: &GenerateArgs,
) -> Result<(Video, Timings, u64)> {
    let dmd = matches!(pipe.student, tmd_flowhead::Student::Dmd2V(_));
    if dmd && args.inner_steps.or(file.inner_steps).is_some() {
        bail!(
            "--inner-steps applies to a TMD student, but {} holds a DMD2-v student (one DiT pass \
             per outer step); use --outer-steps",
            model.display()
        );
    }
    let mut o: StudentOptions = pipe.options(args.prompt.clone());
    macro_rules! pick {
        ($field:ident) => {
            if let Some(v) = args.$field.clone().or(file.$field.clone()) {
                o.$field = v;
            }
        };
    }
    if let Some(d) = decoder_choice(file, args)? {
        o.decoder = d;
    }
    pick!(outer_steps);
    pick!(inner_steps);
    pick!(frames);
    pick!(height);
    pick!(width);
    pick!(seed);
    if o.prompt.trim().is_empty() {
        bail!("--prompt is empty: describe what the clip should show");
    }
    if o.outer_steps == 0 || o.inner_steps == 0 {
        bail!("--outer-steps and --inner-steps must be at least 1");
    }
    let cpu = args.device == Device::Cpu;
    checks::memory(model, o.frames, o.height, o.width, false, cpu)?;
    let pipe = pipe.with_precision(precision(args));
    for _ in 0..args.warmup {
        pipe.generate(&o, &mut |_, _| {})
            .context("warm-up generation failed")?;
    }
    // The timed clip encodes its prompt again, as a new process would.
    pipe.text.cache().clear();
    let bar = progress(o.outer_steps as u64, "outer steps");
    let (video, timings) = pipe
        .generate(&o, &mut |k, _| bar.set_position(k as u64))
        .context("generation failed")?;
    bar.finish_and_clear();
    Ok((video, timings, o.seed))
}

/// `--decoder` (or the config file's `decoder`), if given.
fn decoder_choice(file: &FileOptions, args: &GenerateArgs) -> Result<Option<DecoderKind>> {
    args.decoder
        .clone()
        .or(file.decoder.clone())
        .map(|d| d.parse::<DecoderKind>().map_err(anyhow::Error::msg))
        .transpose()
        .context("--decoder")
}

/// Model defaults < config file < command-line flags.
fn resolve_options(
    base: &TeacherOptions,
    file: &FileOptions,
    args: &GenerateArgs,
) -> Result<TeacherOptions> {
    let mut o = base.clone();
    macro_rules! pick {
        ($field:ident) => {
            if let Some(v) = args.$field.clone().or(file.$field.clone()) {
                o.$field = v;
            }
        };
    }
    pick!(negative_prompt);
    pick!(steps);
    pick!(guidance);
    pick!(shift);
    pick!(frames);
    pick!(height);
    pick!(width);
    pick!(seed);
    if let Some(d) = decoder_choice(file, args)? {
        o.decoder = d;
    }
    if let Some(s) = args.solver.clone().or(file.solver.clone()) {
        o.solver = s.parse::<Solver>().map_err(anyhow::Error::msg)?;
    }
    if o.prompt.trim().is_empty() {
        bail!("--prompt is empty: describe what the clip should show");
    }
    if o.steps == 0 {
        bail!("--steps must be at least 1");
    }
    Ok(o)
}
