//! `cargo xtask bench-distill`: stage-2 iterations (TMD: DMD2-v with flow-head rollout) of a
//! Wan-shaped student with random weights, timed one by one, through the same
//! [`distill`] loop and data parallelism as `cargo xtask distill` (`--world N`); or stage-1
//! steps (TM-MeanFlow, [`adapt_head`]) with `--phase stage1`. `--checkpoint-activations` turns
//! on `train.checkpoint_activations` (issue 20).
//!
//! Besides the run's record it prints one record per phase (`stage`: `stage1`, `critic`,
//! `student`) with `tokens`, `checkpoint_activations`, `ms_per_iteration` and the memory of the
//! weights, gradients and optimizer state computed from the parameter counts (f32, AdamW's two
//! moments: exact byte counts of those tensors, not a measurement). `peak_gib` is `null` here:
//! LibTorch's CUDA API in `tch` has no memory statistics, so `scripts/gpu/checkpointing.sh`
//! samples `nvidia-smi` beside each process and fills it in (with the activations as the
//! estimate `peak - weights - gradients - optimizer state`). Phases `critic` and `student` run
//! only that update (`student_every` past the end, or 1), so a process's peak is that phase's;
//! `stage2` runs the paper's 4:1 cycle and its peak is the larger of the two.
//!
//! It answers issue 6's scaling questions (step time and throughput on 1 and N devices at the same
//! global batch, and that the losses agree) and gives the per-device memory of a 14B-shaped step
//! at reduced depth (`--blocks`), which `scripts/gpu/scale.sh` samples with `nvidia-smi` beside
//! it. Nothing is checkpointed (`checkpoint_every = 0`: a 1.3B stage 2 would write tens of GB
//! per checkpoint); the loss log is written to `--run-dir`.
//!
//! The data is one fixed random batch (latents, text contexts and the negative prompt's context
//! drawn from seeded Gaussians): the cost of an iteration does not depend on the values, and a
//! fixed batch makes the loss of step `s` a function of the models only, so 1-device and
//! N-device runs can be compared loss by loss.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde_json::{json, Value};
use tmd_distill::adapt_head::{adapt_head, AdaptHeadBatch, AdaptHeadConfig};
use tmd_distill::distill::run::DiscriminatorSettings;
use tmd_distill::distill::stage2::{distill, update_of, Stage2Config, Stage2Models, Stage2Update};
use tmd_distill::train::data_parallel::{current, seeded_init, try_seeded_init};
use tmd_distill::train::CheckpointConfig;
use tmd_flowhead::{FlowHeadConfig, TmdStudent};
use tmd_model::dit::{Precision, WanConfig, WanModel};
use tmd_sampler::noise::gaussian;

use crate::common::DeviceKind;
use crate::parallel;

/// Which iterations `bench-distill` runs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Stage-1 (TM-MeanFlow) steps of the student alone.
    Stage1,
    /// Stage 2 at the paper's ratio (4 critic iterations, then 1 student iteration).
    Stage2,
    /// Stage-2 critic iterations only (fake score + discriminator).
    Critic,
    /// Stage-2 student iterations only (VSD + GAN).
    Student,
}

/// `--precision` of `bench-distill` (the training configs' `precision` key).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainPrecision {
    /// Everything in f32.
    F32,
    /// bf16 matrix products and attention, f32 weights and optimizer state.
    Bf16,
}

impl From<TrainPrecision> for Precision {
    fn from(p: TrainPrecision) -> Self {
        match p {
            TrainPrecision::F32 => Precision::F32,
            TrainPrecision::Bf16 => Precision::Bf16Matmul,
        }
    }
}

/// What `bench-distill` runs.
pub struct DistillBenchArgs {
    /// Which iterations.
    pub phase: Phase,
    /// `train.checkpoint_activations`.
    pub checkpoint_activations: bool,
    /// The DiT passes' precision policy (`train.precision`).
    pub precision: Precision,
    /// Phase `stage2`: the student updates on every this-many-th iteration (the paper's 5; 2
    /// gives one critic and one student iteration in 2 steps, with every optimizer state
    /// allocated by the student's).
    pub student_every: u64,
    /// The Wan2.1 shape: `1.3b` or `14b`.
    pub model: String,
    /// Blocks of the DiT (default: the preset's 30 or 40); fewer for a reduced-depth memory probe.
    pub blocks: Option<usize>,
    /// Flow-head blocks `H`.
    pub head_blocks: usize,
    /// Latent frames, height, width of each clip.
    pub latent: [usize; 3],
    /// Text tokens per context (Wan pads prompts to 512).
    pub text_len: usize,
    /// Global batch (split over the ranks).
    pub batch: usize,
    /// Iterations (the first is warm-up and is left out of the means).
    pub steps: u64,
    /// Run directory (the loss log).
    pub run_dir: PathBuf,
}

