//! Stage 1, TM-MeanFlow adaptation of the flow head (TMD.md, "Stage 1").
//!
//! The student learns the average velocity of the head variable, `u(y_s, s, r)`, with the
//! MeanFlow identity `u = v - (s - r) du/ds` as target:
//!
//! ```text
//! x ~ data; x1 ~ N(0, I); t_i ~ Unif{t_1..t_M}; x_t = (1 - t_i) x + t_i x1
//! drop ~ Bernoulli(0.1): c' = negative prompt if drop else c
//! m = backbone(x_t, t_i, c')                  (not detached: the whole student trains)
//! y = x1 - x; y1 ~ N(0, I); s = shift_3(U[0.001, 0.999]); r = largest inner grid point <= s,
//!     and r = s with probability 0.75
//! y_s = (1 - s) y + s y1; v = y1 - y
//! unless drop: v = v_unc + w (v - v_unc), v_unc = u(y_s, s, s; backbone(x_t, t_i, neg)) [no grad]
//! du/ds: central finite difference along (v, 1), one-sided at the boundaries [no grad]
//! u_tgt = v - (s - r) du/ds; l = sum (u(y_s, s, r) - u_tgt)^2; loss = mean(l / sg(l + c))
//! ```
//!
//! [`Variant::Tm`] is the pure transition-matching ablation (`r = s` always, no derivative).
//! Every random draw of a step is a pure function of `(seed, step)` ([`crate::train::rng`]), and
//! the run's one seed (`train.seed`) also draws the data order ([`data_picks`]) and the flow head's
//! fresh parameters ([`init_student`]).

use std::path::Path;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use tmd_flowhead::TmdStudent;
use tmd_sampler::schedule::shift;
use tmd_sampler::TmdGrids;

use crate::train::data_parallel::{is_writer, on_rank_zero, try_seeded_init, Rows};
use crate::train::rng::{init_seed, picks, step_seed, uniform};
use crate::train::run::{check_shape, settings_hash, train_loop, PretrainReport};
use crate::train::sections::{CheckpointConfig, OptimizerConfig};
use crate::train::TrainError;

/// Name of the student inside a checkpoint directory.
pub const MODEL_NAME: &str = "student";

const STREAM_X1: u64 = 11;
const STREAM_Y1: u64 = 12;
const STREAM_OUTER: u64 = 13;
const STREAM_DROP: u64 = 14;
const STREAM_S: u64 = 15;
const STREAM_R: u64 = 16;

/// Which target the head learns.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// TM-MeanFlow: average velocities over `[r, s]` (the paper's choice).
    #[default]
    TmMeanflow,
    /// Pure transition matching: `r = s` always (the ablation "TM" of Table 6).
    Tm,
}

/// Settings of stage 1 (read with [`crate::train::load_stage_config`]).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct AdaptHeadConfig {
    /// TM-MeanFlow or pure TM.
    pub variant: Variant,
    /// Learning rate and AdamW settings ([`OptimizerConfig`]); `lr`: learning rate (paper: 3e-5 for
    /// 1.3B, 1e-5 for 14B).
    pub optimizer: OptimizerConfig,
    /// Clips per batch.
    pub batch: usize,
    /// Optimizer steps in total (paper: 3k).
    pub steps: u64,
    /// Seed of every random draw of the run.
    pub seed: u64,
    /// `M`: the outer grid whose points `t_1..t_M` training times are drawn from.
    pub outer_steps: usize,
    /// `N`: the inner grid that `r` snaps down to.
    pub inner_steps: usize,
    /// Shift of the outer grid (paper: 10).
    pub outer_shift: f64,
    /// Shift of the inner grid (paper: 10).
    pub inner_shift: f64,
    /// Shift of the head times `s = shift(U[0.001, 0.999], g)` (paper: 3).
    pub s_shift: f64,
    /// Probability that `r = s` (paper: 0.75).
    pub r_equals_s: f64,
    /// Guidance `w` of the CFG target (paper: 3).
    pub guidance: f64,
    /// Probability of training a sample on the negative prompt, unguided (paper: 0.1).
    pub cond_dropout: f64,
    /// Step `d` of the finite-difference derivative (paper: 5e-3).
    pub fd_delta: f64,
    /// `c` of the adaptive loss normalisation `l / sg(l + c)`; `None`: the number of elements of
    /// one sample's `y_s` (the paper's choice for 1.3B).
    pub norm_c: Option<f64>,
    /// When checkpoints are written and how many are kept ([`CheckpointConfig`]).
    pub checkpoint: CheckpointConfig,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Activation checkpointing ([`crate::train::activation_checkpointing`]): recompute each
    /// block's forward in the backward instead of keeping its activations (about one more forward
    /// pass of compute; needed for Wan-scale clips on one GPU). Not part of the resume hash: the
    /// gradients are the same up to floating-point order.
    pub checkpoint_activations: bool,
    /// Precision policy of every DiT pass of the run (teacher, student, critics):
    /// `"Bf16Matmul"` multiplies (linear layers, attention) in bf16 with f32 weights, optimizer
    /// state, norms and residual stream, as the original's autocast (mixed precision: on a GPU the
    /// bf16 tensor cores instead of f32 products); `"F32"` (default) runs everything in f32.
    /// Part of the resume hash when not `F32`.
    pub precision: tmd_model::dit::Precision,
}

