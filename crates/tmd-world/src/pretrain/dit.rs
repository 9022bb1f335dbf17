//! The Wan flow-matching objective for the DiT and the loop that pretrains the bundled teacher.
//!
//! Wan conventions (WAN21.md, "Schedule"): time `t` in `[0, 1]` runs from data (`t = 0`) to noise
//! (`t = 1`), `x_t = (1 - t) x0 + t eps`, the network predicts the velocity `v = eps - x0`, and it
//! sees the timestep as `1000 t`. Training times are drawn as `shift(u, g)` with `u ~ U(0, 1)`,
//! the same time shift the samplers use ([`tmd_sampler::schedule::shift`]).
//!
//! Every random draw of step `s` (times, noise, text dropout) is a pure function of
//! `(seed, s)` ([`tmd_distill::train::rng`]), and the batch of step `s` is asked of the caller by its
//! step number, so a resumed run repeats an uninterrupted one bit for bit.

use std::path::Path;

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use tmd_model::dit::WanModel;
use tmd_sampler::noise::gaussian;
use tmd_sampler::schedule::{shift, NUM_TRAIN_TIMESTEPS};

use tmd_distill::train::data_parallel::shard_batch;
use tmd_distill::train::rng::{step_seed, uniform};
use tmd_distill::train::run::{check_shape, settings_hash, train_loop};
pub use tmd_distill::train::run::{PretrainReport, LOSS_LOG, OPTIMIZER_NAME};
use tmd_distill::train::TrainError;
use tmd_distill::train::{CheckpointConfig, OptimizerConfig};

/// Random streams of one step (see [`tmd_distill::train::rng`]).
const STREAM_TIME: u64 = 1;
const STREAM_NOISE: u64 = 2;
const STREAM_DROPOUT: u64 = 3;

/// Name of the DiT inside a checkpoint directory.
pub const MODEL_NAME: &str = "dit";

/// Settings of DiT pretraining (read with [`tmd_distill::train::load_stage_config`]).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct DitPretrainConfig {
    /// Learning rate and AdamW settings ([`OptimizerConfig`]); `lr`: learning rate, constant. 2e-4:
    /// a small DiT trained from scratch tolerates a larger rate than the 1e-5 .. 1e-4 used for
    /// fine-tuning the released models.
    pub optimizer: OptimizerConfig,
    /// Clips per batch; the loop checks that the data source delivers this many.
    pub batch: usize,
    /// Optimizer steps in total (a resumed run continues up to this number).
    pub steps: u64,
    /// Linear warm-up of the rate over the first steps (0: none). Not part of the resume hash
    /// (like `decay_start`, it only shapes the schedule): a batch of hundreds of clips at a rate
    /// of several 1e-4 from a fresh DiT wants one.
    pub warmup_steps: u64,
    /// Step after which the rate decays along a half cosine to a small floor at `steps`
    /// ([`scheduled_lr`](tmd_distill::train::run::scheduled_lr); 0: constant). Not part of the resume
    /// hash: a run trained at a constant rate can be continued with a decay.
    pub decay_start: u64,
    /// Time shift `g` of the training times `t = shift(u, g)`. 2.0: the bundled world's latents are
    /// small (a few thousand values), so less shift towards noise than Wan's 5.0 at 480p.
    pub shift: f64,
    /// Seed of every random draw of the run (times, noise, text dropout).
    pub seed: u64,
    /// Probability of replacing a sample's text context by the negative/empty prompt's, so the
    /// model also learns the unconditional velocity that classifier-free guidance needs. 0.1 is the
    /// usual choice (Imagen, SD).
    pub text_dropout: f64,
    /// When checkpoints are written and how many are kept ([`CheckpointConfig`]).
    pub checkpoint: CheckpointConfig,
    /// Show an indicatif progress bar on stderr.
    pub progress: bool,
    /// Activation checkpointing ([`tmd_distill::train::activation_checkpointing`]): recompute each
    /// block's forward in the backward instead of keeping its activations. Not part of the resume
    /// hash: the gradients are the same up to floating-point order.
    pub checkpoint_activations: bool,
}

