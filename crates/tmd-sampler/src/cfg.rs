//! Classifier-free guidance (Ho & Salimans 2022): `v = v_uncond + g (v_cond - v_uncond)`.
//!
//! [`cfg_combine`] is the one place that forms the guided prediction; the teacher pipeline, the distillation's
//! teacher targets (TMD.md: teacher x0 with CFG 5 and the negative prompt; the stage-1 target
//! `v_unc + 3 (v - v_unc)`) all call it. Two ways to get the two branches:
//!
//! * [`CfgMode::TwoPass`] (Wan's original code and diffusers' `WanPipeline`): two forward passes of batch `b`,
//!   one with the prompt, one with the negative prompt. Peak activation memory of one pass; what the reference does.
//! * [`CfgMode::Batched`]: one forward pass of batch `2b`: inputs [`cfg_duplicate`]d, text contexts stacked with
//!   [`cfg_batch`] as `[uncond; cond]`, output split and combined by [`cfg_combine_batched`]. One launch per layer
//!   (better GPU utilisation for small latents), twice the activation memory.
//!
//! Both give the same numbers up to kernel rounding; with `g = 1` the unconditional pass can be skipped.

use burn::config::Config;
use burn::tensor::{backend::Backend, Tensor};

use crate::check_same_shape;
use crate::error::{Result, SamplerError};

/// How the conditional and unconditional branches of CFG are evaluated.
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum CfgMode {
    /// Two forward passes of batch `b` (the reference's way).
    TwoPass,
    /// One forward pass of batch `2b`, ordered `[uncond; cond]` along dim 0.
    Batched,
}

/// Which branch a model call computes, passed to the model closure of [`guided`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CfgBranch {
    /// Batch `b`, conditioned on the prompt.
    Cond,
    /// Batch `b`, conditioned on the negative (or empty) prompt.
    Uncond,
    /// Batch `2b`: the input is `[x; x]`, the context must be `[uncond; cond]`, the output `[v_uncond; v_cond]`.
    Both,
}

/// The guided prediction `uncond + scale * (cond - uncond)` (WAN21.md: CFG 5, 6 for 1.3B in its demo).
///
/// # Shapes
/// - `uncond`, `cond`: the same shape (any rank), e.g. `[batch, channels, frames, height, width]`.
///
/// # Returns
/// The guided prediction, same shape. Errors if the shapes differ or `scale` is not finite.
pub fn cfg_combine<B: Backend, const D: usize>(
    uncond: Tensor<B, D>,
    cond: Tensor<B, D>,
    scale: f64,
) -> Result<Tensor<B, D>> {
    if !scale.is_finite() {
        return Err(SamplerError::InvalidGuidanceScale { scale });
    }
    check_same_shape("CFG: cond vs uncond prediction", &uncond, &cond)?;
    Ok(uncond.clone().add(cond.sub(uncond).mul_scalar(scale)))
}

/// `[x; x]` along dim 0: the model input for a [`CfgMode::Batched`] call.
///
/// # Shapes
/// - `x`: `[batch, ...]` -> `[2 * batch, ...]`.
pub fn cfg_duplicate<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    Tensor::cat(vec![x.clone(), x], 0)
}

/// `[uncond; cond]` along dim 0: stacks per-branch inputs (text contexts) for a [`CfgMode::Batched`] call.
///
/// # Shapes
/// - `uncond`, `cond`: the same shape `[batch, ...]` -> `[2 * batch, ...]`.
pub fn cfg_batch<B: Backend, const D: usize>(
    uncond: Tensor<B, D>,
    cond: Tensor<B, D>,
) -> Result<Tensor<B, D>> {
    check_same_shape("CFG batch: cond vs uncond input", &uncond, &cond)?;
    Ok(Tensor::cat(vec![uncond, cond], 0))
}

/// Splits a batched output `[uncond; cond]` into `(uncond, cond)`.
///
/// # Shapes
/// - `out`: `[2 * batch, ...]` -> two `[batch, ...]`. Errors on an odd batch.
pub fn cfg_split<B: Backend, const D: usize>(
    out: Tensor<B, D>,
) -> Result<(Tensor<B, D>, Tensor<B, D>)> {
    let batch = out.dims()[0];
    if !batch.is_multiple_of(2) {
        return Err(SamplerError::OddCfgBatch { batch });
    }
    let half = batch / 2;
    let uncond = out.clone().narrow(0, 0, half);
    let cond = out.narrow(0, half, half);
    Ok((uncond, cond))
}

