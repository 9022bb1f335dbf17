//! The stage-2 loop, DMD2-v with flow-head rollout (TMD.md, "Stage 2"), and the DMD2-v baseline.
//!
//! One iteration in `student_every` updates the student with `VSD + 0.03 * GAN`; the others update
//! the critics: the fake score (`x0` denoising score matching on the student's samples) and the
//! discriminator (softplus loss on teacher features of noisy real and noisy fake samples, noised
//! with the same `t` and noise). The student, fake score and discriminator live in one
//! [`Stage2Models`] with one AdamW: each update hands the optimizer only its own side's gradients,
//! so a checkpoint holds all three models and the optimizer state, and resume is exact.

use std::cell::OnceCell;
use std::path::Path;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use tmd_flowhead::TmdStudent;
use tmd_model::dit::{Precision, WanModel};
use tmd_model::weights::with_fresh_param_ids;
use tmd_sampler::schedule::shift;
use tmd_sampler::TmdGrids;

use super::discriminator::{
    discriminator_loss, generator_gan_loss, unpatchify_features, Discriminator, GAN_WEIGHT,
};
use super::fake_score::fake_score_loss;
use super::generator::{dmd_generate, generator_input, simulated_input, tmd_generate};
use super::vsd::vsd_loss;
use super::{model_x0, noisy};
use crate::adapt_head::AdaptHeadBatch;
use crate::train::data_parallel::Rows;
use crate::train::guard::check_finite;
use crate::train::rng::{step_seed, uniform};
use crate::train::run::{settings_hash, train_loop, PretrainReport};
use crate::train::sections::{CheckpointConfig, OptimizerConfig};
use crate::train::TrainError;

/// Name of the model bundle inside a checkpoint directory.
pub const MODEL_NAME: &str = "stage2";

const STREAM_OUTER: u64 = 21;
const STREAM_EPS: u64 = 22;
const STREAM_Y1: u64 = 23;
const STREAM_T: u64 = 24;
const STREAM_EPS2: u64 = 25;
/// Backward simulation's head noise of outer step `j`: stream `STREAM_SIM + j`.
const STREAM_SIM: u64 = 100;

/// Settings of stage 2 (paper values unless marked).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct Stage2Config {
    /// Learning rate and AdamW settings ([`OptimizerConfig`]); `lr`: learning rate of all three
    /// models (paper: 1e-5).
    pub optimizer: OptimizerConfig,
    /// Clips per batch (paper: 64 globally).
    pub batch: usize,
    /// Iterations (paper, 1.3B: 4k for M >= 2, 12k for M = 1).
    pub steps: u64,
    /// Seed of every random draw.
    pub seed: u64,
    /// `M`.
    pub outer_steps: usize,
    /// `N` (TMD only).
    pub inner_steps: usize,
    /// Shift of the outer grid (paper: 10; 5 for 3-4 step DMD2-v).
    pub outer_shift: f64,
    /// Shift of the inner grid (paper: 10).
    pub inner_shift: f64,
    /// Shift of the VSD / critic times `t = shift(U[0.001, 0.999], g)` (paper: 5).
    pub t_shift: f64,
    /// Teacher guidance in the VSD target (paper: 5).
    pub guidance: f64,
    /// The student updates on every `student_every`-th iteration (paper: 5).
    pub student_every: u64,
    /// Weight of the generator's GAN loss (paper: 0.03; 0 disables the GAN, the "no GAN" ablation).
    pub gan_weight: f64,
    /// Backward simulation (DMD2's multi-step training; off in the paper, which builds every
    /// generator input from the data): for `M >= 2`, an input at a later outer time is the
    /// student's own state there, stepped from noise as the sampler does, untracked
    /// ([`super::generator::simulated_input`]). Part of the resume hash when on.
    pub backward_simulation: bool,
    /// When checkpoints are written and how many are kept ([`CheckpointConfig`]).
    pub checkpoint: CheckpointConfig,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Activation checkpointing ([`crate::train::activation_checkpointing`]): the student's
    /// generator, the fake score and the teacher's feature pass recompute each block's forward in
    /// the backward (needed for Wan-scale clips on one GPU). Not part of the resume hash: the
    /// gradients are the same up to floating-point order.
    pub checkpoint_activations: bool,
    /// Precision policy of every DiT pass of the run (teacher, student, critics):
    /// `"Bf16Matmul"` multiplies (linear layers, attention) in bf16 with f32 weights, optimizer
    /// state, norms and residual stream, as the original's autocast (mixed precision: on a GPU the
    /// bf16 tensor cores instead of f32 products); `"F32"` (default) runs everything in f32.
    /// Part of the resume hash when not `F32`.
    pub precision: Precision,
}

