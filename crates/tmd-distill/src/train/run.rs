//! The pieces every training loop shares, so each stage's loop only says what its step computes:
//!
//! - [`resume`]: pick the newest valid checkpoint under the run directory, check its config hash,
//!   reload model and optimizer state, and cut the loss log back to the resumed step;
//! - [`save_checkpoint`]: check the parameters are finite, then write model, optimizer and
//!   [`TrainState`] atomically;
//! - [`LossLog`]: the `step,loss` log beside the checkpoints plus the loss tail kept in each
//!   checkpoint's `state.json`;
//! - [`progress_bar`], [`check_shape`], and [`PretrainReport`], what a run returns.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::grad_clipping::GradientClippingConfig;
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::Optimizer;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams};
use burn::prelude::Tensor;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::checkpoint::{latest_valid, CheckpointWriter, TrainState};
use super::data_parallel::{in_micro_batch, micro_batches, DataParallel};
use super::error::TrainError;
use super::guard::check_module_finite;
use super::sharded_optimizer::{optimizer_sharding, shard_name, Ownership};

/// Name of the optimizer state inside a checkpoint directory.
pub const OPTIMIZER_NAME: &str = "optimizer";
/// Loss log written beside the checkpoints: `step,loss` per line.
pub const LOSS_LOG: &str = "loss.csv";

/// What a training run did.
#[derive(Debug, Clone, Default)]
pub struct PretrainReport {
    /// Steps already done when this run started (0 for a fresh run).
    pub start_step: u64,
    /// Steps done when it returned.
    pub end_step: u64,
    /// `(step, loss)` of every step this run took.
    pub losses: Vec<(u64, f64)>,
    /// The checkpoint it resumed from.
    pub resumed_from: Option<PathBuf>,
    /// Newer checkpoints that were corrupt and skipped, with the reason.
    pub skipped_corrupt: Vec<(PathBuf, String)>,
    /// Checkpoints written by this run.
    pub checkpoints: Vec<PathBuf>,
}

/// Where a run starts: the model and optimizer (reloaded if a checkpoint was found), the report
/// so far, and the loss log positioned at the start step.
#[derive(Debug)]
pub struct Resumed<M, O> {
    /// The model, with the checkpoint's weights and parameter ids if resumed.
    pub model: M,
    /// The optimizer, with the checkpoint's state if resumed.
    pub optimizer: O,
    /// `start_step`, `end_step`, `resumed_from` and `skipped_corrupt` filled in.
    pub report: PretrainReport,
    /// The loss log, holding the checkpoint's loss tail.
    pub log: LossLog,
}