impl Default for AdaptHeadConfig {
    fn default() -> Self {
        Self {
            variant: Variant::TmMeanflow,
            optimizer: OptimizerConfig {
                lr: 3e-5,
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                weight_decay: 0.01,
                grad_clip_norm: 1.0,
            },
            batch: 8,
            steps: 3000,
            seed: 0,
            outer_steps: 2,
            inner_steps: 4,
            outer_shift: 10.0,
            inner_shift: 10.0,
            s_shift: 3.0,
            r_equals_s: 0.75,
            guidance: 3.0,
            cond_dropout: 0.1,
            fd_delta: 5e-3,
            norm_c: None,
            checkpoint: CheckpointConfig {
                every: 500,
                keep_last: 3,
                loss_tail: 100,
            },
            progress: true,
            checkpoint_activations: false,
            precision: tmd_model::dit::Precision::F32,
        }
    }
}

impl AdaptHeadConfig {
    /// Hash of the settings that change the trajectory (all but `steps` and the bookkeeping).
    pub fn resume_hash(&self) -> String {
        settings_hash(&(format!(
            "{:?};lr={:e};batch={};seed={};M={};N={};go={:e};gi={:e};gs={:e};p={:e};w={:e};drop={:e};d={:e};c={:?};b1={:e};b2={:e};eps={:e};wd={:e};clip={:e}",
            self.variant, self.optimizer.lr, self.batch, self.seed, self.outer_steps, self.inner_steps,
            self.outer_shift, self.inner_shift, self.s_shift, self.r_equals_s, self.guidance,
            self.cond_dropout, self.fd_delta, self.norm_c, self.optimizer.beta1, self.optimizer.beta2, self.optimizer.epsilon,
            self.optimizer.weight_decay, self.optimizer.grad_clip_norm
        ) + &crate::distill::stage2::precision_hash_part(self.precision)))
    }
}

/// Lower and upper end of the head times (TMD.md: `U[0.001, 0.999]`, one-sided differences
/// outside).
pub const S_RANGE: (f64, f64) = (0.001, 0.999);

/// The head times of step `step`: `s = shift(U[0.001, 0.999], g)`, and `r` = the largest point of
/// `inner_grid` not above `s`, or `s` itself with probability `p_equal` (always for
/// [`Variant::Tm`]).
pub fn sample_s_r(config: &AdaptHeadConfig, step: u64, inner_grid: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (lo, hi) = S_RANGE;
    (0..config.batch as u64)
        .map(|i| {
            let s = shift(
                lo + (hi - lo) * uniform(config.seed, step, STREAM_S, i),
                config.s_shift,
            );
            let equal = config.variant == Variant::Tm
                || uniform(config.seed, step, STREAM_R, i) < config.r_equals_s;
            let r = if equal {
                s
            } else {
                inner_grid
                    .iter()
                    .copied()
                    .filter(|&g| g <= s)
                    .fold(0.0, f64::max)
            };
            (s, r)
        })
        .unzip()
}