impl Default for Stage2Config {
    fn default() -> Self {
        Self {
            optimizer: OptimizerConfig {
                lr: 1e-5,
                beta1: 0.9,
                beta2: 0.99,
                epsilon: 1e-8,
                weight_decay: 0.01,
                grad_clip_norm: 1.0,
            },
            batch: 8,
            steps: 4000,
            seed: 0,
            outer_steps: 2,
            inner_steps: 2,
            outer_shift: 10.0,
            inner_shift: 10.0,
            t_shift: 5.0,
            guidance: 5.0,
            student_every: 5,
            gan_weight: GAN_WEIGHT,
            backward_simulation: false,
            checkpoint: CheckpointConfig {
                every: 500,
                keep_last: 3,
                loss_tail: 100,
            },
            progress: true,
            checkpoint_activations: false,
            precision: Precision::F32,
        }
    }
}

impl Stage2Config {
    /// Hash of the settings that change the trajectory.
    pub fn resume_hash(&self) -> String {
        settings_hash(&(format!(
            "lr={:e};batch={};seed={};M={};N={};go={:e};gi={:e};gt={:e};w={:e};every={};gan={:e};b1={:e};b2={:e};eps={:e};wd={:e};clip={:e}",
            self.optimizer.lr, self.batch, self.seed, self.outer_steps, self.inner_steps, self.outer_shift,
            self.inner_shift, self.t_shift, self.guidance, self.student_every, self.gan_weight,
            self.optimizer.beta1, self.optimizer.beta2, self.optimizer.epsilon, self.optimizer.weight_decay, self.optimizer.grad_clip_norm
        ) + if self.backward_simulation { ";bsim" } else { "" }
            + &precision_hash_part(self.precision)))
    }
}

/// The resume-hash suffix of a precision policy: empty for `F32`, so runs from before the
/// setting existed keep their hash.
pub(crate) fn precision_hash_part(precision: Precision) -> String {
    match precision {
        Precision::F32 => String::new(),
        other => format!(";precision={other:?}"),
    }
}

/// Everything stage 2 trains: the student (a TMD student, or a plain DiT for the DMD2-v
/// baseline), the fake score and the discriminator.
#[derive(Module, Debug)]
pub struct Stage2Models<B: Backend> {
    /// The TMD student (`None` for the DMD2-v baseline).
    pub tmd: Option<TmdStudent<B>>,
    /// The DMD2-v baseline's student (`None` for TMD).
    pub dmd: Option<WanModel<B>>,
    /// The fake score, initialised from the teacher.
    pub fake: WanModel<B>,
    /// The discriminator.
    pub disc: Discriminator<B>,
}

impl<B: Backend> Stage2Models<B> {
    /// TMD: the student built from `teacher` with `head`, the fake score a copy of `teacher`, a
    /// fresh discriminator (every trained copy gets its own parameter ids).
    ///
    /// # Errors
    /// A head that does not fit the teacher.
    pub fn for_tmd(
        teacher: &WanModel<B>,
        head: &tmd_flowhead::FlowHeadConfig,
        disc: &super::discriminator::DiscriminatorConfig,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let student = TmdStudent::from_teacher(trainable_copy(teacher), head).map_err(|e| {
            TrainError::Data {
                step: 0,
                message: e.to_string(),
            }
        })?;
        Ok(Self {
            tmd: Some(student),
            dmd: None,
            fake: trainable_copy(teacher),
            disc: disc.init(device),
        })
    }

    /// TMD continuing from an existing `student` (stage 1's): the fake score a copy of
    /// `teacher`, a fresh discriminator.
    pub fn with_tmd_student(
        student: TmdStudent<B>,
        teacher: &WanModel<B>,
        disc: &super::discriminator::DiscriminatorConfig,
        device: &B::Device,
    ) -> Self {
        Self {
            tmd: Some(student),
            dmd: None,
            fake: trainable_copy(teacher),
            disc: disc.init(device),
        }
    }