/// Resumes from the newest checkpoint under `run_dir` whose checksums verify, if any: its
/// `config_hash` must equal `hash`, `<model_name>.bpk` is loaded into `model` and
/// [`OPTIMIZER_NAME`] into `optimizer`. Corrupt newer checkpoints are skipped and moved aside to
/// `step-N.corrupt` (reported on stderr and in [`PretrainReport::skipped_corrupt`]), never
/// deleted. The loss log loses lines after the start step; a run that starts from step 0 moves an
/// existing log aside instead ([`LossLog::keep_unresumed`]).
///
/// Only a `writer` (the single process of a run, or rank 0 of a data-parallel one) changes the run
/// directory: another rank reads the same checkpoint but moves nothing aside and leaves the loss
/// log alone, and its log appends nothing. (Two ranks rewriting `loss.csv` at once could each read
/// the other's half-written file and cut the log's history: a failure CI once caught.) Ranks that
/// are not the writer must resume after it ([`train_loop`] waits for it).
///
/// # Errors
/// [`TrainError::ConfigMismatch`] for a checkpoint of different settings;
/// [`TrainError::NoValidCheckpoint`] when the run has checkpoints but none verifies (starting over
/// would train over its history); checkpoint and I/O errors.
#[allow(clippy::too_many_arguments)]
pub fn resume<B, M, O>(
    run_dir: &Path,
    hash: &str,
    model_name: &str,
    model: M,
    optimizer: O,
    device: &B::Device,
    loss_tail: usize,
    writer: bool,
) -> Result<Resumed<M, O>, TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
    O::Record: Default + IntoIterator + Extend<<O::Record as IntoIterator>::Item>,
{
    let (mut model, mut optimizer) = (model, optimizer);
    let mut report = PretrainReport::default();
    let mut tail = Vec::new();
    let latest = latest_valid(run_dir)?;
    for (path, reason) in latest.skipped.iter().filter(|_| writer) {
        let aside = super::checkpoint::move_aside(path)?;
        eprintln!(
            "skipping corrupt checkpoint {}: {reason} (moved aside to {})",
            path.display(),
            aside.display()
        );
    }
    report.skipped_corrupt = latest.skipped;
    if latest.checkpoint.is_none() {
        let corrupt = super::checkpoint::corrupt_checkpoints(run_dir)?;
        if !corrupt.is_empty() {
            return Err(TrainError::NoValidCheckpoint {
                run_dir: run_dir.to_path_buf(),
                corrupt,
            });
        }
    }
    if let Some(ckpt) = latest.checkpoint {
        let state = ckpt.state()?;
        if state.config_hash != hash {
            return Err(TrainError::ConfigMismatch {
                path: ckpt.path,
                expected: hash.to_string(),
                found: state.config_hash,
            });
        }
        model = ckpt.load_module(model_name, model)?;
        optimizer = ckpt.load_optimizer::<B, M, O>(OPTIMIZER_NAME, optimizer, device)?;
        report.start_step = state.step;
        tail = state.losses;
        report.resumed_from = Some(ckpt.path);
    }
    report.end_step = report.start_step;
    if report.resumed_from.is_none() && writer {
        LossLog::keep_unresumed(run_dir)?;
    }
    let log = LossLog::open(run_dir, report.start_step, tail, loss_tail, writer)?;
    Ok(Resumed {
        model,
        optimizer,
        report,
        log,
    })
}

/// Checks every parameter of `model` is finite ([`TrainError::NonFinite`] otherwise, writing
/// nothing), then writes the checkpoint after `state.step` steps: `<model_name>.bpk` (+ ids),
/// [`OPTIMIZER_NAME`]`.mpk` and `state.json`, keeping the newest `keep_last` (0 keeps all).
/// Returns the committed directory.
pub fn save_checkpoint<B, M, O>(
    run_dir: &Path,
    model_name: &str,
    model: &M,
    optimizer: &O,
    state: &TrainState,
    keep_last: usize,
) -> Result<PathBuf, TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    check_module_finite::<B, M>(state.step, model)?;
    let writer = CheckpointWriter::begin(run_dir, state.step)?;
    writer.save_module::<B, M>(model_name, model)?;
    writer.save_optimizer::<B, M, O>(OPTIMIZER_NAME, optimizer)?;
    writer.save_state(state)?;
    Ok(writer.commit(keep_last)?.path)
}

/// The checkpoint step of a run with a sharded optimizer, on one rank: rank 0 (`begin`) checks
/// the parameters are finite and begins the checkpoint, every rank adds its optimizer
/// shard, and the ranks agree after each part, so all go on or all stop. Returns rank 0's writer,
/// which then adds the model and `state.json` and commits.
fn save_optimizer_shard<B, M, O>(
    session: &DataParallel,
    run_dir: &Path,
    step: u64,
    optimizer: &O,
    model: &M,
    begin: bool,
) -> Result<Option<CheckpointWriter>, TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let device = model.devices().into_iter().next().unwrap_or_default();
    let begun = if begin {
        check_module_finite::<B, M>(step, model)
            .and_then(|()| CheckpointWriter::begin(run_dir, step))
            .map(Some)
    } else {
        Ok(None)
    };
    if !session.all_ok::<B>(begun.is_ok(), &device)? {
        return Err(begun.err().unwrap_or_else(|| {
            TrainError::parallel(format!("rank 0 could not begin checkpoint {step}"))
        }));
    }
    let begun = begun?;
    let shard = shard_name(OPTIMIZER_NAME, session.rank());
    let written = match &begun {
        Some(writer) => writer.save_optimizer::<B, M, O>(&shard, optimizer),
        None => CheckpointWriter::open(run_dir, step)
            .and_then(|writer| writer.save_optimizer::<B, M, O>(&shard, optimizer)),
    };
    if !session.all_ok::<B>(written.is_ok(), &device)? {
        return Err(written.err().unwrap_or_else(|| {
            TrainError::parallel(format!(
                "another rank could not write its optimizer shard of checkpoint {step}"
            ))
        }));
    }
    Ok(begun)
}