/// `du/ds` along the tangent `(v, 1)` by finite differences, without gradients:
/// `[u(y + a+ v, s + a+) - u(y - a- v, s - a-)] / (a+ + a-)` per sample, with `a+ = a- = d`
/// (central) except near the ends: `a+ = 0` where `s + d > hi`, `a- = 0` where `s - d < lo` or
/// `s - d <= r` (one-sided). Samples with `r = s`, or with neither side available, get 0 (the
/// derivative is multiplied by `s - r` in the target).
///
/// `u(y, s)` evaluates the average velocity at head input `y` and per-sample times `s` (with the
/// sample's `r` fixed).
///
/// # Shapes
/// - `y_s`, `v`: `[batch, ...]`; `s`, `r`: `batch` values
/// - output: like `y_s`
///
/// # Errors
/// Whatever `u` returns.
pub fn finite_difference_du_ds<B: Backend, E>(
    u: impl Fn(Tensor<B, 5>, &[f64]) -> Result<Tensor<B, 5>, E>,
    y_s: Tensor<B, 5>,
    v: Tensor<B, 5>,
    s: &[f64],
    r: &[f64],
    delta: f64,
    (lo, hi): (f64, f64),
) -> Result<Tensor<B, 5>, E> {
    let b = s.len();
    let device = y_s.device();
    let (mut plus, mut minus) = (vec![0f64; b], vec![0f64; b]);
    for i in 0..b {
        if r[i] >= s[i] {
            continue;
        }
        if s[i] + delta <= hi {
            plus[i] = delta;
        }
        if s[i] - delta >= lo && s[i] - delta > r[i] {
            minus[i] = delta;
        }
    }
    let column = |a: &[f64]| {
        Tensor::<B, 1>::from_data(
            TensorData::new(a.iter().map(|&x| x as f32).collect(), [b]),
            &device,
        )
        .reshape([b, 1, 1, 1, 1])
    };
    let s_plus: Vec<f64> = s.iter().zip(&plus).map(|(s, a)| s + a).collect();
    let s_minus: Vec<f64> = s.iter().zip(&minus).map(|(s, a)| s - a).collect();
    let up = u(y_s.clone() + v.clone() * column(&plus), &s_plus)?;
    let down = u(y_s - v * column(&minus), &s_minus)?;
    let span: Vec<f64> = plus
        .iter()
        .zip(&minus)
        .map(|(p, m)| if p + m > 0.0 { 1.0 / (p + m) } else { 0.0 })
        .collect();
    Ok((up - down) * column(&span))
}

/// One stage-1 batch: clean latents and their text contexts, and the negative prompt's context.
#[derive(Debug, Clone)]
pub struct AdaptHeadBatch<B: Backend> {
    /// Clean latents `x`, `[batch, channels, frames, height, width]`.
    pub latents: Tensor<B, 5>,
    /// Text contexts, `[batch, text_len, text_dim]`.
    pub context: Tensor<B, 3>,
}

/// The parts of one stage-1 loss, for logs.
#[derive(Debug, Clone)]
pub struct AdaptHeadLoss<B: Backend> {
    /// The normalised loss that is minimised, `[1]`.
    pub loss: Tensor<B, 1>,
    /// Mean over the batch of the raw squared error `l`, `[1]`.
    pub raw: Tensor<B, 1>,
}

fn times<B: Backend>(values: &[f64], device: &B::Device) -> Tensor<B, 1> {
    Tensor::from_data(
        TensorData::new(values.iter().map(|&x| x as f32).collect(), [values.len()]),
        device,
    )
}

fn per_sample<B: Backend>(values: &[f64], device: &B::Device) -> Tensor<B, 5> {
    times::<B>(values, device).reshape([values.len(), 1, 1, 1, 1])
}

