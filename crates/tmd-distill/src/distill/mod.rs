//! Stage 2 of TMD, DMD2-v with flow-head rollout (TMD.md, "Stage 2"), piece by piece:
//!
//! - [`vsd`]: the distribution-matching (variational score distillation) loss of the generator,
//!   teacher `x0` with CFG against the fake score's `x0`;
//! - [`fake_score`]: the fake score model's `x0`-space denoising score matching on student
//!   samples;
//! - [`discriminator`]: Conv3D heads on teacher features and the softplus GAN losses;
//! - [`generator`]: the TMD generator (backbone + flow-head rollout) and the DMD2-v baseline's;
//! - [`stage2`]: the 1:4 update schedule and the loop over the student and both critics;
//! - [`kd`]: the KD warm-up of the 1-step DMD2-v baseline;
//! - [`run`]: stage 2 end to end from directories (`cargo xtask distill`).

pub mod discriminator;
pub mod fake_score;
pub mod generator;
pub mod kd;
pub mod run;
pub mod stage2;
pub mod vsd;

use burn::prelude::*;
use tmd_model::dit::{WanModel, NUM_TRAIN_TIMESTEPS};

use crate::train::TrainError;

/// `x0 = x_t - t v`: the clean estimate of a flow-matching velocity `v = eps - x0` at
/// `x_t = (1 - t) x0 + t eps`.
///
/// # Shapes
/// - `x_t`, `v`: `[batch, ...]`; `t`: `[batch]`
pub fn x0_from_velocity<B: Backend>(
    x_t: Tensor<B, 5>,
    v: Tensor<B, 5>,
    t: Tensor<B, 1>,
) -> Tensor<B, 5> {
    let [b] = t.dims();
    x_t - v * t.reshape([b, 1, 1, 1, 1])
}

/// `x_t = (1 - t) x + t eps`, per sample.
pub fn noisy<B: Backend>(x: Tensor<B, 5>, eps: Tensor<B, 5>, t: Tensor<B, 1>) -> Tensor<B, 5> {
    let [b] = t.dims();
    let t = t.reshape([b, 1, 1, 1, 1]);
    x * (t.clone().neg() + 1.0) + eps * t
}

/// The `x0` estimate of `model` at `(x_t, t)`, with classifier-free guidance when `uncond` is
/// given: `v = v_u + w (v_c - v_u)` (both branches in one batched pass).
///
/// # Shapes
/// - `x_t`: `[batch, c, f, h, w]`; `t`: `[batch]` in `[0, 1]`; `cond`, `uncond`:
///   `[batch, l, text_dim]`
///
/// # Errors
/// Model shape errors.
pub fn model_x0<B: Backend>(
    model: &WanModel<B>,
    x_t: Tensor<B, 5>,
    t: Tensor<B, 1>,
    cond: Tensor<B, 3>,
    uncond: Option<(Tensor<B, 3>, f64)>,
) -> Result<Tensor<B, 5>, TrainError> {
    let [b, ..] = x_t.dims();
    let v = match uncond {
        Some((uncond, w)) => {
            let xx = Tensor::cat(vec![x_t.clone(), x_t.clone()], 0);
            let tt = Tensor::cat(vec![t.clone(), t.clone()], 0) * NUM_TRAIN_TIMESTEPS;
            let out = model.forward(xx, tt, Tensor::cat(vec![cond, uncond], 0))?;
            let (v_c, v_u) = (out.clone().narrow(0, 0, b), out.narrow(0, b, b));
            v_u.clone() + (v_c - v_u) * w
        }
        None => model.forward(x_t.clone(), t.clone() * NUM_TRAIN_TIMESTEPS, cond)?,
    };
    Ok(x0_from_velocity(x_t, v, t))
}
