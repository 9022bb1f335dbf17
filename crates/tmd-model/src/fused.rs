//! Fused kernels for the DiT's elementwise work, where the backend has them.
//!
//! burn 0.21 runs a tanh GELU, an RMSNorm, a linear layer's bias and RoPE as chains of separate
//! elementwise kernels: at Wan2.1 scale (32,760 tokens) those passes over `[L, dim]` and
//! `[L, ffn_dim]` tensors cost as much as the GEMMs (benches/NOTES.md, 2026-11-27 evening, the
//! Nsight Compute profile of one 1.3B block). On burn's LibTorch backend (inference) each
//! function here is one PyTorch kernel instead: `gelu(approximate="tanh")`, `rms_norm`,
//! `layer_norm`, `addcmul` for the modulation and the gated residuals, `addmm` with the bias in
//! the GEMM's epilogue, and RoPE as one complex multiplication. On every other
//! backend, and under autodiff, it is the plain burn composition, so training and the parity
//! tests (NdArray) are unchanged. Values agree to float rounding (tests/libtorch.rs in xtask).

use burn::nn::RmsNorm;
use burn::prelude::*;
use burn::tensor::activation::gelu_approximate;

/// Whether `B` is burn's LibTorch backend itself (not an autodiff wrapper): where the fused paths
/// of this module, and PyTorch's own convolutions ([`crate::conv`]), are taken.
pub fn is_libtorch<B: Backend>() -> bool {
    #[cfg(feature = "tch")]
    {
        std::any::TypeId::of::<B>() == std::any::TypeId::of::<burn::backend::LibTorch>()
    }
    #[cfg(not(feature = "tch"))]
    {
        false
    }
}

/// SiLU, `x * sigmoid(x)` (the VAE's activation): one PyTorch kernel on LibTorch.
///
/// # Shapes
/// - `x`: any; output: the same
pub fn silu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "tch")]
    let x = match libtorch::unary(x, |t| t.silu()) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::silu(x)
}

/// `x * gamma * scale / max(||x||_2 over dim 1, eps)`: the Wan VAE's channel RMS norm
/// (`F.normalize(x, dim=1) * sqrt(C) * gamma`) as three kernels, in `x`'s dtype (the norm's
/// reduction accumulates in f32 inside PyTorch). `Err(x)` where the backend has no fused path.
///
/// # Shapes
/// - `x`: `[batch, C, ...]`; `gamma`: broadcastable to `x` (`[1, C, 1, ...]`); output: as `x`
pub fn channel_l2_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: &Tensor<B, D>,
    scale: f64,
    eps: f64,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    #[cfg(feature = "tch")]
    {
        libtorch::binary(x, gamma.clone(), |x, g| {
            let norm = x
                .norm_scalaropt_dim(2.0, [1i64].as_slice(), true)
                .clamp_min(eps);
            (x * (g * scale)) / norm
        })
    }
    #[cfg(not(feature = "tch"))]
    {
        let _ = (gamma, scale, eps);
        Err(x)
    }
}

/// The values of `x` (integers in `0..=255`, e.g. quantised pixels) as bytes on the host, in
/// `x`'s logical (row-major) order. On LibTorch the cast to u8 runs on the device and only the
/// bytes are copied (burn-tch's own int readback goes through i64: 8x the bytes, then a host
/// conversion); elsewhere the f32 values are narrowed in one pass.
///
/// # Errors
/// The data could not be read back as f32 (a backend storing another float type without
/// converting).
pub fn to_host_u8<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<Vec<u8>, String> {
    #[cfg(feature = "tch")]
    let x = match libtorch::to_u8(x) {
        Ok(bytes) => return bytes,
        Err(x) => x,
    };
    let values = x
        .cast(burn::tensor::DType::F32)
        .into_data()
        .into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    Ok(values.into_iter().map(|v| v as u8).collect())
}

/// Whether [`to_host_u8`] copies a CUDA tensor to the host through a page-locked staging buffer
/// (the default) or through pageable memory (`TMD_READBACK=pageable`, for comparing the two;
/// benches/NOTES.md). Read once per process.
pub fn pinned_readback() -> bool {
    static PINNED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PINNED.get_or_init(|| {
        !std::env::var("TMD_READBACK").is_ok_and(|v| v.eq_ignore_ascii_case("pageable"))
    })
}