/// What one stage-1 step draws (this rank's rows), and the unguided head velocity `v`, before
/// any network runs.
struct Stage1Draws<B: AutodiffBackend> {
    /// Latent shape of this rank's rows.
    dims: [usize; 5],
    x_t: Tensor<B, 5>,
    t: Vec<f64>,
    /// Text contexts after condition dropout.
    context: Tensor<B, 3>,
    /// The negative prompt's context for every row.
    negatives: Tensor<B, 3>,
    drop: Vec<f64>,
    y_s: Tensor<B, 5>,
    y1: Tensor<B, 5>,
    v: Tensor<B::InnerBackend, 5>,
    s: Vec<f64>,
    r: Vec<f64>,
}

fn stage1_draws<B: AutodiffBackend>(
    batch: &AdaptHeadBatch<B>,
    negative: &Tensor<B, 3>,
    config: &AdaptHeadConfig,
    step: u64,
) -> Result<Stage1Draws<B>, TrainError> {
    // In a data-parallel run, this rank's rows of the global batch and of its draws.
    let global = batch.latents.dims();
    let rows = Rows::of(global[0])?;
    let x = rows.take(batch.latents.clone())?;
    let dims = x.dims();
    let b = dims[0];
    let device = x.device();
    let seed = config.seed;
    let grids = TmdGrids::new(
        config.outer_steps,
        config.inner_steps,
        config.outer_shift,
        config.inner_shift,
    )
    .map_err(|e| TrainError::Data {
        step,
        message: e.to_string(),
    })?;

    // Outer time and the backbone's input.
    let t: Vec<f64> = rows
        .indices()
        .map(|i| {
            let k = (uniform(seed, step, STREAM_OUTER, i) * config.outer_steps as f64) as usize;
            grids.outer[k.min(config.outer_steps - 1)]
        })
        .collect();
    let x1 = rows.gaussian::<B, 5>(global, step_seed(seed, step, STREAM_X1), &device);
    let t5 = per_sample::<B>(&t, &device);
    let x_t = x.clone() * (t5.clone().neg() + 1.0) + x1.clone() * t5;

    // Condition dropout.
    let drop: Vec<f64> = rows
        .indices()
        .map(|i| {
            f64::from(u8::from(
                uniform(seed, step, STREAM_DROP, i) < config.cond_dropout,
            ))
        })
        .collect();
    let context = rows.take(batch.context.clone())?;
    let [_, l, d] = context.dims();
    let negatives = negative.clone().expand([b, l, d]);
    let drop3 = times::<B>(&drop, &device).reshape([b, 1, 1]);
    let context = context * (drop3.clone().neg() + 1.0) + negatives.clone() * drop3;

    // Head variable.
    let y = x1 - x;
    let y1 = rows.gaussian::<B, 5>(global, step_seed(seed, step, STREAM_Y1), &device);
    let (s, r) = sample_s_r(config, step, &grids.inner);
    let (s, r) = (rows.pick(&s), rows.pick(&r));
    let s5 = per_sample::<B>(&s, &device);
    let y_s = y.clone() * (s5.clone().neg() + 1.0) + y1.clone() * s5;
    let v = (y1.clone() - y).inner();
    Ok(Stage1Draws {
        dims,
        x_t,
        t,
        context,
        negatives,
        drop,
        y_s,
        y1,
        v,
        s,
        r,
    })
}

