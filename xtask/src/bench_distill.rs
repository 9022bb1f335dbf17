//! `cargo xtask bench-distill`: stage-2 iterations (TMD: DMD2-v with flow-head rollout) of a
//! Wan-shaped student with random weights, timed one by one, through the same
//! [`distill`] loop and data parallelism as `cargo xtask distill` (`--world N`).
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

use anyhow::{ensure, Context, Result};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde_json::{json, Value};
use tmd_distill::adapt_head::AdaptHeadBatch;
use tmd_distill::distill::run::DiscriminatorSettings;
use tmd_distill::distill::stage2::{distill, update_of, Stage2Config, Stage2Models, Stage2Update};
use tmd_distill::train::data_parallel::{current, seeded_init, try_seeded_init};
use tmd_flowhead::FlowHeadConfig;
use tmd_model::dit::{WanConfig, WanModel};
use tmd_sampler::noise::gaussian;

/// What `bench-distill` runs.
pub struct DistillBenchArgs {
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

/// Runs the stage-2 iterations on this rank's device and returns rank 0's record: per-step
/// milliseconds, the losses, and means per update kind.
pub fn run<B: AutodiffBackend>(args: &DistillBenchArgs, device: &B::Device) -> Result<Value> {
    let c = dit_config(args)?;
    // Every rank builds the same teacher (seeded); the trained copies are made equal by the loop
    // (rank 0's parameters are broadcast before the first step).
    let teacher: WanModel<B> = seeded_init(|| {
        B::seed(device, 0);
        c.init::<B>(device)
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
    let [f, h, w] = args.latent;
    let latents = gaussian::<B, 5>([args.batch, c.in_channels, f, h, w], 1, device);
    let context = gaussian::<B, 3>([args.batch, args.text_len, c.text_dim], 2, device);
    let negative = gaussian::<B, 3>([1, args.text_len, c.text_dim], 3, device);
    let config = Stage2Config {
        batch: args.batch,
        steps: args.steps,
        checkpoint_every: 0,
        progress: false,
        ..Stage2Config::default()
    };
    // When each iteration began: the data of step `s` is asked for once per micro-batch, and the
    // first ask of a new step ends the previous one.
    let starts = Mutex::new(Vec::<(u64, Instant)>::new());
    let stamp = |step: u64| {
        let mut starts = starts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if starts.last().is_none_or(|&(last, _)| last != step) {
            let _ = B::sync(device);
            starts.push((step, Instant::now()));
        }
    };
    let (_, report) = distill(models, &teacher, &config, &args.run_dir, negative, |step| {
        stamp(step);
        Ok(AdaptHeadBatch {
            latents: latents.clone(),
            context: context.clone(),
        })
    })
    .context("stage-2 iterations")?;
    stamp(u64::MAX);
    let starts = starts
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let step_ms: Vec<f64> = starts
        .windows(2)
        .map(|w| (w[1].1 - w[0].1).as_secs_f64() * 1e3)
        .collect();
    let kind = |step: u64| update_of(step, config.student_every);
    // Steps 2.. (step 1 allocates and, on CUDA, compiles).
    let timed = || {
        step_ms
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, &ms)| (i as u64 + 1, ms))
    };
    let critic_ms = mean(
        timed()
            .filter(|&(s, _)| kind(s) == Stage2Update::Critics)
            .map(|(_, ms)| ms),
    );
    let student_ms = mean(
        timed()
            .filter(|&(s, _)| kind(s) == Stage2Update::Student)
            .map(|(_, ms)| ms),
    );
    // One cycle of the paper's schedule: (student_every - 1) critic updates and one student update.
    let every = config.student_every as f64;
    let cycle_ms = match (critic_ms, student_ms) {
        (Some(c), Some(s)) => Some((every - 1.0) * c + s),
        _ => None,
    };
    let world = current().map_or(1, |p| p.world());
    let params = |m: &WanModel<B>| m.num_params();
    Ok(json!({
        "item": "distill-step",
        "model": args.model,
        "blocks": c.num_layers,
        "head_blocks": args.head_blocks,
        "dit_params": params(&teacher),
        "latent": args.latent,
        "tokens": f * (h / c.patch_size[1]) * (w / c.patch_size[2]),
        "text_len": args.text_len,
        "global_batch": args.batch,
        "world": world,
        "micro_batches": tmd_distill::train::data_parallel::micro_batches(),
        "shard_optimizer": world > 1 && tmd_distill::train::sharded_optimizer::optimizer_sharding(),
        "steps": args.steps,
        "step_ms": step_ms,
        "critic_ms": critic_ms,
        "student_ms": student_ms,
        "cycle_ms": cycle_ms,
        "clips_per_s": cycle_ms.map(|ms| args.batch as f64 * every / (ms / 1e3)),
        "losses": report.losses,
    }))
}