/// Tanh-approximated GELU (Wan's FFN activation).
///
/// # Shapes
/// - `x`: any; output: the same
pub fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "tch")]
    let x = match libtorch::unary(x, |t| t.gelu("tanh")) {
        Ok(y) => return y,
        Err(x) => x,
    };
    gelu_approximate(x)
}

/// `norm.forward(x)`: RMSNorm over the last dimension with the learned scale.
///
/// # Shapes
/// - `x`: `[..., d]`; output: the same
pub fn rms_norm<B: Backend, const D: usize>(norm: &RmsNorm<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "tch")]
    let x = {
        let gamma = norm.gamma.val();
        let eps = norm.epsilon;
        match libtorch::binary(x, gamma, |x, g| {
            let d = *x.size().last().expect("rank >= 1");
            x.rms_norm([d], Some(g), eps)
        }) {
            Ok(y) => return y,
            Err(x) => x,
        }
    };
    norm.forward(x)
}

/// `x W + b` with bf16 inputs, weight and bias and the output in the weight's dtype (the
/// bf16-matmul policy, as `dit::precision::matmul_bias_with`), the bias added in the GEMM's
/// epilogue. On CUDA an f32 output is the GEMM's f32 accumulator itself, not rounded to bf16
/// first: one rounding fewer than the composed path (and than the original's autocast).
/// `Err(x)` where the backend has no fused path (the caller then composes it).
///
/// # Shapes
/// - `x`: `[..., d_in]`, `weight`: `[d_in, d_out]`, `bias`: `[d_out]`; output: `[..., d_out]`
pub fn linear_bf16<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    #[cfg(feature = "tch")]
    {
        libtorch::linear_bf16(x, weight, bias)
    }
    #[cfg(not(feature = "tch"))]
    {
        let _ = (weight, bias);
        Err(x)
    }
}

/// Adaptive modulation `x * (1 + scale) + shift`.
///
/// # Shapes
/// - `x`: `[batch, L, dim]`; `shift`, `scale`: `[batch, 1, dim]`; output: `[batch, L, dim]`
pub fn modulate<B: Backend>(
    x: Tensor<B, 3>,
    shift: Tensor<B, 3>,
    scale: Tensor<B, 3>,
) -> Tensor<B, 3> {
    #[cfg(feature = "tch")]
    let (x, shift, scale) = match libtorch::ternary(x, shift, scale, |x, shift, scale| {
        shift.addcmul(x, &(scale + 1.0))
    }) {
        Ok(y) => return y,
        Err(args) => args,
    };
    x * (scale + 1.0) + shift
}

/// Gated residual `x + y * gate`.
///
/// # Shapes
/// - `x`, `y`: `[batch, L, dim]`; `gate`: `[batch, 1, dim]`; output: `[batch, L, dim]`
pub fn add_gated<B: Backend>(x: Tensor<B, 3>, y: Tensor<B, 3>, gate: Tensor<B, 3>) -> Tensor<B, 3> {
    #[cfg(feature = "tch")]
    let (x, y, gate) = match libtorch::ternary(x, y, gate, |x, y, gate| x.addcmul(y, gate)) {
        Ok(out) => return out,
        Err(args) => args,
    };
    x + y * gate
}

/// LayerNorm over the last dimension without scale or bias: `(x - mean) / sqrt(var + eps)`,
/// biased variance.
///
/// # Shapes
/// - `x`: `[..., d]`; output: the same
pub fn layer_norm_plain<B: Backend, const D: usize>(x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
    #[cfg(feature = "tch")]
    let x = match libtorch::unary(x, |t| {
        let d = *t.size().last().expect("rank >= 1");
        t.layer_norm([d], None::<&tch::Tensor>, None::<&tch::Tensor>, eps, true)
    }) {
        Ok(y) => return y,
        Err(x) => x,
    };
    let (var, mean) = x.clone().var_mean_bias(D - 1);
    (x - mean) / (var + eps).sqrt()
}

