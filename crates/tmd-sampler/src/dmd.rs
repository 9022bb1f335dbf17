//! The DMD2-v baseline's few-step sampler (TMD.md, "Inference" and the DMD2-v rows of the
//! tables): `M` deterministic steps of the distilled DiT on the outer grid,
//!
//! ```text
//! x ~ N(0, I) at t_M; for i = M..1: x <- x - (t_i - t_{i-1}) v(x, t_i, c)
//! ```
//!
//! one DiT pass per step and no CFG. It is Algorithm 1's outer loop with the flow head's rollout
//! replaced by the student's own velocity, on the same grid ([`crate::TmdGrids::outer`]), so the
//! two students are compared at equal outer steps.

use burn::prelude::*;
use tmd_model::dit::{WanModel, NUM_TRAIN_TIMESTEPS};

use crate::error::Result;

/// Samples from `noise` (the latent at `outer[0]`) down the `outer` grid, calling
/// `on_step(i, M)` after each step.
///
/// # Shapes
/// - `noise`: `[batch, channels, frames, height, width]`
/// - `context`: `[batch, l, text_dim]`
/// - output: the sample at `outer[M]`, shaped like `noise`
///
/// # Errors
/// Model shape errors.
pub fn dmd_sample<B: Backend>(
    dit: &WanModel<B>,
    noise: Tensor<B, 5>,
    context: Tensor<B, 3>,
    outer: &[f64],
    on_step: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<B, 5>> {
    let [b, ..] = noise.dims();
    let device = noise.device();
    let steps = outer.len().saturating_sub(1);
    let mut x = noise;
    for (i, w) in outer.windows(2).enumerate() {
        let (t, t_next) = (w[0], w[1]);
        let time = Tensor::<B, 1>::full([b], t * NUM_TRAIN_TIMESTEPS, &device);
        let v = dit.forward(x.clone(), time, context.clone())?;
        x = x - v * (t - t_next);
        on_step(i + 1, steps);
    }
    Ok(x)
}