impl Default for DitPretrainConfig {
    fn default() -> Self {
        Self {
            optimizer: OptimizerConfig {
                lr: 2e-4,
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                weight_decay: 0.01,
                grad_clip_norm: 1.0,
            },
            batch: 8,
            steps: 20_000,
            warmup_steps: 0,
            decay_start: 0,
            shift: 2.0,
            seed: 0,
            text_dropout: 0.1,
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

impl DitPretrainConfig {
    /// Hash of the settings that change the trajectory (everything except `steps`,
    /// `warmup_steps`, `decay_start`, `checkpoint.*`, `progress`): a run resumes only from a
    /// checkpoint with the same hash.
    pub fn resume_hash(&self) -> String {
        settings_hash(&format!(
            "lr={:e};batch={};shift={:e};seed={};text_dropout={:e};beta1={:e};beta2={:e};eps={:e};wd={:e};clip={:e}",
            self.optimizer.lr,
            self.batch,
            self.shift,
            self.seed,
            self.text_dropout,
            self.optimizer.beta1,
            self.optimizer.beta2,
            self.optimizer.epsilon,
            self.optimizer.weight_decay,
            self.optimizer.grad_clip_norm
        ))
    }
}

/// One training batch.
#[derive(Debug, Clone)]
pub struct DitBatch<B: Backend> {
    /// Clean latents `x0`, `[batch, channels, frames, height, width]`.
    pub latents: Tensor<B, 5>,
    /// Text encoder output, `[batch, text_len, text_dim]`.
    pub context: Tensor<B, 3>,
}

/// Training times of step `step`: `t_i = shift(u_i, g)` with `u_i` uniform in `[0, 1)`, a pure
/// function of `(seed, step, i)`.
pub fn sample_timesteps(seed: u64, step: u64, batch: usize, g: f64) -> Vec<f64> {
    (0..batch as u64)
        .map(|i| shift(uniform(seed, step, STREAM_TIME, i), g))
        .collect()
}

/// The flow-matching loss `mean((dit(x_t, 1000 t, ctx) - (eps - x0))^2)` with
/// `x_t = (1 - t) x0 + t eps`.
///
/// # Shapes
/// - `x0`, `noise`: `[batch, channels, frames, height, width]`
/// - `context`: `[batch, text_len, text_dim]`
/// - `t`: `[batch]`, in `[0, 1]`
/// - returns `[1]`
pub fn flow_matching_loss<B: Backend>(
    dit: &WanModel<B>,
    x0: Tensor<B, 5>,
    context: Tensor<B, 3>,
    t: Tensor<B, 1>,
    noise: Tensor<B, 5>,
) -> Result<Tensor<B, 1>, TrainError> {
    let [b, ..] = x0.dims();
    let t5 = t.clone().reshape([b, 1, 1, 1, 1]);
    let x_t = x0.clone() * (t5.clone().neg() + 1.0) + noise.clone() * t5;
    let target = noise - x0;
    let prediction = dit.forward(x_t, t * NUM_TRAIN_TIMESTEPS, context)?;
    Ok((prediction - target).powi_scalar(2).mean())
}

/// [`flow_matching_loss`] and the DiT's gradients with activation checkpointing
/// ([`tmd_distill::train::activation_checkpointing::dit_loss`]).
///
/// # Errors
/// Model shape errors.
pub fn flow_matching_grads_checkpointed<B: AutodiffBackend>(
    dit: &WanModel<B>,
    x0: Tensor<B, 5>,
    context: Tensor<B, 3>,
    t: Tensor<B, 1>,
    noise: Tensor<B, 5>,
) -> Result<(f64, GradientsParams), TrainError> {
    let [b, ..] = x0.dims();
    let (x0, noise, t) = (x0.inner(), noise.inner(), t.inner());
    let t5 = t.clone().reshape([b, 1, 1, 1, 1]);
    let x_t = x0.clone() * (t5.clone().neg() + 1.0) + noise.clone() * t5;
    let target = noise - x0;
    let mut params = tmd_distill::train::activation_checkpointing::ParamGrads::new(dit);
    let (value, _) = tmd_distill::train::activation_checkpointing::dit_loss(
        dit,
        x_t,
        t * NUM_TRAIN_TIMESTEPS,
        context.inner(),
        |prediction| {
            Ok((prediction - Tensor::from_inner(target))
                .powi_scalar(2)
                .mean())
        },
        &mut params,
    )?;
    Ok((value, params.into_grads()))
}

/// Replaces the context of each sample with `negative` with probability `p` (a pure function of
/// `(seed, step, i)`).
///
/// # Shapes
/// - `context`: `[batch, text_len, text_dim]`, `negative`: `[1, text_len, text_dim]`
fn drop_text<B: Backend>(
    context: Tensor<B, 3>,
    negative: &Tensor<B, 3>,
    p: f64,
    seed: u64,
    step: u64,
) -> Tensor<B, 3> {
    let [b, l, d] = context.dims();
    let keep: Vec<f32> = (0..b as u64)
        .map(|i| {
            if uniform(seed, step, STREAM_DROPOUT, i) < p {
                0.0
            } else {
                1.0
            }
        })
        .collect();
    if keep.iter().all(|&k| k == 1.0) {
        return context;
    }
    let keep =
        Tensor::<B, 1>::from_data(TensorData::new(keep, [b]), &context.device()).reshape([b, 1, 1]);
    let negative = negative.clone().expand([b, l, d]);
    context * keep.clone() + negative * (keep.neg() + 1.0)
}

/// Pretrains `model` with the flow-matching objective, checkpointing under `run_dir` and resuming
/// from its newest valid checkpoint if there is one.
///
/// `batches(step)` gives the batch of step `step` (1-based); for exact resume it must depend on
/// `step` only. `negative` is the text encoding of the empty/negative prompt used for text
/// dropout (`[1, text_len, text_dim]`; required when `config.text_dropout > 0`).
///
/// # Errors
/// [`TrainError::NonFinite`] if the loss or, at a checkpoint, a parameter is NaN/Inf: the run
/// stops and the newest checkpoint on disk is the last good one. Also shape, data, I/O,
/// checkpoint and config-mismatch errors.
pub fn pretrain_dit<B, F>(
    model: WanModel<B>,
    config: &DitPretrainConfig,
    run_dir: &Path,
    negative: Option<Tensor<B, 3>>,
    mut batches: F,
) -> Result<(WanModel<B>, PretrainReport), TrainError>
where
    B: AutodiffBackend,
    F: FnMut(u64) -> Result<DitBatch<B>, TrainError>,
{
    if config.text_dropout > 0.0 && negative.is_none() {
        return Err(TrainError::Data {
            step: 1,
            message: "text_dropout > 0 needs the negative prompt's context".into(),
        });
    }
    let device = model.patch_embedding.weight.device();
    let mut settings = tmd_distill::loop_settings!(config);
    settings.decay_start = config.decay_start;
    settings.warmup_steps = config.warmup_steps;
    train_loop(
        model,
        &settings,
        run_dir,
        config.resume_hash(),
        MODEL_NAME,
        |model, step| {
            let DitBatch { latents, context } = batches(step)?;
            let dims = latents.dims();
            check_shape(
                "latents",
                &[config.batch, model.in_channels, dims[2], dims[3], dims[4]],
                &dims,
            )?;
            check_shape(
                "context",
                &[config.batch, model.text_len, model.text_dim],
                &context.dims(),
            )?;
            let context = match &negative {
                Some(neg) if config.text_dropout > 0.0 => {
                    check_shape(
                        "negative context",
                        &[1, model.text_len, model.text_dim],
                        &neg.dims(),
                    )?;
                    drop_text(context, neg, config.text_dropout, config.seed, step)
                }
                _ => context,
            };
            let times = sample_timesteps(config.seed, step, config.batch, config.shift);
            let t = Tensor::<B, 1>::from_data(
                TensorData::new(times.iter().map(|&x| x as f32).collect(), [config.batch]),
                &device,
            );
            let noise = gaussian::<B, 5>(dims, step_seed(config.seed, step, STREAM_NOISE), &device);
            // Drawn for the global batch above, so a data-parallel rank's slice is what one
            // process would have used for those rows.
            let (latents, context) = (shard_batch(latents)?, shard_batch(context)?);
            let (t, noise) = (shard_batch(t)?, shard_batch(noise)?);
            if config.checkpoint_activations {
                return flow_matching_grads_checkpointed(model, latents, context, t, noise);
            }
            let loss = flow_matching_loss(model, latents, context, t, noise)?;
            let value: f64 = loss.clone().into_scalar().elem();
            Ok((value, GradientsParams::from_grads(loss.backward(), model)))
        },
    )
}
