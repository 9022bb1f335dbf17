//! The TMD few-step sampler (TMD.md, "Inference (Algorithm 1)").
//!
//! `x ~ N(0, I)` at `t_M = 0.999`. For each outer step `t_i -> t_{i-1}` of the shifted outer
//! grid: run the backbone once on `(x, t_i, c)`, draw a fresh `y1 ~ N(0, I)`, roll the flow head
//! out over the inner grid (`N` flow-map steps, [`tmd_flowhead::rollout`]) to `y`, and update
//! `x <- x - (t_i - t_{i-1}) y`. Outer steps are deterministic (no noise re-injection) and there
//! is no CFG: the guidance was distilled into the student.

use burn::prelude::*;
use tmd_flowhead::{rollout, TmdStudent};

use crate::error::Result;
use crate::noise::gaussian;
use crate::schedule::shifted_grid;

/// Top of both grids (TMD.md: `t_M = 0.999`, inner grid on `[0, 0.999]`).
pub const GRID_TOP: f64 = 0.999;

/// The outer and inner time grids of a TMD sampler, both decreasing from 0.999 to 0.
#[derive(Debug, Clone, PartialEq)]
pub struct TmdGrids {
    /// `t_M > ... > t_0`: `M + 1` points.
    pub outer: Vec<f64>,
    /// `s_N > ... > s_0`: `N + 1` points.
    pub inner: Vec<f64>,
}

impl TmdGrids {
    /// `M` outer steps on `0.999 shift(linspace(1, 0, M + 1), outer_shift)` and `N` inner steps on
    /// the same construction with `inner_shift` (the paper: 10 and 10). This is the construction
    /// that gives the paper's 2-step grid `[0.999, 0.908, 0]` (`0.999 * 0.90909`); shifting
    /// `linspace(0.999, 0, 3)` instead would give `[0.9999, 0.909, 0]`.
    ///
    /// # Errors
    /// [`SamplerError::ZeroSteps`](crate::SamplerError::ZeroSteps) or
    /// [`SamplerError::InvalidShift`](crate::SamplerError::InvalidShift).
    pub fn new(
        outer_steps: usize,
        inner_steps: usize,
        outer_shift: f64,
        inner_shift: f64,
    ) -> Result<Self> {
        Ok(Self {
            outer: top_scaled(shifted_grid(1.0, 0.0, outer_steps, outer_shift)?),
            inner: top_scaled(shifted_grid(1.0, 0.0, inner_steps, inner_shift)?),
        })
    }

    /// `M`.
    pub fn outer_steps(&self) -> usize {
        self.outer.len() - 1
    }

    /// `N`.
    pub fn inner_steps(&self) -> usize {
        self.inner.len() - 1
    }
}

fn top_scaled(grid: Vec<f64>) -> Vec<f64> {
    grid.into_iter().map(|t| t * GRID_TOP).collect()
}

/// Seed of the head noise `y1` of outer step `step` (0-based) for a clip seeded with `seed`:
/// distinct from the clip's initial noise (`seed` itself) and from every other step's.
pub fn head_noise_seed(seed: u64, step: usize) -> u64 {
    let mut z = seed ^ (step as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Runs Algorithm 1 from `noise` (the latent at `t_M`), calling `on_step(i, M)` after each outer
/// step; the head noise of step `i` is drawn from [`head_noise_seed`]`(seed, i)`.
///
/// # Shapes
/// - `noise`: `[batch, channels, frames, height, width]`
/// - `context`: `[batch, l, text_dim]`
/// - output: the sample at `t = 0`, shaped like `noise`
///
/// # Errors
/// Student errors (bad grid or shapes).
pub fn tmd_sample<B: Backend>(
    student: &TmdStudent<B>,
    noise: Tensor<B, 5>,
    context: Tensor<B, 3>,
    grids: &TmdGrids,
    seed: u64,
    on_step: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<B, 5>> {
    let shape = noise.dims();
    let device = noise.device();
    let steps = grids.outer_steps();
    let mut x = noise;
    for (i, w) in grids.outer.windows(2).enumerate() {
        let (t, t_next) = (w[0], w[1]);
        let time = Tensor::<B, 1>::full([shape[0]], t, &device);
        let backbone = student.backbone(x.clone(), time, context.clone())?;
        let y1 = gaussian::<B, 5>(shape, head_noise_seed(seed, i), &device);
        let y = rollout(student, &backbone, y1, &grids.inner)?;
        x = x - y * (t - t_next);
        on_step(i + 1, steps);
    }
    Ok(x)
}