/// The regression target `u_tgt` of a step, without gradients: the CFG velocity (with the
/// student on the negative prompt) minus `(s - r) du/ds` by finite differences at the
/// (untracked) backbone features `bb`.
fn stage1_target<B: AutodiffBackend>(
    inner: &TmdStudent<B::InnerBackend>,
    d: &Stage1Draws<B>,
    bb: &tmd_flowhead::Backbone<B::InnerBackend>,
    config: &AdaptHeadConfig,
) -> Result<Tensor<B::InnerBackend, 5>, TrainError> {
    let (s, r) = (&d.s, &d.r);
    let v = d.v.clone();
    let idev = v.device();
    let y_s_i = d.y_s.clone().inner();
    let y1_i = d.y1.clone().inner();
    let v = if config.guidance != 1.0 && d.drop.contains(&0.0) {
        let bb_neg = inner
            .backbone(
                d.x_t.clone().inner(),
                times::<B::InnerBackend>(&d.t, &idev),
                d.negatives.clone().inner(),
            )
            .map_err(student_err)?;
        let st = times::<B::InnerBackend>(s, &idev);
        let v_unc = inner
            .average_velocity(&bb_neg, y_s_i.clone(), st.clone(), st, y1_i.clone())
            .map_err(student_err)?;
        let guided = v_unc.clone() + (v.clone() - v_unc) * config.guidance;
        let keep = per_sample::<B::InnerBackend>(
            &d.drop.iter().map(|d| 1.0 - d).collect::<Vec<_>>(),
            &idev,
        );
        guided * keep.clone() + v * (keep.neg() + 1.0)
    } else {
        v
    };
    Ok(if s.iter().zip(r).any(|(s, r)| r < s) {
        let r_t = times::<B::InnerBackend>(r, &idev);
        let du_ds = finite_difference_du_ds(
            |y, s_at: &[f64]| {
                inner.average_velocity(
                    bb,
                    y,
                    times::<B::InnerBackend>(s_at, &idev),
                    r_t.clone(),
                    y1_i.clone(),
                )
            },
            y_s_i,
            v.clone(),
            s,
            r,
            config.fd_delta,
            S_RANGE,
        )
        .map_err(student_err)?;
        let gap: Vec<f64> = s.iter().zip(r).map(|(s, r)| s - r).collect();
        v - du_ds * per_sample::<B::InnerBackend>(&gap, &idev)
    } else {
        v
    })
}

/// `l = sum (u - u_tgt)^2` per sample and the normalised loss `mean(l / sg(l + c))`.
fn stage1_loss_parts<B: Backend>(
    u: Tensor<B, 5>,
    target: Tensor<B, 5>,
    config: &AdaptHeadConfig,
) -> AdaptHeadLoss<B> {
    let dims = u.dims();
    let b = dims[0];
    let numel: usize = dims[1..].iter().product();
    let l = (u - target)
        .powi_scalar(2)
        .reshape([b, numel])
        .sum_dim(1)
        .reshape([b]);
    let c = config.norm_c.unwrap_or(numel as f64);
    let weight = (l.clone().detach() + c).recip();
    AdaptHeadLoss {
        loss: (l.clone() * weight).mean(),
        raw: l.mean(),
    }
}

/// The TM-MeanFlow loss of one step (see the module docs). `negative` is the negative prompt's
/// context `[1, text_len, text_dim]`.
///
/// # Errors
/// Student shape errors.
pub fn tm_meanflow_loss<B: AutodiffBackend>(
    student: &TmdStudent<B>,
    batch: &AdaptHeadBatch<B>,
    negative: &Tensor<B, 3>,
    config: &AdaptHeadConfig,
    step: u64,
) -> Result<AdaptHeadLoss<B>, TrainError> {
    let d = stage1_draws(batch, negative, config, step)?;
    let device = d.x_t.device();
    let backbone = student
        .backbone(d.x_t.clone(), times::<B>(&d.t, &device), d.context.clone())
        .map_err(student_err)?;
    // Targets, without gradients.
    let target = stage1_target(&student.valid(), &d, &backbone.inner(), config)?;
    let target = Tensor::<B, 5>::from_inner(target);
    let u = student
        .average_velocity(
            &backbone,
            d.y_s.clone(),
            times::<B>(&d.s, &device),
            times::<B>(&d.r, &device),
            d.y1.clone(),
        )
        .map_err(student_err)?;
    Ok(stage1_loss_parts(u, target, config))
}