/// The feed-forward network `fc2(gelu_tanh(fc1(x)))` under the bf16-matmul policy, with the
/// hidden activation kept in bf16 between the two products (as the original's autocast does:
/// PyTorch's bf16 GELU computes in f32 and rounds once, which is what the composed path's f32 GELU
/// followed by the bf16 rounding of `fc2`'s input gives). `Err(x)` where the backend has no fused
/// path.
///
/// # Shapes
/// - `x`: `[batch, L, dim]`; weights `[dim, ffn]`, `[ffn, dim]` (burn layout); output: `[batch, L, dim]`
pub fn ffn_bf16<B: Backend>(
    x: Tensor<B, 3>,
    fc1: (&Tensor<B, 2>, Option<&Tensor<B, 1>>),
    fc2: (&Tensor<B, 2>, Option<&Tensor<B, 1>>),
) -> Result<Tensor<B, 3>, Tensor<B, 3>> {
    #[cfg(feature = "tch")]
    {
        libtorch::ffn_bf16(x, fc1, fc2)
    }
    #[cfg(not(feature = "tch"))]
    {
        let _ = (fc1, fc2);
        Err(x)
    }
}

/// Rotates the interleaved channel pairs `(x[2k], x[2k+1])` of each token by its angles, as
/// complex numbers: `(re, im) * (cos, sin)`. `Err(x)` where the backend has no fused path.
///
/// # Shapes
/// - `x`: `[batch, heads, L, head_dim]`
/// - `cos`, `sin`: `[1, 1, L, head_dim / 2, 1]`
/// - output: `[batch, heads, L, head_dim]`
pub fn rope<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 5>,
    sin: &Tensor<B, 5>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    #[cfg(feature = "tch")]
    {
        libtorch::rope(x, cos, sin)
    }
    #[cfg(not(feature = "tch"))]
    {
        let _ = (cos, sin);
        Err(x)
    }
}

#[cfg(feature = "tch")]
mod libtorch {
    //! The LibTorch side: a tensor of `B` is handed to PyTorch only when `B` is burn's
    //! `LibTorch` (f32) backend itself, checked by type (autodiff wrappers are left alone).

    use std::any::TypeId;

    use burn::backend::libtorch::TchTensor;
    use burn::backend::LibTorch;
    use burn::prelude::*;
    use burn::tensor::TensorPrimitive;
    use tch::Kind;

    use crate::same_type;

    fn is_libtorch<B: Backend>() -> bool {
        TypeId::of::<B>() == TypeId::of::<LibTorch>()
    }

    /// The PyTorch tensor of `x` (a shallow handle on the same storage). Only for `LibTorch`.
    fn tch_of<B: Backend, const D: usize>(x: &Tensor<B, D>) -> tch::Tensor {
        let primitive = x.clone().into_primitive().tensor();
        let tch: TchTensor = same_type(primitive).expect("checked: B is LibTorch");
        tch.tensor
    }

    /// A burn tensor of `B` (= `LibTorch`) from a PyTorch tensor.
    fn from_tch<B: Backend, const D: usize>(t: tch::Tensor) -> Tensor<B, D> {
        let primitive: B::FloatTensorPrimitive =
            same_type(TchTensor::new(t)).expect("checked: B is LibTorch");
        Tensor::from_primitive(TensorPrimitive::Float(primitive))
    }

