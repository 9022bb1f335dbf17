//! The fake score of DMD2-v: a copy of the teacher, trained to denoise the student's own samples
//! (`x0`-space denoising score matching), so that its `x0` estimate tracks the student's
//! distribution the way the teacher's tracks the data's (TMD.md, "Stage 2").

use burn::prelude::*;

use super::{model_x0, noisy};
use crate::train::TrainError;

/// `mean((x0_fake(x_t, t) - x)^2)` with `x_t = (1 - t) x + t eps`, `x` the (detached) student
/// samples, conditioned on their prompts (no CFG).
///
/// # Shapes
/// - `x`, `eps`: `[batch, c, f, h, w]`; `t`: `[batch]`; `context`: `[batch, l, text_dim]`
/// - returns `[1]`
///
/// # Errors
/// Model shape errors.
pub fn fake_score_loss<B: Backend>(
    fake: &tmd_model::dit::WanModel<B>,
    x: Tensor<B, 5>,
    eps: Tensor<B, 5>,
    t: Tensor<B, 1>,
    context: Tensor<B, 3>,
) -> Result<Tensor<B, 1>, TrainError> {
    let x_t = noisy(x.clone(), eps, t.clone());
    let x0 = model_x0(fake, x_t, t, context, None)?;
    Ok((x0 - x).powi_scalar(2).mean())
}
