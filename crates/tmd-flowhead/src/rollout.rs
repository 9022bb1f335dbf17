//! The rollout: the inner loop of Algorithm 1 and of the stage-2 generator. Starting from fresh
//! noise `y1` at the top of the inner grid, `N` flow-map jumps `y <- f(y, s_j, s_{j-1})` bring the
//! head variable down to `s_0 = 0`, where it estimates the head target `y = x1 - x` (the velocity
//! of the outer step). Gradients flow through all `N` head passes.

use burn::prelude::*;

use crate::error::{FlowHeadError, Result};
use crate::student::{Backbone, TmdStudent};

/// Checks an inner grid `s_N > ... > s_0` in `[0, 1]` with at least one step.
///
/// # Errors
/// [`FlowHeadError::Grid`] saying what is wrong.
pub fn check_inner_grid(grid: &[f64]) -> Result<()> {
    let bad = |reason| FlowHeadError::Grid {
        grid: grid.to_vec(),
        reason,
    };
    if grid.len() < 2 {
        return Err(bad("needs at least two points (one inner step)"));
    }
    if grid.iter().any(|s| !(0.0..=1.0).contains(s)) {
        return Err(bad("times must lie in [0, 1]"));
    }
    if grid.windows(2).any(|w| w[1] >= w[0]) {
        return Err(bad("times must decrease strictly"));
    }
    Ok(())
}

/// Runs the `N = grid.len() - 1` flow-map steps of one outer step from `y1` and returns the final
/// head variable (the estimate of `x1 - x`).
///
/// # Shapes
/// - `y1`: `backbone.latent_shape`
/// - output: `backbone.latent_shape`
///
/// # Errors
/// [`FlowHeadError::Grid`] for a bad grid, and the errors of [`TmdStudent::flow_map`].
pub fn rollout<B: Backend>(
    student: &TmdStudent<B>,
    backbone: &Backbone<B>,
    y1: Tensor<B, 5>,
    grid: &[f64],
) -> Result<Tensor<B, 5>> {
    check_inner_grid(grid)?;
    let batch = backbone.latent_shape[0];
    let device = y1.device();
    let time = |v: f64| Tensor::<B, 1>::full([batch], v, &device);
    let mut y = y1.clone();
    for w in grid.windows(2) {
        y = student.flow_map(backbone, y, time(w[0]), time(w[1]), y1.clone())?;
    }
    Ok(y)
}