/// The DiT configuration of `args`.
fn dit_config(args: &DistillBenchArgs) -> Result<WanConfig> {
    let mut c = match args.model.as_str() {
        "1.3b" => WanConfig::t2v_1_3b(),
        "14b" => WanConfig::t2v_14b(),
        other => anyhow::bail!("--model {other}: expected 1.3b or 14b"),
    };
    if let Some(blocks) = args.blocks {
        ensure!(
            blocks > args.head_blocks,
            "--blocks {blocks}: the student needs more blocks than its head (--head-blocks {})",
            args.head_blocks
        );
        c.num_layers = blocks;
    }
    Ok(c)
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = values.collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

const GIB: f64 = (1u64 << 30) as f64;

/// f32 bytes of `params` parameters, in GiB.
fn gib(params: usize) -> f64 {
    params as f64 * 4.0 / GIB
}

/// Per-iteration milliseconds from the times each iteration began (the data of step `s` is asked
/// for once per micro-batch, and the first ask of a new step ends the previous one).
struct Stamps<'a, B: AutodiffBackend> {
    starts: Mutex<Vec<(u64, Instant)>>,
    device: &'a B::Device,
}

impl<'a, B: AutodiffBackend> Stamps<'a, B> {
    fn new(device: &'a B::Device) -> Self {
        Self {
            starts: Mutex::new(Vec::new()),
            device,
        }
    }

    fn stamp(&self, step: u64) {
        let mut starts = self
            .starts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if starts.last().is_none_or(|&(last, _)| last != step) {
            let _ = B::sync(self.device);
            let now = Instant::now();
            // One line per finished iteration on stderr, so that a run stopped by a time limit
            // still leaves its iteration times (the JSON records come at the end).
            if let Some(&(last, t)) = starts.last() {
                eprintln!(
                    "bench-distill: iteration {last} took {:.1} ms",
                    (now - t).as_secs_f64() * 1e3
                );
            }
            starts.push((step, now));
        }
    }

    /// `(step, ms)` of every finished iteration.
    fn step_ms(self) -> Vec<(u64, f64)> {
        let starts = self
            .starts
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        starts
            .windows(2)
            .map(|w| (w[0].0, (w[1].1 - w[0].1).as_secs_f64() * 1e3))
            .collect()
    }
}

/// The record of one phase.
#[allow(clippy::too_many_arguments)]
fn phase_record(
    args: &DistillBenchArgs,
    c: &WanConfig,
    stage: &str,
    ms: Option<f64>,
    timed: usize,
    weights: f64,
    gradients: f64,
    optimizer: f64,
) -> Value {
    let [f, h, w] = args.latent;
    json!({
        "item": "distill-phase",
        "stage": stage,
        "model": args.model,
        "blocks": c.num_layers,
        "head_blocks": args.head_blocks,
        "latent": args.latent,
        "tokens": f / c.patch_size[0] * (h / c.patch_size[1]) * (w / c.patch_size[2]),
        "batch": args.batch,
        "checkpoint_activations": args.checkpoint_activations,
        "precision": format!("{:?}", args.precision),
        "ms_per_iteration": ms,
        "iterations_timed": timed,
        "peak_gib": Value::Null,
        "memory_gib": {
            "weights": weights,
            "gradients": gradients,
            "optimizer_state": optimizer,
            "basis": "computed from parameter counts: f32 weights of every model held, f32 gradients of the updated side, AdamW's two f32 moments of every model updated in the run",
        },
    })
}