/// When and where a loop checkpoints, and what its checkpoints record.
#[derive(Debug, Clone)]
pub struct CheckpointPolicy<'a> {
    /// The run directory.
    pub run_dir: &'a Path,
    /// Name of the trained module inside a checkpoint.
    pub model_name: &'a str,
    /// Seed of the run (stored in `state.json`).
    pub seed: u64,
    /// Hash of the settings a resume must match.
    pub config_hash: String,
    /// Checkpoint every this many steps (and after the last); 0 writes no checkpoint at all
    /// (benchmarks: an interrupted run then starts over).
    pub every: u64,
    /// The last step of the run, always checkpointed.
    pub final_step: u64,
    /// Checkpoints to keep (0 keeps all).
    pub keep_last: usize,
    /// Whether this process writes checkpoints (false on data-parallel ranks other than 0).
    pub write: bool,
    /// The data-parallel run, when the optimizer state is sharded over its ranks: then every rank
    /// writes its shard into rank 0's checkpoint.
    pub sharded: Option<Arc<DataParallel>>,
}

/// What every loop does after its optimizer step: record the loss in the report, the log and the
/// progress bar, and write a checkpoint when `policy` says so.
#[allow(clippy::too_many_arguments)]
pub fn after_step<B, M, O>(
    policy: &CheckpointPolicy<'_>,
    step: u64,
    loss: f64,
    model: &M,
    optimizer: &O,
    log: &mut LossLog,
    bar: &ProgressBar,
    report: &mut PretrainReport,
) -> Result<(), TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    report.losses.push((step, loss));
    log.push(step, loss)?;
    bar.set_position(step);
    bar.set_message(format!("loss {loss:.5}"));
    let due = policy.every > 0 && (step.is_multiple_of(policy.every) || step == policy.final_step);
    let state = || TrainState {
        step,
        seed: policy.seed,
        config_hash: policy.config_hash.clone(),
        losses: log.tail().to_vec(),
        optimizer_shards: policy.sharded.as_ref().map_or(0, |p| p.world()),
    };
    if due && !policy.write {
        // A rank other than 0 adds its optimizer shard to rank 0's checkpoint, if sharded.
        if let Some(p) = &policy.sharded {
            save_optimizer_shard::<B, M, O>(p, policy.run_dir, step, optimizer, model, false)?;
        }
    } else if due {
        let path = match &policy.sharded {
            None => save_checkpoint::<B, _, _>(
                policy.run_dir,
                policy.model_name,
                model,
                optimizer,
                &state(),
                policy.keep_last,
            )?,
            Some(p) => {
                let writer = save_optimizer_shard::<B, M, O>(
                    p,
                    policy.run_dir,
                    step,
                    optimizer,
                    model,
                    true,
                )?
                .ok_or_else(|| TrainError::parallel("rank 0 began no checkpoint"))?;
                writer.save_module::<B, M>(policy.model_name, model)?;
                writer.save_state(&state())?;
                writer.commit(policy.keep_last)?.path
            }
        };
        // One plain line per checkpoint, so logs of runs without a terminal (where the bar is
        // hidden) still show progress.
        let tail = log.tail();
        let mean = tail.iter().map(|(_, l)| l).sum::<f64>() / tail.len().max(1) as f64;
        // (Read the bar before `suspend`, which holds the bar's lock while its closure runs.)
        let line = format!(
            "{} step {step}/{}: mean loss of the last {} steps {mean:.5}, {:.1} s, checkpoint {}",
            policy.model_name,
            policy.final_step,
            tail.len(),
            bar.elapsed().as_secs_f64(),
            path.display()
        );
        bar.suspend(|| eprintln!("{line}"));
        report.checkpoints.push(path);
    }
    report.end_step = step;
    Ok(())
}

/// The `step,loss` log file of a run ([`LOSS_LOG`] in the run directory) and the tail of recent
/// losses stored in each checkpoint.
#[derive(Debug, Clone)]
pub struct LossLog {
    path: PathBuf,
    tail: Vec<(u64, f64)>,
    keep: usize,
    /// Whether `push` appends to the file (false on data-parallel ranks other than 0).
    write: bool,
}

