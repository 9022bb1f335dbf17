//! The VSD (distribution matching) loss of DMD2-v (TMD.md, "Stage 2"):
//!
//! ```text
//! x_hat_t = (1 - t) x_hat + t eps, t ~ shift_5(U[0.001, 0.999])
//! x0_teacher = teacher x0 with CFG (w = 5, negative prompt); x0_fake = fake score x0 (no CFG)
//! w = 1 / mean|x_hat - x0_teacher| per sample (f32)
//! loss = 0.5 * MSE(x_hat, sg(x_hat - w (x0_fake - x0_teacher)))
//! ```
//!
//! Its gradient with respect to the student sample is `w (x0_fake - x0_teacher)` divided by the
//! number of elements of the batch: it moves
//! `x_hat` away from what the fake score (the student's own distribution) denoises to, towards what
//! the teacher does.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// The VSD loss of student samples `x_hat` (tracked) given the two denoisers' `x0` estimates at
/// the same noisy point (untracked).
///
/// # Shapes
/// - `x_hat`: `[batch, c, f, h, w]`; `x0_teacher`, `x0_fake`: same shape, inner backend
/// - returns `[1]`
pub fn vsd_loss<B: AutodiffBackend>(
    x_hat: Tensor<B, 5>,
    x0_teacher: Tensor<B::InnerBackend, 5>,
    x0_fake: Tensor<B::InnerBackend, 5>,
) -> Tensor<B, 1> {
    let dims = x_hat.dims();
    let b = dims[0];
    let x = x_hat.clone().inner();
    let numel: usize = dims[1..].iter().product();
    let scale = (x.clone() - x0_teacher.clone())
        .abs()
        .reshape([b, numel])
        .mean_dim(1)
        .clamp_min(1e-12)
        .recip()
        .reshape([b, 1, 1, 1, 1]);
    let target = x - (x0_fake - x0_teacher) * scale;
    let target = Tensor::<B, 5>::from_inner(target);
    (x_hat - target).powi_scalar(2).mean() * 0.5
}