    /// `Err(x)` only where `B` is not LibTorch; a LibTorch failure is `Ok(Err(reason))`, never
    /// a silent fall-back to the slow path.
    #[allow(clippy::type_complexity)]
    pub fn to_u8<B: Backend, const D: usize>(
        x: Tensor<B, D>,
    ) -> Result<Result<Vec<u8>, String>, Tensor<B, D>> {
        if !is_libtorch::<B>() {
            return Err(x);
        }
        // tch converts only rank-1 tensors to a `Vec`: flatten (row-major, as burn's order).
        let t = tch_of(&x).to_kind(Kind::Uint8).contiguous().view([-1]);
        let host = match t.device() {
            tch::Device::Cuda(index) if super::pinned_readback() => {
                // A non-blocking copy to the CPU lands in page-locked memory (PyTorch allocates
                // the destination from its caching host allocator, kept for the next clip): one
                // DMA instead of a pageable copy staged through the driver's bounce buffers
                // (`Tensor::pin_memory(device)` does the same but warns on every call that its
                // argument is deprecated). The copy is asynchronous: wait for it.
                let host = match t.f_to_device_(tch::Device::Cpu, Kind::Uint8, true, false) {
                    Ok(host) => host,
                    Err(e) => return Ok(Err(format!("device-to-host copy: {e}"))),
                };
                tch::Cuda::synchronize(index as i64);
                host
            }
            _ => t,
        };
        Ok(Vec::<u8>::try_from(&host).map_err(|e| format!("reading the bytes: {e}")))
    }

    pub fn unary<B: Backend, const D: usize>(
        x: Tensor<B, D>,
        f: impl FnOnce(&tch::Tensor) -> tch::Tensor,
    ) -> Result<Tensor<B, D>, Tensor<B, D>> {
        if !is_libtorch::<B>() {
            return Err(x);
        }
        Ok(from_tch(f(&tch_of(&x))))
    }

    pub fn binary<B: Backend, const D: usize, const E: usize>(
        x: Tensor<B, D>,
        y: Tensor<B, E>,
        f: impl FnOnce(&tch::Tensor, &tch::Tensor) -> tch::Tensor,
    ) -> Result<Tensor<B, D>, Tensor<B, D>> {
        if !is_libtorch::<B>() {
            return Err(x);
        }
        Ok(from_tch(f(&tch_of(&x), &tch_of(&y))))
    }

    #[allow(clippy::type_complexity)]
    pub fn ternary<B: Backend>(
        x: Tensor<B, 3>,
        y: Tensor<B, 3>,
        z: Tensor<B, 3>,
        f: impl FnOnce(&tch::Tensor, &tch::Tensor, &tch::Tensor) -> tch::Tensor,
    ) -> Result<Tensor<B, 3>, (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>)> {
        if !is_libtorch::<B>() {
            return Err((x, y, z));
        }
        Ok(from_tch(f(&tch_of(&x), &tch_of(&y), &tch_of(&z))))
    }

    pub fn linear_bf16<B: Backend, const D: usize>(
        x: Tensor<B, D>,
        weight: &Tensor<B, 2>,
        bias: Option<&Tensor<B, 1>>,
    ) -> Result<Tensor<B, D>, Tensor<B, D>> {
        if !is_libtorch::<B>() {
            return Err(x);
        }
        let t = tch_of(&x);
        let kind = tch_of(weight).kind();
        let size = t.size();
        let d_in = *size.last().expect("rank >= 1");
        let x2 = t.to_kind(Kind::BFloat16).reshape([-1, d_in]);
        let y = addmm_bf16(&x2, weight, bias, kind);
        let mut out_size = size;
        *out_size.last_mut().expect("rank >= 1") = y.size()[1];
        Ok(from_tch(y.reshape(out_size)))
    }

    /// `x W + b` with bf16 `x`, `W`, `b` on 2-D PyTorch tensors, the bias in the GEMM's
    /// epilogue, returned as `out`. On CUDA an f32 `out` comes straight from the GEMM's f32
    /// accumulator (`addmm` with `out_dtype`), saving the bf16 rounding and a conversion pass; on
    /// the CPU (no `out_dtype` there) the product is rounded to bf16 and converted.
    fn addmm_bf16<B: Backend>(
        x2: &tch::Tensor,
        weight: &Tensor<B, 2>,
        bias: Option<&Tensor<B, 1>>,
        out: Kind,
    ) -> tch::Tensor {
        let w = tch_of(weight).to_kind(Kind::BFloat16);
        let b = bias.map(|b| tch_of(b).to_kind(Kind::BFloat16));
        if out == Kind::Float && x2.device().is_cuda() {
            if let Some(b) = b {
                return b.addmm_dtype(x2, &w, Kind::Float);
            }
            return x2.mm_dtype(&w, Kind::Float);
        }
        match b {
            Some(b) => b.addmm(x2, &w),
            None => x2.matmul(&w),
        }
        .to_kind(out)
    }