impl LossLog {
    /// Opens the log of `run_dir`, dropping lines after `step` (written by an interrupted run past
    /// its last checkpoint); `tail` is the loss tail of the checkpoint resumed from, `keep` how
    /// many losses the tail holds. Unless `write`, the file is neither cut nor appended to (a
    /// data-parallel rank other than 0 keeps only the tail).
    pub fn open(
        run_dir: &Path,
        step: u64,
        tail: Vec<(u64, f64)>,
        keep: usize,
        write: bool,
    ) -> Result<Self, TrainError> {
        let path = run_dir.join(LOSS_LOG);
        let text = if write {
            std::fs::read_to_string(&path).ok()
        } else {
            None
        };
        if let Some(text) = text {
            let kept: String = text
                .lines()
                .filter(|line| {
                    line.split(',')
                        .next()
                        .and_then(|s| s.parse::<u64>().ok())
                        .is_some_and(|s| s <= step)
                })
                .map(|line| format!("{line}\n"))
                .collect();
            // Through a temporary file and a rename: a run killed here keeps the whole log.
            tmd_model::output::write_file_atomic(&path, |w| w.write_all(kept.as_bytes()))
                .map_err(|e| TrainError::io(&path, e))?;
        }
        Ok(Self {
            path,
            tail,
            keep,
            write,
        })
    }

    /// A run starting from step 0 over an existing, non-empty loss log (a run stopped before its
    /// first checkpoint) moves that log aside to `loss.csv.old` (`.old-2`, ...) instead of
    /// truncating it: the log of a run that was not resumed is never cut.
    pub fn keep_unresumed(run_dir: &Path) -> Result<(), TrainError> {
        let path = run_dir.join(LOSS_LOG);
        if std::fs::metadata(&path)
            .map(|m| m.len() == 0)
            .unwrap_or(true)
        {
            return Ok(());
        }
        let mut target = run_dir.join(format!("{LOSS_LOG}.old"));
        let mut n = 2;
        while target.exists() {
            target = run_dir.join(format!("{LOSS_LOG}.old-{n}"));
            n += 1;
        }
        match std::fs::rename(&path, &target) {
            // Another rank of a data-parallel run moved it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            other => other.map_err(|e| TrainError::io(&path, e))?,
        }
        eprintln!(
            "{} had no checkpoint to resume from; its loss log was moved to {}",
            run_dir.display(),
            target.display()
        );
        Ok(())
    }

    /// Appends `step,loss` to the file and to the tail.
    pub fn push(&mut self, step: u64, loss: f64) -> Result<(), TrainError> {
        self.tail.push((step, loss));
        let excess = self.tail.len().saturating_sub(self.keep);
        self.tail.drain(..excess);
        if !self.write {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| TrainError::io(&self.path, e))?;
        writeln!(f, "{step},{loss}").map_err(|e| TrainError::io(&self.path, e))
    }

    /// The most recent losses, oldest first (at most `keep`).
    pub fn tail(&self) -> &[(u64, f64)] {
        &self.tail
    }
}

/// AdamW with the given moments, epsilon and decoupled weight decay, clipping the global gradient
/// norm to `grad_clip_norm` when it is positive (the optimizer of every stage).
pub fn adamw(
    beta1: f64,
    beta2: f64,
    epsilon: f64,
    weight_decay: f64,
    grad_clip_norm: f64,
) -> AdamWConfig {
    let config = AdamWConfig::new()
        .with_beta_1(beta1 as f32)
        .with_beta_2(beta2 as f32)
        .with_epsilon(epsilon as f32)
        .with_weight_decay(weight_decay as f32);
    if grad_clip_norm > 0.0 {
        config.with_grad_clipping(Some(GradientClippingConfig::Norm(grad_clip_norm as f32)))
    } else {
        config
    }
}

/// A progress bar over `total` steps positioned at `start`; hidden unless `show`.
pub fn progress_bar(show: bool, total: u64, start: u64) -> ProgressBar {
    let bar = if show {
        ProgressBar::new(total)
    } else {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
    };
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed}<{eta}] {msg}")
    {
        bar.set_style(style);
    }
    bar.set_position(start);
    bar
}