/// Runs the iterations of `args.phase` on this rank's device and returns rank 0's records: the
/// run's record (per-step milliseconds, losses, means per update kind), then one per phase.
pub fn bench<B: AutodiffBackend>(
    args: &DistillBenchArgs,
    device: &B::Device,
) -> Result<Vec<Value>> {
    if args.phase == Phase::Stage1 {
        return run_stage1::<B>(args, device);
    }
    let c = dit_config(args)?;
    // Every rank builds the same teacher (seeded); the trained copies are made equal by the loop
    // (rank 0's parameters are broadcast before the first step).
    let teacher: WanModel<B> = seeded_init(|| {
        B::seed(device, 0);
        c.init::<B>(device).with_precision(args.precision)
    })
    .no_grad();
    let disc = DiscriminatorSettings::default()
        .config(c.dim, c.num_layers)
        .context("discriminator")?;
    // Seeded too (the fusion layer and the discriminator are fresh), so that rank 0 of an N-rank
    // run starts from the models of a 1-rank run.
    let head = FlowHeadConfig::paper(args.head_blocks);
    let models = try_seeded_init(|| {
        B::seed(device, 1);
        Stage2Models::for_tmd(&teacher, &head, &disc, device)
    })
    .context("building the student")?;
    let student_params = models.tmd.as_ref().map_or(0, |s| s.num_params());
    let critic_params = models.fake.num_params() + models.disc.num_params();
    let [f, h, w] = args.latent;
    let latents = gaussian::<B, 5>([args.batch, c.in_channels, f, h, w], 1, device);
    let context = gaussian::<B, 3>([args.batch, args.text_len, c.text_dim], 2, device);
    let negative = gaussian::<B, 3>([1, args.text_len, c.text_dim], 3, device);
    let student_every = match args.phase {
        Phase::Critic => args.steps + 1,
        Phase::Student => 1,
        _ => args.student_every,
    };
    let config = Stage2Config {
        batch: args.batch,
        steps: args.steps,
        checkpoint: CheckpointConfig {
            every: 0,
            ..Stage2Config::default().checkpoint
        },
        progress: false,
        student_every,
        checkpoint_activations: args.checkpoint_activations,
        precision: args.precision,
        ..Stage2Config::default()
    };
    let stamps = Stamps::<B>::new(device);
    let (_, report) = distill(models, &teacher, &config, &args.run_dir, negative, |step| {
        stamps.stamp(step);
        Ok(AdaptHeadBatch {
            latents: latents.clone(),
            context: context.clone(),
        })
    })
    .context("stage-2 iterations")?;
    stamps.stamp(u64::MAX);
    let step_ms = stamps.step_ms();
    let kind = |step: u64| update_of(step, config.student_every);
    // Steps 2.. (step 1 allocates and, on CUDA, compiles); step 1 itself only where no later
    // step of its kind ran (a 2-step run at Wan scale), flagged in the record.
    let timed = |k: Stage2Update| -> (Vec<f64>, bool) {
        let later: Vec<f64> = step_ms
            .iter()
            .skip(1)
            .filter(|&&(s, _)| kind(s) == k)
            .map(|&(_, ms)| ms)
            .collect();
        match step_ms.first() {
            Some(&(s, ms)) if later.is_empty() && kind(s) == k => (vec![ms], true),
            _ => (later, false),
        }
    };
    let ((critic, critic_warm), (student, student_warm)) =
        (timed(Stage2Update::Critics), timed(Stage2Update::Student));
    let critic_ms = mean(critic.iter().copied());
    let student_ms = mean(student.iter().copied());
    // One cycle of the paper's schedule: (student_every - 1) critic updates and one student update.
    let every = Stage2Config::default().student_every as f64;
    let cycle_ms = match (critic_ms, student_ms) {
        (Some(c), Some(s)) => Some((every - 1.0) * c + s),
        _ => None,
    };
    let world = current().map_or(1, |p| p.world());
    let teacher_params = teacher.num_params();
    let weights = gib(teacher_params + student_params + critic_params);
    let optimizer = 2.0
        * match args.phase {
            Phase::Critic => gib(critic_params),
            Phase::Student => gib(student_params),
            _ => gib(student_params + critic_params),
        };
    let mut records = vec![json!({
        "item": "distill-step",
        "model": args.model,
        "blocks": c.num_layers,
        "head_blocks": args.head_blocks,
        "dit_params": teacher_params,
        "latent": args.latent,
        "tokens": f * (h / c.patch_size[1]) * (w / c.patch_size[2]),
        "text_len": args.text_len,
        "global_batch": args.batch,
        "world": world,
        "micro_batches": tmd_distill::train::data_parallel::micro_batches(),
        "shard_optimizer": world > 1 && tmd_distill::train::sharded_optimizer::optimizer_sharding(),
        "phase": format!("{:?}", args.phase).to_lowercase(),
        "checkpoint_activations": args.checkpoint_activations,
        "precision": format!("{:?}", args.precision),
        "steps": args.steps,
        "step_ms": step_ms.iter().map(|&(_, ms)| ms).collect::<Vec<_>>(),
        "critic_ms": critic_ms,
        "student_ms": student_ms,
        "cycle_ms": cycle_ms,
        "clips_per_s": cycle_ms.map(|ms| args.batch as f64 * every / (ms / 1e3)),
        "losses": report.losses,
    })];
    if !critic.is_empty() {
        let mut r = phase_record(
            args,
            &c,
            "critic",
            critic_ms,
            critic.len(),
            weights,
            gib(critic_params),
            optimizer,
        );
        r["warmup_included"] = json!(critic_warm);
        records.push(r);
    }
    if !student.is_empty() {
        let mut r = phase_record(
            args,
            &c,
            "student",
            student_ms,
            student.len(),
            weights,
            gib(student_params),
            optimizer,
        );
        r["warmup_included"] = json!(student_warm);
        records.push(r);
    }
    Ok(records)
}