    /// The DMD2-v baseline: the student and the fake score both copies of `teacher`.
    pub fn for_dmd(
        teacher: &WanModel<B>,
        disc: &super::discriminator::DiscriminatorConfig,
        device: &B::Device,
    ) -> Self {
        Self {
            tmd: None,
            dmd: Some(trainable_copy(teacher)),
            fake: trainable_copy(teacher),
            disc: disc.init(device),
        }
    }
}

/// A copy of `teacher` to train: its own parameter ids, and every parameter tracked by autodiff
/// whatever the teacher's setting (the frozen teacher is `no_grad()`, and a plain copy would carry
/// that over and leave the fake score or student untrained).
fn trainable_copy<B: Backend>(teacher: &WanModel<B>) -> WanModel<B> {
    struct Track;
    impl<B: Backend> burn::module::ModuleMapper<B> for Track {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<B, D>>,
        ) -> burn::module::Param<Tensor<B, D>> {
            param.set_require_grad(true)
        }
    }
    with_fresh_param_ids(teacher.clone()).map(&mut Track)
}

impl<B: Backend> Stage2Models<B> {
    /// The student's sample from the generator input `(x_t, t)`: the TMD generator (backbone +
    /// rollout over `inner_grid`, head noise `y1`) or the DMD2-v one; `None` if the bundle holds
    /// no student.
    ///
    /// # Shapes
    /// - `x_t`, `y1`: `[batch, c, f, h, w]`; `t`: `[batch]`; `context`: `[batch, l, text_dim]`
    ///
    /// # Errors
    /// Model shape errors.
    pub fn generate(
        &self,
        x_t: Tensor<B, 5>,
        t: Tensor<B, 1>,
        context: Tensor<B, 3>,
        y1: Tensor<B, 5>,
        inner_grid: &[f64],
    ) -> Result<Option<Tensor<B, 5>>, TrainError> {
        match (&self.tmd, &self.dmd) {
            (Some(student), _) => tmd_generate(student, x_t, t, context, y1, inner_grid).map(Some),
            (None, Some(dit)) => dmd_generate(dit, x_t, t, context).map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// What one iteration did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stage2Update {
    /// The student's `VSD + w GAN` (value logged).
    Student,
    /// The critics' `fake score + D` (value logged).
    Critics,
}

/// Which side iteration `step` (1-based) updates.
pub fn update_of(step: u64, student_every: u64) -> Stage2Update {
    if student_every <= 1 || step.is_multiple_of(student_every) {
        Stage2Update::Student
    } else {
        Stage2Update::Critics
    }
}

fn times<B: Backend>(values: &[f64], device: &B::Device) -> Tensor<B, 1> {
    Tensor::from_data(
        TensorData::new(values.iter().map(|&x| x as f32).collect(), [values.len()]),
        device,
    )
}

fn features<B: Backend>(
    teacher: &WanModel<B>,
    x_t: Tensor<B, 5>,
    t: Tensor<B, 1>,
    context: Tensor<B, 3>,
    blocks: &[usize],
) -> Result<Vec<Tensor<B, 5>>, TrainError> {
    let [_, _, f, h, w] = x_t.dims();
    let [pt, ph, pw] = teacher.patch_size;
    let grid = [f / pt, h / ph, w / pw];
    let (_, feats) = teacher.forward_with_features(
        x_t,
        t * tmd_model::dit::NUM_TRAIN_TIMESTEPS,
        context,
        blocks,
    )?;
    Ok(feats
        .into_iter()
        .map(|tokens| unpatchify_features(tokens, grid))
        .collect())
}

/// One stage-2 iteration's loss for the side it updates, and that side's gradients.
///
/// # Errors
/// Shape errors of any model.
#[allow(clippy::too_many_arguments)]
pub fn stage2_loss<B: AutodiffBackend>(
    models: &Stage2Models<B>,
    teacher: &WanModel<B>,
    batch: &AdaptHeadBatch<B>,
    negative: &Tensor<B, 3>,
    config: &Stage2Config,
    grids: &TmdGrids,
    step: u64,
) -> Result<(f64, GradientsParams), TrainError> {
    // In a data-parallel run, this rank's rows of the global batch and of its draws.
    let global = batch.latents.dims();
    let rows = Rows::of(global[0])?;
    let x = rows.take(batch.latents.clone())?;
    let context = rows.take(batch.context.clone())?;
    let b = rows.len();
    let device = x.device();
    let seed = config.seed;
    let ks: Vec<usize> = rows
        .indices()
        .map(|i| {
            ((uniform(seed, step, STREAM_OUTER, i) * config.outer_steps as f64) as usize)
                .min(config.outer_steps - 1)
        })
        .collect();
    let eps = rows.gaussian::<B, 5>(global, step_seed(seed, step, STREAM_EPS), &device);
    let (x_t, t_gen) = generator_input(x.clone(), eps.clone(), &grids.outer, &ks);
    let y1 = rows.gaussian::<B, 5>(global, step_seed(seed, step, STREAM_Y1), &device);
    let missing = || TrainError::Data {
        step,
        message: "stage 2 needs a student (TMD or DMD2-v)".into(),
    };
    // The student without tracking, made once at most: backward simulation and the critics'
    // update both sample from it.
    let student_i = OnceCell::new();
    let x_t = if config.backward_simulation && ks.iter().any(|&k| k > 0) {
        // The student's own states at the later outer times, generated without tracking.
        let student = student_i.get_or_init(|| models.valid());
        let context_i = context.clone().inner();
        let simulated = simulated_input(x_t.inner(), eps.inner(), &grids.outer, &ks, |j, x, t| {
            let y1 = rows.gaussian::<B::InnerBackend, 5>(
                global,
                step_seed(seed, step, STREAM_SIM + j as u64),
                &device,
            );
            student
                .generate(x, t, context_i.clone(), y1, &grids.inner)?
                .ok_or_else(missing)
        })?;
        Tensor::from_inner(simulated)
    } else {
        x_t
    };
    // Critic / VSD times and noise, shared by real and fake.
    let t: Vec<f64> = rows
        .indices()
        .map(|i| {
            shift(
                0.001 + 0.998 * uniform(seed, step, STREAM_T, i),
                config.t_shift,
            )
        })
        .collect();
    let t = times::<B>(&t, &device);
    let eps2 = rows.gaussian::<B, 5>(global, step_seed(seed, step, STREAM_EPS2), &device);
    let [_, l, d] = context.dims();
    let negatives = negative.clone().expand([b, l, d]);
    let blocks = models.disc.feature_blocks.clone();

    match update_of(step, config.student_every) {
        Stage2Update::Student if config.checkpoint_activations => {
            let draws = StudentDraws {
                x_t,
                t_gen,
                context,
                y1,
                eps2,
                t,
                negatives,
            };
            student_grads_checkpointed(models, teacher, draws, &blocks, config, grids, step)
        }
        Stage2Update::Student => {
            let x_hat = models
                .generate(x_t, t_gen, context.clone(), y1, &grids.inner)?
                .ok_or_else(missing)?;
            let x_hat_t = noisy(x_hat.clone(), eps2, t.clone());
            let teacher_i = teacher.valid();
            let x0_teacher = model_x0(
                &teacher_i,
                x_hat_t.clone().inner(),
                t.clone().inner(),
                context.clone().inner(),
                Some((negatives.inner(), config.guidance)),
            )?;
            let x0_fake = model_x0(
                &models.fake.valid(),
                x_hat_t.clone().inner(),
                t.clone().inner(),
                context.clone().inner(),
                None,
            )?;
            let mut loss = vsd_loss(x_hat, x0_teacher, x0_fake);
            if config.gan_weight > 0.0 {
                let fake_f = features(teacher, x_hat_t, t, context.clone(), &blocks)?;
                loss = loss + generator_gan_loss(models.disc.forward(fake_f)) * config.gan_weight;
            }
            let value: f64 = loss.clone().into_scalar().elem();
            check_finite(step, "student loss", value)?;
            let mut grads = loss.backward();
            let params = match (&models.tmd, &models.dmd) {
                (Some(s), _) => GradientsParams::from_module(&mut grads, s),
                (None, Some(dit)) => GradientsParams::from_module(&mut grads, dit),
                (None, None) => return Err(missing()),
            };
            Ok((value, params))
        }
        Stage2Update::Critics => {
            // The critics see the student's sample as data: generate it without tracking.
            let x_hat = student_i
                .get_or_init(|| models.valid())
                .generate(
                    x_t.inner(),
                    t_gen.inner(),
                    context.clone().inner(),
                    y1.inner(),
                    &grids.inner,
                )?
                .ok_or_else(missing)?;
            if config.checkpoint_activations {
                return critic_grads_checkpointed(
                    models, teacher, x, x_hat, eps2, t, context, &blocks, config, step,
                );
            }
            let x_hat = Tensor::<B, 5>::from_inner(x_hat);
            let mut loss = fake_score_loss(
                &models.fake,
                x_hat.clone(),
                eps2.clone(),
                t.clone(),
                context.clone(),
            )?;
            if config.gan_weight > 0.0 {
                let teacher_i = teacher.valid();
                let feats = |x: Tensor<B, 5>| -> Result<Vec<Tensor<B, 5>>, TrainError> {
                    let x_t = noisy(x, eps2.clone(), t.clone()).inner();
                    Ok(features(
                        &teacher_i,
                        x_t,
                        t.clone().inner(),
                        context.clone().inner(),
                        &blocks,
                    )?
                    .into_iter()
                    .map(Tensor::from_inner)
                    .collect())
                };
                let d_fake = models.disc.forward(feats(x_hat)?);
                let d_real = models.disc.forward(feats(x)?);
                loss = loss + discriminator_loss(d_fake, d_real);
            }
            let value: f64 = loss.clone().into_scalar().elem();
            check_finite(step, "critic loss", value)?;
            let mut grads = loss.backward();
            // Only the fake score and the discriminator are in this graph (the sample and the
            // teacher features were computed without tracking).
            let params = GradientsParams::from_module(&mut grads, models);
            Ok((value, params))
        }
    }
}

/// The inputs of a student update (this rank's rows).
struct StudentDraws<B: AutodiffBackend> {
    x_t: Tensor<B, 5>,
    t_gen: Tensor<B, 1>,
    context: Tensor<B, 3>,
    y1: Tensor<B, 5>,
    eps2: Tensor<B, 5>,
    t: Tensor<B, 1>,
    negatives: Tensor<B, 3>,
}

/// The student update with activation checkpointing: the generator (backbone and every head
/// pass, or the DMD2-v DiT) and the teacher's feature pass run block by block without a graph;
/// the loss's gradient flows back through the teacher's features (re-run tracked, frozen) into
/// the sample and through the generator (re-run tracked) into the student's parameters.
fn student_grads_checkpointed<B: AutodiffBackend>(
    models: &Stage2Models<B>,
    teacher: &WanModel<B>,
    d: StudentDraws<B>,
    blocks: &[usize],
    config: &Stage2Config,
    grids: &TmdGrids,
    step: u64,
) -> Result<(f64, GradientsParams), TrainError> {
    use crate::train::activation_checkpointing::{
        backbone_segments, backward, chain_consts, dit_segments, forward, head_pass_segments,
        latent_slot, slot_latent, vjp, NoParams, ParamGrads, Segment, SlotGrads, WanChain,
    };
    let data_err = |message: String| TrainError::Data { step, message };
    let x_t = d.x_t.inner();
    let latent = x_t.dims();
    let b = latent[0];
    let idev = x_t.device();
    let t_gen = d.t_gen.inner();
    let context = d.context.inner();
    let t = d.t.inner();
    let nt = tmd_model::dit::NUM_TRAIN_TIMESTEPS;
    let column = |v: Tensor<B::InnerBackend, 1>| v.reshape([b, 1, 1]);

    // The generator's chain and its sample, without a graph.
    let (chain, input) = match (&models.tmd, &models.dmd) {
        (Some(student), _) => {
            tmd_flowhead::check_inner_grid(&grids.inner).map_err(|e| data_err(e.to_string()))?;
            let passes = grids
                .inner
                .windows(2)
                .map(|w| {
                    (
                        Tensor::<B::InnerBackend, 1>::full([b], w[0], &idev),
                        Tensor::<B::InnerBackend, 1>::full([b], w[1], &idev),
                    )
                })
                .collect::<Vec<_>>();
            let mut segments = backbone_segments(student);
            for pass in 0..passes.len() {
                segments.extend(head_pass_segments(student, pass, false));
            }
            let consts = chain_consts(&student.dit, latent, t_gen.clone() * nt, passes);
            let y1 = latent_slot(d.y1.inner());
            (
                WanChain::student(student, consts, segments),
                vec![latent_slot(x_t.clone()), context.clone(), y1.clone(), y1],
            )
        }
        (None, Some(dit)) => {
            let consts = chain_consts(dit, latent, t_gen.clone() * nt, Vec::new());
            let segments = dit_segments(dit.blocks.len(), &[]);
            (
                WanChain::dit(dit, consts, segments),
                vec![latent_slot(x_t.clone()), context.clone()],
            )
        }
        (None, None) => return Err(data_err("stage 2 needs a student (TMD or DMD2-v)".into())),
    };
    // The slot holding what the sample is made of: `x_hat = x_t - t_gen * out` (`y_N`, or the
    // DMD2-v velocity).
    let out_slot = if models.tmd.is_some() { 4 } else { 0 };
    let (gen_out, gen_tape) = forward(&chain, input)?;
    let x_hat = latent_slot(x_t) - gen_out[out_slot].clone() * column(t_gen.clone());
    drop(gen_out);

    // The two denoisers at the noisy sample (no graph).
    let x_hat_t = noisy(
        slot_latent(x_hat.clone(), latent),
        d.eps2.inner(),
        t.clone(),
    );
    let x0_teacher = model_x0(
        &teacher.valid(),
        x_hat_t.clone(),
        t.clone(),
        context.clone(),
        Some((d.negatives.inner(), config.guidance)),
    )?;
    let x0_fake = model_x0(
        &models.fake.valid(),
        x_hat_t.clone(),
        t.clone(),
        context.clone(),
        None,
    )?;

    // The teacher's features at the noisy sample, block by block, if the GAN is on.
    let gan = config.gan_weight > 0.0;
    let mut taps: Vec<usize> = blocks.to_vec();
    taps.sort_unstable();
    taps.dedup();
    let teacher_chain = gan.then(|| {
        let last = taps.last().copied().unwrap_or(0);
        let mut segments = vec![Segment::Embed];
        segments.extend((0..=last).map(|index| Segment::Block {
            index,
            tap: taps.contains(&index),
        }));
        let consts = chain_consts(teacher, latent, t.clone() * nt, Vec::new());
        WanChain::dit(teacher, consts, segments)
    });
    let (feats, teacher_tape) = match &teacher_chain {
        Some(chain) => {
            let (out, tape) = forward(chain, vec![latent_slot(x_hat_t), context])?;
            (out[4..].to_vec(), Some(tape))
        }
        None => (Vec::new(), None),
    };

    // The loss from the sample and the features.
    let grid = crate::train::activation_checkpointing::grid_of(teacher, latent);
    let n_taps = feats.len();
    let mut inputs = vec![x_hat];
    inputs.extend(feats);
    let one = Tensor::<B::InnerBackend, 3>::ones([1, 1, 1], &idev);
    let (values, g) = vjp::<B>(
        inputs,
        |leaves| {
            let mut loss = vsd_loss(slot_latent(leaves[0].clone(), latent), x0_teacher, x0_fake);
            if gan {
                let feats = blocks
                    .iter()
                    .map(|blk| {
                        let i = taps.iter().position(|t| t == blk).expect("tapped");
                        unpatchify_features(leaves[1 + i].clone(), grid)
                    })
                    .collect();
                loss = loss + generator_gan_loss(models.disc.forward(feats)) * config.gan_weight;
            }
            Ok(vec![loss.reshape([1, 1, 1])])
        },
        &[Some(one)],
        &mut NoParams,
    )?;
    let value: f64 = values[0].clone().into_scalar().elem();
    check_finite(step, "student loss", value)?;
    let mut g = g.into_iter();
    let mut g_x_hat = g.next().flatten();
    if let (Some(chain), Some(tape)) = (&teacher_chain, teacher_tape) {
        let mut out_grads: SlotGrads<B> = vec![None; 4];
        out_grads.extend(g.take(n_taps));
        let g_in = backward(chain, tape, out_grads, &mut NoParams)?;
        // x_hat_t = (1 - t) x_hat + t eps.
        let through = g_in
            .into_iter()
            .next()
            .flatten()
            .map(|g_t| g_t * (column(t).neg() + 1.0));
        g_x_hat = crate::train::activation_checkpointing::add_grads(g_x_hat, through);
    }
    // x_hat = x_t - t_gen * out.
    let mut out_grads: SlotGrads<B> = vec![None; out_slot + 1];
    out_grads[out_slot] = g_x_hat.map(|g| (g * column(t_gen)).neg());
    let mut params = ParamGrads::new(models);
    backward(&chain, gen_tape, out_grads, &mut params)?;
    Ok((value, params.into_grads()))
}

/// The critic update with activation checkpointing: the fake score's denoising loss through its
/// DiT run block by block (re-run tracked in the backward); the discriminator on the teacher's
/// features (computed without a graph, as without checkpointing).
#[allow(clippy::too_many_arguments)]
fn critic_grads_checkpointed<B: AutodiffBackend>(
    models: &Stage2Models<B>,
    teacher: &WanModel<B>,
    x: Tensor<B, 5>,
    x_hat: Tensor<B::InnerBackend, 5>,
    eps2: Tensor<B, 5>,
    t: Tensor<B, 1>,
    context: Tensor<B, 3>,
    blocks: &[usize],
    config: &Stage2Config,
    step: u64,
) -> Result<(f64, GradientsParams), TrainError> {
    let mut params = crate::train::activation_checkpointing::ParamGrads::new(models);
    let (eps_i, t_i, ctx_i) = (
        eps2.clone().inner(),
        t.clone().inner(),
        context.clone().inner(),
    );
    let x_t = noisy(x_hat.clone(), eps_i, t_i.clone());
    let (fake_value, _) = crate::train::activation_checkpointing::dit_loss(
        &models.fake,
        x_t.clone(),
        t_i.clone() * tmd_model::dit::NUM_TRAIN_TIMESTEPS,
        ctx_i.clone(),
        |v| {
            let x0 = super::x0_from_velocity(Tensor::from_inner(x_t), v, Tensor::from_inner(t_i));
            Ok((x0 - Tensor::from_inner(x_hat.clone()))
                .powi_scalar(2)
                .mean())
        },
        &mut params,
    )?;
    let mut value = fake_value as f32;
    if config.gan_weight > 0.0 {
        let teacher_i = teacher.valid();
        let feats = |x: Tensor<B::InnerBackend, 5>| -> Result<Vec<Tensor<B, 5>>, TrainError> {
            let x_t = noisy(x, eps2.clone().inner(), t.clone().inner());
            Ok(
                features(&teacher_i, x_t, t.clone().inner(), ctx_i.clone(), blocks)?
                    .into_iter()
                    .map(Tensor::from_inner)
                    .collect(),
            )
        };
        let d_fake = models.disc.forward(feats(x_hat)?);
        let d_real = models.disc.forward(feats(x.inner())?);
        let loss = discriminator_loss(d_fake, d_real);
        let d_value: f32 = loss.clone().into_scalar().elem();
        value += d_value;
        let mut grads = loss.backward();
        crate::train::activation_checkpointing::GradSink::<B>::absorb(&mut params, &mut grads);
    }
    let value = f64::from(value);
    check_finite(step, "critic loss", value)?;
    Ok((value, params.into_grads()))
}

/// Runs stage 2, checkpointing the three models and the optimizer under `run_dir` and resuming
/// from the newest valid checkpoint. `teacher` is frozen; `batches(step)` gives the data of
/// iteration `step` (1-based), a function of `step` only for exact resume.
///
/// # Errors
/// [`TrainError::NonFinite`] on a NaN/Inf loss (the newest checkpoint is the last good one);
/// shape, data, I/O and checkpoint errors.
pub fn distill<B, F>(
    models: Stage2Models<B>,
    teacher: &WanModel<B>,
    config: &Stage2Config,
    run_dir: &Path,
    negative: Tensor<B, 3>,
    mut batches: F,
) -> Result<(Stage2Models<B>, PretrainReport), TrainError>
where
    B: AutodiffBackend,
    F: FnMut(u64) -> Result<AdaptHeadBatch<B>, TrainError>,
{
    let grids = TmdGrids::new(
        config.outer_steps,
        config.inner_steps,
        config.outer_shift,
        config.inner_shift,
    )
    .map_err(|e| TrainError::Data {
        step: 0,
        message: e.to_string(),
    })?;
    let settings = crate::loop_settings!(config);
    train_loop(
        models,
        &settings,
        run_dir,
        config.resume_hash(),
        MODEL_NAME,
        |models, step| {
            let batch = batches(step)?;
            stage2_loss(models, teacher, &batch, &negative, config, &grids, step)
        },
    )
}