/// [`tm_meanflow_loss`] and the student's gradients with activation checkpointing
/// ([`crate::train::activation_checkpointing`]): the backbone and the head pass run block by
/// block without a graph, and each block is re-run tracked in the backward. Returns the loss
/// value and the gradients, equal to those of [`tm_meanflow_loss`]'s graph up to the order of
/// floating-point sums.
///
/// # Errors
/// Student shape errors.
pub fn tm_meanflow_grads_checkpointed<B: AutodiffBackend>(
    student: &TmdStudent<B>,
    batch: &AdaptHeadBatch<B>,
    negative: &Tensor<B, 3>,
    config: &AdaptHeadConfig,
    step: u64,
) -> Result<(f64, GradientsParams), TrainError> {
    use crate::train::activation_checkpointing::{
        backbone_segments, backward, chain_consts, forward, head_pass_segments, latent_slot,
        slot_latent, vjp, ParamGrads, WanChain,
    };
    let d = stage1_draws(batch, negative, config, step)?;
    let idev = d.v.device();
    let latent = d.dims;
    let t_i = times::<B::InnerBackend>(&d.t, &idev) * tmd_model::dit::NUM_TRAIN_TIMESTEPS;
    let passes = vec![(
        times::<B::InnerBackend>(&d.s, &idev),
        times::<B::InnerBackend>(&d.r, &idev),
    )];
    let consts = chain_consts(&student.dit, latent, t_i, passes);
    let chain_a = WanChain::student(student, consts, backbone_segments(student));
    let chain_b = chain_a.with_segments(head_pass_segments(student, 0, true));
    let inner = chain_a.inner_student().expect("a student chain").clone();

    // Backbone without a graph; the targets from its features.
    let (bb_out, tape_a) = forward(
        &chain_a,
        vec![
            latent_slot(d.x_t.clone().inner()),
            d.context.clone().inner(),
            latent_slot(d.y_s.clone().inner()),
            latent_slot(d.y1.clone().inner()),
        ],
    )?;
    let bb = tmd_flowhead::Backbone {
        m: bb_out[0].clone(),
        context: bb_out[2].clone(),
        rope: chain_a.consts().rope.clone(),
        grid: chain_a.consts().grid,
        latent_shape: latent,
    };
    let target = stage1_target(&inner, &d, &bb, config)?;
    drop((bb, inner));

    // Head pass, loss, and back.
    let (u, tape_b) = forward(&chain_b, bb_out)?;
    let mut grads = ParamGrads::new(student);
    let one = Tensor::<B::InnerBackend, 3>::ones([1, 1, 1], &idev);
    let (values, g_u) = vjp::<B>(
        u,
        |u| {
            let u = slot_latent(u[0].clone(), latent);
            let parts = stage1_loss_parts(u, Tensor::from_inner(target), config);
            Ok(vec![parts.loss.reshape([1, 1, 1])])
        },
        &[Some(one)],
        &mut grads,
    )?;
    let g_bb = backward(&chain_b, tape_b, g_u, &mut grads)?;
    backward(&chain_a, tape_a, g_bb, &mut grads)?;
    let value: f64 = values[0].clone().into_scalar().elem();
    Ok((value, grads.into_grads()))
}

fn student_err(e: tmd_flowhead::FlowHeadError) -> TrainError {
    TrainError::Data {
        step: 0,
        message: e.to_string(),
    }
}

/// Runs stage 1 on `student`, checkpointing under `run_dir` and resuming from its newest valid
/// checkpoint. `batches(step)` gives the batch of step `step` (1-based), a function of `step`
/// only for exact resume.
///
/// # Errors
/// [`TrainError::NonFinite`] if the loss or, at a checkpoint, a parameter is NaN/Inf (the newest
/// checkpoint on disk is the last good one); shape, data, I/O and checkpoint errors.
pub fn adapt_head<B, F>(
    student: TmdStudent<B>,
    config: &AdaptHeadConfig,
    run_dir: &Path,
    negative: Tensor<B, 3>,
    mut batches: F,
) -> Result<(TmdStudent<B>, PretrainReport), TrainError>
where
    B: AutodiffBackend,
    F: FnMut(u64) -> Result<AdaptHeadBatch<B>, TrainError>,
{
    train_loop(
        student,
        &crate::loop_settings!(config),
        run_dir,
        config.resume_hash(),
        MODEL_NAME,
        |student, step| {
            let batch = batches(step)?;
            let dims = batch.latents.dims();
            check_shape(
                "latents",
                &[
                    config.batch,
                    student.dit.in_channels,
                    dims[2],
                    dims[3],
                    dims[4],
                ],
                &dims,
            )?;
            if config.checkpoint_activations {
                return tm_meanflow_grads_checkpointed(student, &batch, &negative, config, step)
                    .map_err(|e| with_step(e, step));
            }
            let parts = tm_meanflow_loss(student, &batch, &negative, config, step)
                .map_err(|e| with_step(e, step))?;
            let value: f64 = parts.loss.clone().into_scalar().elem();
            Ok((
                value,
                GradientsParams::from_grads(parts.loss.backward(), student),
            ))
        },
    )
}