    #[allow(clippy::type_complexity)]
    pub fn ffn_bf16<B: Backend>(
        x: Tensor<B, 3>,
        fc1: (&Tensor<B, 2>, Option<&Tensor<B, 1>>),
        fc2: (&Tensor<B, 2>, Option<&Tensor<B, 1>>),
    ) -> Result<Tensor<B, 3>, Tensor<B, 3>> {
        if !is_libtorch::<B>() {
            return Err(x);
        }
        let t = tch_of(&x);
        let (kind, [b, l, d]) = (
            tch_of(fc1.0).kind(),
            <[i64; 3]>::try_from(t.size()).expect("rank 3"),
        );
        let x2 = t.to_kind(Kind::BFloat16).reshape([b * l, d]);
        let h = addmm_bf16(&x2, fc1.0, fc1.1, Kind::BFloat16).gelu("tanh");
        let y = addmm_bf16(&h, fc2.0, fc2.1, kind);
        let d_out = y.size()[1];
        Ok(from_tch(y.reshape([b, l, d_out])))
    }

    pub fn rope<B: Backend>(
        x: Tensor<B, 4>,
        cos: &Tensor<B, 5>,
        sin: &Tensor<B, 5>,
    ) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
        if !is_libtorch::<B>() {
            return Err(x);
        }
        let t = tch_of(&x);
        let kind = t.kind();
        let [b, h, l, d] = <[i64; 4]>::try_from(t.size()).expect("rank 4");
        // [b, h, L, d] -> [b, h, L, d/2] complex: a view of the same memory when the channels
        // are contiguous and every other stride is even (the head split's transposed view is).
        let pairs = t.to_kind(Kind::Float).reshape([b, h, l, d / 2, 2]);
        let stride = pairs.stride();
        let pairs = if stride[4] == 1 && stride[..4].iter().all(|s| s % 2 == 0) {
            pairs
        } else {
            pairs.contiguous()
        };
        let rotation = tch::Tensor::complex(
            &tch_of(cos).reshape([1, 1, l, d / 2]).to_kind(Kind::Float),
            &tch_of(sin).reshape([1, 1, l, d / 2]).to_kind(Kind::Float),
        );
        let out = (pairs.view_as_complex() * rotation).view_as_real();
        Ok(from_tch(out.reshape([b, h, l, d]).to_kind(kind)))
    }
}

/// The LibTorch paths themselves (only with the `tch` feature: CI has no LibTorch;
/// `LIBTORCH_USE_PYTORCH=1 cargo test -p tmd-model --features tch --lib fused`, with PyTorch's
/// `lib/` folder on `LD_LIBRARY_PATH`: test binaries get no run path).
#[cfg(all(test, feature = "tch"))]
mod tch_tests {
    use burn::backend::libtorch::LibTorchDevice;
    use burn::backend::LibTorch;
    use burn::prelude::*;

    /// A rank-4, permuted (non-contiguous) tensor comes back through PyTorch's own readback (not
    /// the generic fall-back), in burn's logical row-major order. tch converts only rank-1
    /// tensors to a `Vec`; before the flatten every clip silently took the slow f32 path.
    #[test]
    fn to_u8_takes_the_libtorch_path_for_a_permuted_4d_tensor() {
        let device = LibTorchDevice::Cpu;
        let values: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let x = Tensor::<LibTorch, 1>::from_floats(values.as_slice(), &device)
            .reshape([3, 2, 2, 2])
            .permute([1, 2, 3, 0]);
        let expected: Vec<u8> = x
            .clone()
            .into_data()
            .into_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(|v| v as u8)
            .collect();
        let bytes = super::libtorch::to_u8(x)
            .ok()
            .expect("LibTorch tensors take the LibTorch path")
            .expect("the readback succeeds");
        assert_eq!(bytes, expected);
        assert_ne!(
            bytes,
            (0..24).collect::<Vec<u8>>(),
            "the permutation is honoured"
        );
    }
}
