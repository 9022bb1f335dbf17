//! The stage-2 generators (TMD.md, "Stage 2"): what the student produces from a noisy input, with
//! gradients through every network pass.
//!
//! - TMD: `g(x_t, t; y1) = x_t - t * rollout(m(x_t, t), y1)`, the backbone once and the flow head
//!   `N` times ([`tmd_flowhead::rollout`]), gradients through all `N` head passes and the backbone.
//! - DMD2-v baseline: `g(x_t, t) = x_t - t * v(x_t, t)`, one pass of a plain DiT student.
//!
//! Inputs are built from real (teacher-generated) data, no backward simulation:
//! `x_t = (1 - t) x + t eps` with `t` a point of the outer grid (for `M = 1`, pure noise at 0.999).
//! [`simulated_input`] is the alternative of DMD2's multi-step training (`train.backward_simulation`,
//! off by default): the inputs at later outer times are the student's own steps from noise.

use burn::prelude::*;
use tmd_flowhead::{rollout, TmdStudent};
use tmd_model::dit::WanModel;

use super::{model_x0, noisy};
use crate::train::TrainError;

/// The TMD generator's sample.
///
/// # Shapes
/// - `x_t`, `y1`: `[batch, c, f, h, w]`; `t`: `[batch]`; `context`: `[batch, l, text_dim]`
/// - output: like `x_t`
///
/// # Errors
/// Student errors (shapes, inner grid).
pub fn tmd_generate<B: Backend>(
    student: &TmdStudent<B>,
    x_t: Tensor<B, 5>,
    t: Tensor<B, 1>,
    context: Tensor<B, 3>,
    y1: Tensor<B, 5>,
    inner_grid: &[f64],
) -> Result<Tensor<B, 5>, TrainError> {
    let [b] = t.dims();
    let backbone = student
        .backbone(x_t.clone(), t.clone(), context)
        .map_err(|e| TrainError::Data {
            step: 0,
            message: e.to_string(),
        })?;
    let y = rollout(student, &backbone, y1, inner_grid).map_err(|e| TrainError::Data {
        step: 0,
        message: e.to_string(),
    })?;
    Ok(x_t - y * t.reshape([b, 1, 1, 1, 1]))
}

/// The DMD2-v baseline generator's sample (one DiT pass, no CFG).
///
/// # Errors
/// Model shape errors.
pub fn dmd_generate<B: Backend>(
    student: &WanModel<B>,
    x_t: Tensor<B, 5>,
    t: Tensor<B, 1>,
    context: Tensor<B, 3>,
) -> Result<Tensor<B, 5>, TrainError> {
    model_x0(student, x_t, t, context, None)
}

/// The generator's input of a data batch: `x_t = (1 - t) x + t eps` at the outer-grid time
/// `outer[k]` of each sample (`ks[i]` in `0..M`).
///
/// # Shapes
/// - `x`, `eps`: `[batch, c, f, h, w]`; output: `(x_t, t)` with `t` `[batch]`
pub fn generator_input<B: Backend>(
    x: Tensor<B, 5>,
    eps: Tensor<B, 5>,
    outer: &[f64],
    ks: &[usize],
) -> (Tensor<B, 5>, Tensor<B, 1>) {
    let device = x.device();
    let t: Vec<f32> = ks.iter().map(|&k| outer[k] as f32).collect();
    let t = Tensor::<B, 1>::from_data(TensorData::new(t, [ks.len()]), &device);
    (noisy(x, eps, t.clone()), t)
}

/// Backward simulation (DMD2's multi-step training; the paper builds every input from data): the
/// input of each row with `ks[i] > 0` replaced by the student's own state at `outer[ks[i]]`, as
/// the sampler reaches it: from the noise `eps` at `outer[0]`, the deterministic steps
/// `x <- x - (t - t') v` with `v = (x - x_hat) / t` (`x_hat = generate(j, x, t)`, the student's
/// sample at outer step `j`). Rows with `ks[i] = 0` keep `data_input`. Runs `max(ks)` student
/// passes on the whole batch (none when every `ks[i]` is 0); the caller runs them untracked.
///
/// # Shapes
/// - `data_input`, `eps`: `[batch, c, f, h, w]`; output: like `data_input`
/// - `generate(j, x, t)`: `x` `[batch, c, f, h, w]`, `t` `[batch]` (all `outer[j]`)
///
/// # Errors
/// What `generate` returns.
pub fn simulated_input<B: Backend, F>(
    data_input: Tensor<B, 5>,
    eps: Tensor<B, 5>,
    outer: &[f64],
    ks: &[usize],
    mut generate: F,
) -> Result<Tensor<B, 5>, TrainError>
where
    F: FnMut(usize, Tensor<B, 5>, Tensor<B, 1>) -> Result<Tensor<B, 5>, TrainError>,
{
    let last = ks.iter().copied().max().unwrap_or(0);
    let b = ks.len();
    let device = eps.device();
    let mut x = eps;
    let mut out = data_input;
    for j in 0..last {
        let (t, t_next) = (outer[j], outer[j + 1]);
        let x_hat = generate(j, x.clone(), Tensor::full([b], t, &device))?;
        x = x.clone() - (x - x_hat) * ((t - t_next) / t);
        let take: Vec<f32> = ks
            .iter()
            .map(|&k| f32::from(u8::from(k == j + 1)))
            .collect();
        let take =
            Tensor::<B, 1>::from_data(TensorData::new(take, [b]), &device).reshape([b, 1, 1, 1, 1]);
        out = out * (take.clone().neg() + 1.0) + x.clone() * take;
    }
    Ok(out)
}