/// `Ok` if `found == expected`, else [`TrainError::Shape`] naming `what`.
pub fn check_shape(what: &str, expected: &[usize], found: &[usize]) -> Result<(), TrainError> {
    if expected == found {
        Ok(())
    } else {
        Err(TrainError::Shape {
            what: what.to_string(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        })
    }
}

/// `step_fn` over the thread's [`micro_batches`] micro-batches: the mean of their losses and
/// gradients (the loss and gradients of the whole batch, in the memory of one micro-batch).
fn accumulated_step<B, M, F>(
    model: &M,
    step: u64,
    step_fn: &mut F,
) -> Result<(f64, GradientsParams), TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    F: FnMut(&M, u64) -> Result<(f64, GradientsParams), TrainError>,
{
    let count = micro_batches();
    if count == 1 {
        return step_fn(model, step);
    }
    let mut sum = GradientsAccumulator::<M>::new();
    let mut total = 0.0;
    for index in 0..count {
        let (value, grads) = in_micro_batch(index, count, || step_fn(model, step))?;
        total += value;
        sum.accumulate::<B>(model, grads);
    }
    let mut grads = sum.grads();
    model.visit(&mut ScaleGrads::<B> {
        grads: &mut grads,
        factor: 1.0 / count as f64,
        _backend: std::marker::PhantomData,
    });
    Ok((total / count as f64, grads))
}

/// Multiplies the gradient of every float parameter by `factor`.
struct ScaleGrads<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    factor: f64,
    _backend: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for ScaleGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// FNV-1a hash (hex) of a settings key string: the `config_hash` a run resumes only from.
pub fn settings_hash(key: &str) -> String {
    format!("{:016x}", fnv1a(key))
}

/// 64-bit FNV-1a of a string (settings keys, parameter paths).
pub(crate) fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The learning rate of 1-based `step` under a linear warm-up of `warmup_steps` steps to `lr`.
pub fn warmup_lr(lr: f64, warmup_steps: u64, step: u64) -> f64 {
    if warmup_steps == 0 || step >= warmup_steps {
        lr
    } else {
        lr * step as f64 / warmup_steps as f64
    }
}

/// Where the cosine decay of [`scheduled_lr`] ends, as a fraction of the peak rate.
pub const DECAY_FLOOR: f64 = 0.1;

/// The learning rate of 1-based `step` in a run of `steps` steps: the linear warm-up of
/// [`warmup_lr`], constant `lr` up to `decay_start`, then a half cosine from `lr` at
/// `decay_start` down to `DECAY_FLOOR * lr` at `steps` (`decay_start == 0`: no decay).
pub fn scheduled_lr(lr: f64, warmup_steps: u64, decay_start: u64, steps: u64, step: u64) -> f64 {
    if decay_start == 0 || step <= decay_start || steps <= decay_start {
        return warmup_lr(lr, warmup_steps, step);
    }
    let progress = ((step - decay_start) as f64 / (steps - decay_start) as f64).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    lr * (DECAY_FLOOR + (1.0 - DECAY_FLOOR) * cosine)
}

/// The settings every training loop shares (each stage's config provides them).
#[derive(Debug, Clone, PartialEq)]
pub struct LoopSettings {
    /// Learning rate (constant after the warm-up).
    pub lr: f64,
    /// Linear warm-up: step `s <= warmup_steps` uses `lr * s / warmup_steps` (0: none). The
    /// [`loop_settings!`](crate::loop_settings) macro sets 0; a stage with a warm-up sets it after.
    pub warmup_steps: u64,
    /// Step after which the rate decays along a half cosine to `DECAY_FLOOR * lr` at `steps`
    /// ([`scheduled_lr`]; 0: constant). Set by stages that use it, like `warmup_steps`.
    pub decay_start: u64,
    /// Steps in total (a resumed run continues up to this number).
    pub steps: u64,
    /// Seed of the run (stored in each checkpoint).
    pub seed: u64,
    /// AdamW first-moment decay.
    pub beta1: f64,
    /// AdamW second-moment decay.
    pub beta2: f64,
    /// AdamW epsilon.
    pub epsilon: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 disables).
    pub grad_clip_norm: f64,
    /// Checkpoint every this many steps (and after the last); 0 writes none (benchmarks).
    pub checkpoint_every: u64,
    /// Checkpoints to keep (0 keeps all).
    pub keep_last: usize,
    /// Recent losses kept in each checkpoint.
    pub loss_tail: usize,
    /// Show a progress bar.
    pub progress: bool,
}