/// Stage-1 steps (TM-MeanFlow) of a student built from a random Wan-shaped DiT: the student
/// alone is trained (its CFG target and finite differences run on the student itself).
fn run_stage1<B: AutodiffBackend>(
    args: &DistillBenchArgs,
    device: &B::Device,
) -> Result<Vec<Value>> {
    let c = dit_config(args)?;
    let head = FlowHeadConfig::paper(args.head_blocks);
    let student = try_seeded_init(|| {
        B::seed(device, 0);
        TmdStudent::from_teacher(c.init::<B>(device).with_precision(args.precision), &head)
    })
    .context("building the student")?;
    let params = student.num_params();
    let [f, h, w] = args.latent;
    let latents = gaussian::<B, 5>([args.batch, c.in_channels, f, h, w], 1, device);
    let context = gaussian::<B, 3>([args.batch, args.text_len, c.text_dim], 2, device);
    let negative = gaussian::<B, 3>([1, args.text_len, c.text_dim], 3, device);
    let config = AdaptHeadConfig {
        batch: args.batch,
        steps: args.steps,
        checkpoint: CheckpointConfig {
            every: 0,
            ..AdaptHeadConfig::default().checkpoint
        },
        progress: false,
        checkpoint_activations: args.checkpoint_activations,
        precision: args.precision,
        ..AdaptHeadConfig::default()
    };
    let stamps = Stamps::<B>::new(device);
    let (_, report) = adapt_head(student, &config, &args.run_dir, negative, |step| {
        stamps.stamp(step);
        Ok(AdaptHeadBatch {
            latents: latents.clone(),
            context: context.clone(),
        })
    })
    .context("stage-1 steps")?;
    stamps.stamp(u64::MAX);
    let step_ms = stamps.step_ms();
    let mut timed: Vec<f64> = step_ms.iter().skip(1).map(|&(_, ms)| ms).collect();
    let warm = timed.is_empty();
    if warm {
        timed = step_ms.iter().map(|&(_, ms)| ms).collect();
    }
    let ms = mean(timed.iter().copied());
    let mut run = json!({
        "item": "adapt-head-step",
        "model": args.model,
        "blocks": c.num_layers,
        "head_blocks": args.head_blocks,
        "latent": args.latent,
        "global_batch": args.batch,
        "checkpoint_activations": args.checkpoint_activations,
        "precision": format!("{:?}", args.precision),
        "steps": args.steps,
        "step_ms": step_ms.iter().map(|&(_, ms)| ms).collect::<Vec<_>>(),
        "losses": report.losses,
    });
    run["world"] = json!(current().map_or(1, |p| p.world()));
    let mut phase = phase_record(
        args,
        &c,
        "stage1",
        ms,
        timed.len(),
        gib(params),
        gib(params),
        2.0 * gib(params),
    );
    phase["warmup_included"] = json!(warm);
    Ok(vec![run, phase])
}

/// Arguments of `bench-distill` (its help text is the doc comment of `Command::BenchDistill`).
#[derive(clap::Args, Debug)]
pub struct Args {
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
    #[arg(long, value_enum, default_value_t = Phase::Stage2)]
    phase: Phase,
    /// Activation checkpointing (`train.checkpoint_activations`): recompute each block's
    /// forward in the backward.
    #[arg(long)]
    checkpoint_activations: bool,
    /// Precision policy of the DiT passes (`train.precision`): f32, or bf16 matrix products
    /// and attention with f32 weights and optimizer state (mixed precision).
    #[arg(long, value_enum, default_value_t = TrainPrecision::F32)]
    precision: TrainPrecision,
    /// Phase stage2: the student updates on every this-many-th iteration (the paper's 5; 2
    /// runs one critic and one student iteration in `--steps 2`).
    #[arg(long, default_value_t = 5)]
    student_every: u64,
    /// Backend.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
    #[command(flatten)]
    parallel: parallel::ParallelArgs,
}

/// Runs `bench-distill`.
pub fn run(args: Args) -> Result<()> {
    let Args {
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
    } = args;
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
    let args = DistillBenchArgs {
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
    let records = on_backend!(device, B, ranks device_of => parallel.run::<B, _>(device_of, |dev| {
        bench::<Autodiff<B>>(&args, dev)
    }))
    .context("bench-distill")?;
    // The run's record, then one per phase (JSON lines).
    for mut record in records {
        record["device"] = serde_json::json!(device.name());
        record["wall_s"] = serde_json::json!(t0.elapsed().as_secs_f64());
        println!("{record}");
    }
    Ok(())
}