/// [`cfg_split`] then [`cfg_combine`].
///
/// # Shapes
/// - `out`: `[2 * batch, ...]` ordered `[uncond; cond]` -> `[batch, ...]`.
pub fn cfg_combine_batched<B: Backend, const D: usize>(
    out: Tensor<B, D>,
    scale: f64,
) -> Result<Tensor<B, D>> {
    let (uncond, cond) = cfg_split(out)?;
    cfg_combine(uncond, cond, scale)
}

/// The guided velocity at `x`, calling `model(input, branch)` once ([`CfgMode::Batched`] or `scale == 1`) or twice
/// ([`CfgMode::TwoPass`]: cond first, then uncond). The closure chooses the text context from the branch.
///
/// # Shapes
/// - `x`: `[batch, ...]`; the closure gets `[batch, ...]` (or `[2 * batch, ...]` for [`CfgBranch::Both`]) and must
///   return a tensor of the same shape.
pub fn guided<B, const D: usize, E, F>(
    x: Tensor<B, D>,
    scale: f64,
    mode: CfgMode,
    mut model: F,
) -> Result<Tensor<B, D>, E>
where
    B: Backend,
    E: From<SamplerError>,
    F: FnMut(Tensor<B, D>, CfgBranch) -> Result<Tensor<B, D>, E>,
{
    if scale == 1.0 {
        return model(x, CfgBranch::Cond);
    }
    match mode {
        CfgMode::TwoPass => {
            let cond = model(x.clone(), CfgBranch::Cond)?;
            let uncond = model(x, CfgBranch::Uncond)?;
            Ok(cfg_combine(uncond, cond, scale)?)
        }
        CfgMode::Batched => {
            let out = model(cfg_duplicate(x), CfgBranch::Both)?;
            Ok(cfg_combine_batched(out, scale)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::{TensorData, Tolerance};

    type B = NdArray<f32>;

    #[test]
    fn combine_values() {
        let device = Default::default();
        let u = Tensor::<B, 2>::from_floats([[1.0, 2.0]], &device);
        let c = Tensor::<B, 2>::from_floats([[2.0, 0.0]], &device);
        let g = cfg_combine(u.clone(), c.clone(), 5.0).unwrap();
        g.into_data()
            .assert_eq(&TensorData::from([[6.0f32, -8.0]]), false);
        cfg_combine(u.clone(), c.clone(), 1.0)
            .unwrap()
            .into_data()
            .assert_eq(&c.clone().into_data(), false);
        cfg_combine(u.clone(), c.clone(), 0.0)
            .unwrap()
            .into_data()
            .assert_eq(&u.clone().into_data(), false);
        assert!(cfg_combine(u.clone(), Tensor::<B, 2>::zeros([2, 2], &device), 5.0).is_err());
        assert!(cfg_combine(u, c, f64::NAN).is_err());
    }

    #[test]
    fn batched_equals_two_pass() {
        let device = Default::default();
        let x = Tensor::<B, 3>::from_floats([[[1.0, -1.0]], [[0.5, 2.0]]], &device);
        // A toy "model": cond branch scales by 3, uncond by -1, per-sample context given as a [2b] tensor.
        let ctx_c = Tensor::<B, 3>::full([2, 1, 2], 3.0, &device);
        let ctx_u = Tensor::<B, 3>::full([2, 1, 2], -1.0, &device);
        let model = |input: Tensor<B, 3>, branch: CfgBranch| -> Result<Tensor<B, 3>> {
            let ctx = match branch {
                CfgBranch::Cond => ctx_c.clone(),
                CfgBranch::Uncond => ctx_u.clone(),
                CfgBranch::Both => cfg_batch(ctx_u.clone(), ctx_c.clone())?,
            };
            Ok(input.mul(ctx))
        };
        let a = guided(x.clone(), 4.0, CfgMode::TwoPass, model).unwrap();
        let b = guided(x.clone(), 4.0, CfgMode::Batched, model).unwrap();
        a.to_data()
            .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-6));
        // -x + 4 (3x + x) = 15 x
        a.into_data()
            .assert_approx_eq::<f32>(&x.mul_scalar(15.0).into_data(), Tolerance::absolute(1e-6));
        assert!(matches!(
            cfg_split(Tensor::<B, 1>::zeros([3], &device)),
            Err(SamplerError::OddCfgBatch { batch: 3 })
        ));
    }
}
