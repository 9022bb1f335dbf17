//! The KD warm-up of the 1-step DMD2-v baseline (TMD.md, "Stage 2": "regression on 10k teacher
//! noise -> data pairs, used only for 1-step DMD2-v, not for TMD").
//!
//! The student learns, in one pass from the teacher's own initial noise, the teacher's sample:
//!
//! ```text
//! loss = mean (g(eps, t_M) - x_teacher(eps))^2,  g(x_t, t) = x_t - t v(x_t, t)
//! ```
//!
//! with `t_M` the top of the outer grid (0.999) and the pairs from [`crate::teacher_data`].

use std::path::Path;

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use tmd_model::dit::WanModel;

use super::generator::dmd_generate;
use crate::train::data_parallel::Rows;
use crate::train::guard::check_finite;
use crate::train::run::{settings_hash, train_loop, PretrainReport};
use crate::train::sections::{CheckpointConfig, OptimizerConfig};
use crate::train::TrainError;

/// Name of the student inside a KD checkpoint directory.
pub const MODEL_NAME: &str = "kd";

/// Settings of the KD warm-up.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct KdConfig {
    /// Iterations (0 skips the warm-up; the paper does not give its length).
    pub steps: u64,
    /// Learning rate and AdamW settings ([`OptimizerConfig`]); `lr`: learning rate (inferred: stage
    /// 2's).
    pub optimizer: OptimizerConfig,
    /// Pairs per batch.
    pub batch: usize,
    /// Seed of the batch draws: the run's one seed, `train.seed` of the recipe
    /// ([`super::run::DistillRecipe::kd_config`]); not a key of its own (`kd.seed` is an error).
    #[serde(skip)]
    pub seed: u64,
    /// When checkpoints are written and how many are kept ([`CheckpointConfig`]).
    pub checkpoint: CheckpointConfig,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Activation checkpointing ([`crate::train::activation_checkpointing`]): recompute each
    /// block's forward in the backward instead of keeping its activations. Not part of the resume
    /// hash: the gradients are the same up to floating-point order.
    pub checkpoint_activations: bool,
}

impl Default for KdConfig {
    fn default() -> Self {
        Self {
            steps: 0,
            optimizer: OptimizerConfig {
                lr: 1e-5,
                beta1: 0.9,
                beta2: 0.99,
                epsilon: 1e-8,
                weight_decay: 0.01,
                grad_clip_norm: 1.0,
            },
            batch: 8,
            seed: 0,
            checkpoint: CheckpointConfig {
                every: 500,
                keep_last: 3,
                loss_tail: 100,
            },
            progress: true,
            checkpoint_activations: false,
        }
    }
}

impl KdConfig {
    /// Hash of the settings that change the trajectory.
    pub fn resume_hash(&self) -> String {
        settings_hash(&format!(
            "kd;lr={:e};batch={};seed={};b1={:e};b2={:e};eps={:e};wd={:e};clip={:e}",
            self.optimizer.lr,
            self.batch,
            self.seed,
            self.optimizer.beta1,
            self.optimizer.beta2,
            self.optimizer.epsilon,
            self.optimizer.weight_decay,
            self.optimizer.grad_clip_norm
        ))
    }
}

/// One batch of teacher pairs.
#[derive(Debug, Clone)]
pub struct KdBatch<B: Backend> {
    /// The teacher's initial noise, `[batch, c, f, h, w]`.
    pub noise: Tensor<B, 5>,
    /// The teacher's sample from it, `[batch, c, f, h, w]`.
    pub target: Tensor<B, 5>,
    /// Prompt embeddings, `[batch, l, text_dim]`.
    pub context: Tensor<B, 3>,
}

/// The regression loss of one batch: the student's one-step sample from the noise at `t_top`
/// against the teacher's.
///
/// # Errors
/// Model shape errors.
pub fn kd_loss<B: Backend>(
    student: &WanModel<B>,
    batch: &KdBatch<B>,
    t_top: f64,
) -> Result<Tensor<B, 1>, TrainError> {
    // In a data-parallel run, this rank's rows of the pairs.
    let rows = Rows::of(batch.noise.dims()[0])?;
    let noise = rows.take(batch.noise.clone())?;
    let t = Tensor::<B, 1>::full([rows.len()], t_top, &noise.device());
    let x0 = dmd_generate(student, noise, t, rows.take(batch.context.clone())?)?;
    Ok((x0 - rows.take(batch.target.clone())?)
        .powi_scalar(2)
        .mean())
}

/// [`kd_loss`] and the student's gradients with activation checkpointing
/// ([`crate::train::activation_checkpointing::dit_loss`]).
///
/// # Errors
/// Model shape errors.
pub fn kd_grads_checkpointed<B: AutodiffBackend>(
    student: &WanModel<B>,
    batch: &KdBatch<B>,
    t_top: f64,
) -> Result<(f64, GradientsParams), TrainError> {
    let rows = Rows::of(batch.noise.dims()[0])?;
    let noise = rows.take(batch.noise.clone())?.inner();
    let target = rows.take(batch.target.clone())?.inner();
    let context = rows.take(batch.context.clone())?.inner();
    let t = Tensor::<B::InnerBackend, 1>::full([rows.len()], t_top, &noise.device());
    let mut params = crate::train::activation_checkpointing::ParamGrads::new(student);
    let (value, _) = crate::train::activation_checkpointing::dit_loss(
        student,
        noise.clone(),
        t.clone() * tmd_model::dit::NUM_TRAIN_TIMESTEPS,
        context,
        |v| {
            let x0 = super::x0_from_velocity(Tensor::from_inner(noise), v, Tensor::from_inner(t));
            Ok((x0 - Tensor::from_inner(target)).powi_scalar(2).mean())
        },
        &mut params,
    )?;
    Ok((value, params.into_grads()))
}

/// Runs the warm-up, checkpointing under `run_dir` and resuming from the newest valid
/// checkpoint; `batches(step)` gives the pairs of iteration `step` (a function of `step` only,
/// for exact resume).
///
/// # Errors
/// [`TrainError::NonFinite`] on a NaN/Inf loss (the newest checkpoint is the last good one);
/// shape, data, I/O and checkpoint errors.
pub fn kd_warmup<B, F>(
    student: WanModel<B>,
    config: &KdConfig,
    t_top: f64,
    run_dir: &Path,
    mut batches: F,
) -> Result<(WanModel<B>, PretrainReport), TrainError>
where
    B: AutodiffBackend,
    F: FnMut(u64) -> Result<KdBatch<B>, TrainError>,
{
    let settings = crate::loop_settings!(config);
    let hash = settings_hash(&format!("{};t={t_top:e}", config.resume_hash()));
    train_loop(
        student,
        &settings,
        run_dir,
        hash,
        MODEL_NAME,
        |student, step| {
            let batch = batches(step)?;
            if config.checkpoint_activations {
                let (value, grads) = kd_grads_checkpointed(student, &batch, t_top)?;
                check_finite(step, "KD loss", value)?;
                return Ok((value, grads));
            }
            let loss = kd_loss(student, &batch, t_top)?;
            let value: f64 = loss.clone().into_scalar().elem();
            check_finite(step, "KD loss", value)?;
            let mut grads = loss.backward();
            Ok((value, GradientsParams::from_module(&mut grads, student)))
        },
    )
}