fn with_step(e: TrainError, step: u64) -> TrainError {
    match e {
        TrainError::Data { message, .. } => TrainError::Data { step, message },
        other => other,
    }
}

/// The head settings of a recipe file (the fields of [`tmd_flowhead::FlowHeadConfig`]).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct HeadSettings {
    /// `H`, head blocks (paper: 5 of the 1.3B model's 30).
    pub head_blocks: usize,
    /// `gated` (default) or `concat`.
    pub fusion: tmd_flowhead::Fusion,
    /// Initial gate logit of the gated fusion.
    pub gate_logit_init: f64,
    /// Hidden width of the gated fusion's MLP, as a multiple of the model width.
    pub fusion_mlp_ratio: f64,
    /// Standard deviation of the patch half of the concat fusion's initial weight.
    pub concat_init_std: f64,
}

impl Default for HeadSettings {
    fn default() -> Self {
        let c = tmd_flowhead::FlowHeadConfig::new();
        Self {
            head_blocks: c.head_blocks,
            fusion: c.fusion,
            gate_logit_init: c.gate_logit_init,
            fusion_mlp_ratio: c.fusion_mlp_ratio,
            concat_init_std: c.concat_init_std,
        }
    }
}

impl HeadSettings {
    /// The model-side configuration.
    pub fn config(&self) -> tmd_flowhead::FlowHeadConfig {
        tmd_flowhead::FlowHeadConfig::new()
            .with_head_blocks(self.head_blocks)
            .with_fusion(self.fusion)
            .with_gate_logit_init(self.gate_logit_init)
            .with_fusion_mlp_ratio(self.fusion_mlp_ratio)
            .with_concat_init_std(self.concat_init_std)
    }
}

/// Everything `cargo xtask adapt-head` reads from its config file: `[head]`, `[train]`,
/// `[sampling]` (the student's default `M`, `N`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default)]
pub struct AdaptHeadRecipe {
    /// The flow head.
    pub head: HeadSettings,
    /// Stage-1 training.
    pub train: AdaptHeadConfig,
    /// Sampling defaults written with the student.
    pub sampling: tmd_flowhead::StudentDefaults,
}

impl AdaptHeadRecipe {
    /// A note when the written student's default grids (`[sampling]`) are shifted otherwise than
    /// the grids it is trained on (`[train]`): `--set train.outer_shift=2` alone leaves the
    /// student sampling at `sampling.outer_shift`. `None` when the shifts agree. (`M` and `N`
    /// may differ on purpose: stage 1 trains `N` = 4 snapping for a student sampled with 2.)
    pub fn sampling_shift_mismatch(&self) -> Option<String> {
        let pairs = [
            (
                "outer_shift",
                self.train.outer_shift,
                self.sampling.outer_shift,
            ),
            (
                "inner_shift",
                self.train.inner_shift,
                self.sampling.inner_shift,
            ),
        ];
        let differ: Vec<String> = pairs
            .iter()
            .filter(|(_, train, sampling)| train != sampling)
            .map(|(key, train, sampling)| {
                format!("train.{key} = {train} but sampling.{key} = {sampling}")
            })
            .collect();
        (!differ.is_empty()).then(|| {
            format!(
                "{}: the written student samples by default on grids it was not trained on \
                 (set the sampling key too to make them agree)",
                differ.join(", ")
            )
        })
    }
}