/// The [`LoopSettings`] of a stage config with the shared sections (`optimizer`:
/// [`OptimizerConfig`](super::OptimizerConfig), `checkpoint`:
/// [`CheckpointConfig`](super::CheckpointConfig)) and fields (`steps`, `seed`, `progress`).
#[macro_export]
macro_rules! loop_settings {
    ($c:expr) => {
        $crate::train::run::LoopSettings {
            lr: $c.optimizer.lr,
            warmup_steps: 0,
            decay_start: 0,
            steps: $c.steps,
            seed: $c.seed,
            beta1: $c.optimizer.beta1,
            beta2: $c.optimizer.beta2,
            epsilon: $c.optimizer.epsilon,
            weight_decay: $c.optimizer.weight_decay,
            grad_clip_norm: $c.optimizer.grad_clip_norm,
            checkpoint_every: $c.checkpoint.every,
            keep_last: $c.checkpoint.keep_last,
            loss_tail: $c.checkpoint.loss_tail,
            progress: $c.progress,
        }
    };
}

/// The loop of every stage: AdamW over `model`, resume from the newest valid checkpoint under
/// `run_dir` (whose settings hash must equal `hash`), then for each remaining step ask `step_fn`
/// for the step's loss value and gradients, stop on a non-finite loss, update, log and
/// checkpoint ([`after_step`]).
///
/// `step_fn(model, step)` may hand back the gradients of a part of `model` only (stage 2 updates
/// the student and the critics in turns).
///
/// # Errors
/// [`TrainError::NonFinite`] (the newest checkpoint on disk is the last good one), and whatever
/// `step_fn`, resuming or checkpointing return.
pub fn train_loop<B, M, F>(
    model: M,
    settings: &LoopSettings,
    run_dir: &Path,
    hash: String,
    model_name: &str,
    mut step_fn: F,
) -> Result<(M, PretrainReport), TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + Clone,
    F: FnMut(&M, u64) -> Result<(f64, burn::optim::GradientsParams), TrainError>,
{
    let s = settings;
    let device = model.devices().into_iter().next().unwrap_or_default();
    let parallel = super::data_parallel::current();
    let writer = parallel.as_ref().is_none_or(|p| p.is_writer());
    // Ids from parameter paths: equal in every process (a resume restores the checkpoint's own).
    let model = super::data_parallel::path_param_ids(model);
    let optimizer = adamw(
        s.beta1,
        s.beta2,
        s.epsilon,
        s.weight_decay,
        s.grad_clip_norm,
    )
    .init::<B, M>();
    // Rank 0 resumes first (it may move corrupt checkpoints aside and cuts the loss log); the
    // other ranks then read what it left.
    if let Some(p) = parallel.as_ref().filter(|_| !writer) {
        p.barrier::<B>("waiting for rank 0 to resume", &device)?;
    }
    let resumed = resume::<B, _, _>(
        run_dir,
        &hash,
        model_name,
        model,
        optimizer,
        &device,
        s.loss_tail,
        writer,
    )?;
    if let Some(p) = parallel.as_ref().filter(|_| writer) {
        p.barrier::<B>("waiting for rank 0 to resume", &device)?;
    }
    let (mut model, mut optimizer, mut report, mut log) = (
        resumed.model,
        resumed.optimizer,
        resumed.report,
        resumed.log,
    );
    // With a sharded optimizer: who owns which parameter, and this rank's part of a resumed state.
    let mut ownership = None;
    if let Some(p) = &parallel {
        model = p.sync_module::<B, M>(model)?;
        if optimizer_sharding() {
            let own = Ownership::of::<B, M>(&model, p.world());
            let mine = own.keep_owned_state(p.rank(), optimizer.to_record());
            optimizer = optimizer.load_record(mine);
            ownership = Some(own);
        }
    }
    let bar = progress_bar(s.progress && writer, s.steps, report.start_step);
    let policy = CheckpointPolicy {
        run_dir,
        model_name,
        seed: s.seed,
        config_hash: hash,
        every: s.checkpoint_every,
        final_step: s.steps,
        keep_last: s.keep_last,
        write: writer,
        sharded: parallel.clone().filter(|_| ownership.is_some()),
    };
    for step in report.start_step + 1..=s.steps {
        if let Some(p) = &parallel {
            p.inject_fault(step)?;
        }
        let (mut value, mut grads) = accumulated_step::<B, M, F>(&model, step, &mut step_fn)?;
        let mut updated = None;
        if let Some(p) = &parallel {
            // Every rank sees the global batch's loss, so all stop together on a non-finite one.
            value = p.mean_scalar::<B>(value, &device)?;
            grads = match &ownership {
                None => p.mean_grads::<B, M>(&model, grads)?,
                Some(own) => {
                    let (mine, all) = p.mean_grads_owned::<B, M>(&model, grads, own)?;
                    updated = Some(all);
                    mine
                }
            };
        }
        super::guard::check_finite(step, "loss", value)?;
        let lr = scheduled_lr(s.lr, s.warmup_steps, s.decay_start, s.steps, step);
        model = optimizer.step(lr, model, grads);
        if let (Some(p), Some(own), Some(updated)) = (&parallel, &ownership, &updated) {
            model = p.broadcast_updated::<B, M>(model, own, updated)?;
        }
        after_step::<B, _, _>(
            &policy,
            step,
            value,
            &model,
            &optimizer,
            &mut log,
            &bar,
            &mut report,
        )?;
    }
    bar.finish();
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::{scheduled_lr, warmup_lr, LossLog, DECAY_FLOOR, LOSS_LOG};

    #[test]
    fn warmup_rises_linearly_then_holds() {
        assert_eq!(warmup_lr(1e-3, 0, 1), 1e-3);
        assert!((warmup_lr(1e-3, 200, 1) - 5e-6).abs() < 1e-15);
        assert!((warmup_lr(1e-3, 200, 100) - 5e-4).abs() < 1e-15);
        assert_eq!(warmup_lr(1e-3, 200, 200), 1e-3);
        assert_eq!(warmup_lr(1e-3, 200, 5000), 1e-3);
    }

    #[test]
    fn decay_follows_a_half_cosine_to_the_floor() {
        // No decay: the warm-up schedule.
        assert_eq!(
            scheduled_lr(1e-3, 200, 0, 1000, 100),
            warmup_lr(1e-3, 200, 100)
        );
        assert_eq!(scheduled_lr(1e-3, 200, 0, 1000, 1000), 1e-3);
        // Constant up to decay_start, half-way down at the midpoint, the floor at the end.
        assert_eq!(scheduled_lr(1e-3, 200, 600, 1000, 600), 1e-3);
        let mid = scheduled_lr(1e-3, 200, 600, 1000, 800);
        assert!(
            (mid - 1e-3 * (1.0 + DECAY_FLOOR) / 2.0).abs() < 1e-15,
            "{mid}"
        );
        assert!((scheduled_lr(1e-3, 200, 600, 1000, 1000) - 1e-3 * DECAY_FLOOR).abs() < 1e-15);
        // Monotone on the way down.
        let rates: Vec<f64> = (600..=1000)
            .map(|s| scheduled_lr(1e-3, 0, 600, 1000, s))
            .collect();
        assert!(rates.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn only_the_writer_cuts_and_appends_the_loss_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOSS_LOG);
        let six: String = (1..=6).map(|s| format!("{s},0.5\n")).collect();
        std::fs::write(&path, &six).unwrap();
        // A rank other than 0, resumed at step 4: the file stays as it is, before and after a step.
        let mut other = LossLog::open(dir.path(), 4, vec![(4, 0.5)], 3, false).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), six);
        other.push(5, 0.25).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), six);
        assert_eq!(other.tail(), &[(4, 0.5), (5, 0.25)]);
        // The writer cuts the lines past step 4 and appends its own.
        let mut writer = LossLog::open(dir.path(), 4, vec![(4, 0.5)], 3, true).unwrap();
        writer.push(5, 0.25).unwrap();
        let expected: String =
            (1..=4).map(|s| format!("{s},0.5\n")).collect::<String>() + "5,0.25\n";
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
    }
}