/// Copies the model directory `from` to `to` (every file but a `student/` folder), so that a
/// student directory carries its teacher.
///
/// # Errors
/// I/O errors naming the path.
pub fn copy_model_dir(from: &Path, to: &Path) -> Result<(), TrainError> {
    if from == to {
        return Ok(());
    }
    fn walk(from: &Path, to: &Path, top: bool) -> Result<(), TrainError> {
        std::fs::create_dir_all(to).map_err(|e| TrainError::io(to, e))?;
        for entry in std::fs::read_dir(from).map_err(|e| TrainError::io(from, e))? {
            let entry = entry.map_err(|e| TrainError::io(from, e))?;
            let path = entry.path();
            let name = entry.file_name();
            if top && name == tmd_flowhead::student_dir::STUDENT_DIR {
                continue;
            }
            if path.is_dir() {
                walk(&path, &to.join(&name), false)?;
            } else {
                std::fs::copy(&path, to.join(&name)).map_err(|e| TrainError::io(&path, e))?;
            }
        }
        Ok(())
    }
    walk(from, to, true)
}

/// Stage 1 end to end: copy the teacher directory to `out`, build the student from its DiT, train
/// it on the clips of the latent cache `data` (their captions through the teacher's text encoder,
/// the negative prompt from the directory's defaults), checkpoint under `run_dir`, and write the
/// student into `out` ([`tmd_flowhead::save_student`]).
///
/// # Errors
/// Missing or corrupt inputs (named), training errors.
pub fn run_adapt_head<B: AutodiffBackend>(
    recipe: &AdaptHeadRecipe,
    teacher: &Path,
    data: &Path,
    run_dir: &Path,
    out: &Path,
    source: &str,
    device: &B::Device,
) -> Result<(TmdStudent<B>, PretrainReport), TrainError> {
    let cache = crate::latent_cache::LatentCache::open(data)?;
    if cache.is_empty() {
        return Err(TrainError::Data {
            step: 0,
            message: format!("{} holds no clips", data.display()),
        });
    }
    on_rank_zero::<B::InnerBackend>(device, || copy_model_dir(teacher, out))?;
    let dir = tmd_model::model_dir::ModelDir::open(out)?;
    let text = dir.load_text_encoder::<B::InnerBackend>(device)?;
    let negative = text.encode_cached_batch(&[dir.defaults().negative_prompt.as_str()], true)?;
    let config = &recipe.train;
    let teacher = dir
        .load_transformer::<B>(device)?
        .with_precision(config.precision);
    let student = init_student(teacher, recipe, device)?;
    let (student, report) = adapt_head(
        student,
        config,
        run_dir,
        Tensor::from_inner(negative),
        |step| {
            let picks = data_picks(config, step, cache.len());
            let (latents, captions) = cache.batch::<B::InnerBackend>(&picks, device);
            let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
            let context = text.encode_cached_batch(&refs, false)?;
            Ok(AdaptHeadBatch {
                latents: Tensor::from_inner(latents),
                context: Tensor::from_inner(context),
            })
        },
    )?;
    if !is_writer() {
        return Ok((student, report));
    }
    tmd_flowhead::save_student(
        out,
        &student,
        &tmd_flowhead::StudentManifest {
            method: tmd_flowhead::StudentMethod::Tmd {
                head: recipe.head.config(),
            },
            defaults: recipe.sampling.clone(),
            source: source.to_string(),
        },
    )
    .map_err(student_err)?;
    Ok((student, report))
}

/// The student of stage 1: `teacher` with the flow head of `recipe.head`, its fresh parameters
/// drawn from the run's seed (`train.seed`, stream of its own), the same on any number of ranks.
///
/// # Errors
/// A head that does not fit the teacher.
pub fn init_student<B: AutodiffBackend>(
    teacher: tmd_model::dit::WanModel<B>,
    recipe: &AdaptHeadRecipe,
    device: &B::Device,
) -> Result<TmdStudent<B>, TrainError> {
    try_seeded_init(|| {
        B::seed(device, init_seed(recipe.train.seed, STREAM_INIT));
        TmdStudent::from_teacher(teacher, &recipe.head.config())
    })
    .map_err(student_err)
}

/// The data order of stage 1: the indices (of `len` clips) of step `step`'s batch, a function of
/// the run's seed and the step only.
pub fn data_picks(config: &AdaptHeadConfig, step: u64, len: usize) -> Vec<usize> {
    picks(config.seed, step, STREAM_DATA, config.batch, len)
}

const STREAM_DATA: u64 = 17;
const STREAM_INIT: u64 = 18;
