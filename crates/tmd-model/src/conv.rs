//! Convolution as a sum of matrix products, one per kernel tap.
//!
//! `y[b, o, p] = bias[o] + sum_{tap} W[o, :, tap] . x[b, :, p * stride + tap]`: for each kernel
//! tap, a strided window of the (padded) input is copied out and multiplied by that tap's
//! `[out, in]` weight matrix. Memory stays at one input-sized window (no `k^3`-times im2col
//! buffer), and everything is slicing, reshapes and matmuls, whose backward passes every burn
//! backend runs well. This exists because burn 0.21's NdArray convolution is a direct loop whose
//! weight gradient (a convolution with a kernel the size of the image) takes minutes per step at
//! the bundled VAE's sizes, and because the CUDA backend compiles and autotunes a kernel for every
//! convolution shape, forward and backward; matmuls of a few shapes avoid both. The results equal
//! `burn::tensor::module::conv3d` / `conv2d` up to float summation order (tested).

use burn::prelude::*;

/// Strided window of `x` along `dim`: elements `start, start + stride, ...` (`count` of them).
fn window<B: Backend>(
    x: Tensor<B, 5>,
    dim: usize,
    start: usize,
    count: usize,
    stride: usize,
) -> Tensor<B, 5> {
    if stride == 1 {
        return x.narrow(dim, start, count);
    }
    // Take `count * stride` elements (zero-padded at the end if the input is short), view them
    // as [count, stride] and keep column 0.
    let mut x = x;
    let len = x.dims()[dim];
    let need = start + count * stride;
    if need > len {
        let pad_shape = dims_with(&x.dims(), dim, need - len);
        let zeros = Tensor::zeros(pad_shape, (&x.device(), x.dtype()));
        x = Tensor::cat(vec![x, zeros], dim);
    }
    let x = x.narrow(dim, start, count * stride);
    let dims = x.dims();
    let mut split = [0usize; 6];
    split[..dim].copy_from_slice(&dims[..dim]);
    split[dim] = count;
    split[dim + 1] = stride;
    split[dim + 2..].copy_from_slice(&dims[dim + 1..]);
    x.reshape(split)
        .narrow(dim + 1, 0, 1)
        .reshape(dims_with(&dims, dim, count))
}

fn dims_with<const D: usize>(dims: &[usize; D], dim: usize, value: usize) -> [usize; D] {
    let mut d = *dims;
    d[dim] = value;
    d
}

/// What `TMD_CONV` asks for (read once per process): `Some(true)` for `native` (burn's own
/// convolution kernels), `Some(false)` for `taps` (the per-tap matmuls), `None` when unset.
fn requested() -> Option<bool> {
    static MODE: std::sync::OnceLock<Option<bool>> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| {
        let v = std::env::var("TMD_CONV").ok()?;
        if v.eq_ignore_ascii_case("native") {
            Some(true)
        } else if v.eq_ignore_ascii_case("taps") {
            Some(false)
        } else {
            None
        }
    })
}

/// Whether `TMD_CONV=native` asks for burn's own convolution kernels on every backend.
pub fn native_requested() -> bool {
    requested() == Some(true)
}

/// Whether convolutions on `B` go through the backend's own kernel rather than the per-tap
/// matmuls. Per-tap is the fast path on NdArray (measured: burn 0.21's direct convolution loop)
/// and under autodiff (its backward); burn's CUDA convolution compiles and autotunes per shape.
/// LibTorch's own convolution (oneDNN on the CPU, cuDNN on GPUs, in bf16 where the weights are)
/// is the fast one there (measured: 0.30 against 1.44 s per VAE step on 2 CPU cores;
/// benches/NOTES.md for the GPU), so it is the default on that backend. `TMD_CONV=native|taps`
/// overrides the choice for every backend.
pub fn use_native<B: Backend>() -> bool {
    requested().unwrap_or_else(crate::fused::is_libtorch::<B>)
}

/// 3D convolution (no dilation, no groups): [`conv3d_taps`], or burn's `conv3d` where
/// [`use_native`].
///
/// # Shapes
/// As [`conv3d_taps`].
pub fn conv3d<B: Backend>(
    x: Tensor<B, 5>,
    weight: Tensor<B, 5>,
    bias: Option<Tensor<B, 1>>,
    stride: [usize; 3],
    padding: [usize; 3],
) -> Tensor<B, 5> {
    if use_native::<B>() {
        burn::tensor::module::conv3d(
            x,
            weight,
            bias,
            burn::tensor::ops::ConvOptions::new(stride, padding, [1, 1, 1], 1),
        )
    } else {
        conv3d_taps(x, weight, bias, stride, padding)
    }
}

/// 3D convolution (no dilation, no groups) computed as one matmul per kernel tap.
///
/// # Shapes
/// - `x`: `[batch, in, t, h, w]`
/// - `weight`: `[out, in, kt, kh, kw]`
/// - `bias`: `[out]`
/// - returns `[batch, out, (t + 2 pt - kt) / st + 1, (h + 2 ph - kh) / sh + 1, (w + 2 pw - kw) / sw + 1]`
pub fn conv3d_taps<B: Backend>(
    x: Tensor<B, 5>,
    weight: Tensor<B, 5>,
    bias: Option<Tensor<B, 1>>,
    stride: [usize; 3],
    padding: [usize; 3],
) -> Tensor<B, 5> {
    let [out_c, in_c, kt, kh, kw] = weight.dims();
    // Zeros of x's own dtype (burn's `pad` would make them in the default float dtype).
    let x = crate::dtype::pad_zeros(
        x,
        [
            (0, 0),
            (0, 0),
            (padding[0], padding[0]),
            (padding[1], padding[1]),
            (padding[2], padding[2]),
        ],
    );
    let [b, c, t, h, w] = x.dims();
    assert_eq!(
        c, in_c,
        "conv3d_taps: input has {c} channels, weight expects {in_c}"
    );
    let to = (t - kt) / stride[0] + 1;
    let ho = (h - kh) / stride[1] + 1;
    let wo = (w - kw) / stride[2] + 1;
    let m = to * ho * wo;
    // [out, in, kt*kh*kw] -> per tap [out, in]
    let weight = weight.reshape([out_c, in_c, kt * kh * kw]);
    let mut acc: Option<Tensor<B, 3>> = None;
    for a in 0..kt {
        let xa = window(x.clone(), 2, a, to, stride[0]);
        for bb in 0..kh {
            let xb = window(xa.clone(), 3, bb, ho, stride[1]);
            for cc in 0..kw {
                let xc = window(xb.clone(), 4, cc, wo, stride[2]).reshape([b, in_c, m]);
                let tap = (a * kh + bb) * kw + cc;
                let wt = weight
                    .clone()
                    .narrow(2, tap, 1)
                    .reshape([1, out_c, in_c])
                    .expand([b, out_c, in_c]);
                let y = wt.matmul(xc);
                acc = Some(match acc {
                    Some(s) => s + y,
                    None => y,
                });
            }
        }
    }
    let mut y = acc.expect("kernel has at least one tap");
    if let Some(bias) = bias {
        y = y + bias.reshape([1, out_c, 1]);
    }
    y.reshape([b, out_c, to, ho, wo])
}

/// 2D convolution (no dilation, no groups) as [`conv3d_taps`] with one frame.
///
/// # Shapes
/// - `x`: `[batch, in, h, w]`, `weight`: `[out, in, kh, kw]`, `bias`: `[out]`
/// - returns `[batch, out, (h + 2 ph - kh) / sh + 1, (w + 2 pw - kw) / sw + 1]`
pub fn conv2d_taps<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    let [o, i, kh, kw] = weight.dims();
    let y = conv3d_taps(
        x.reshape([b, c, 1, h, w]),
        weight.reshape([o, i, 1, kh, kw]),
        bias,
        [1, stride[0], stride[1]],
        [0, padding[0], padding[1]],
    );
    let [_, o2, _, h2, w2] = y.dims();
    y.reshape([b, o2, h2, w2])
}

/// Runs a burn [`Conv2d`](burn::nn::conv::Conv2d) module (explicit symmetric padding or none,
/// no dilation, no groups) through [`conv2d_taps`], or through the module itself where
/// [`use_native`].
pub fn conv2d_module<B: Backend>(
    conv: &burn::nn::conv::Conv2d<B>,
    x: Tensor<B, 4>,
) -> Tensor<B, 4> {
    if use_native::<B>() {
        return conv.forward(x);
    }
    let [ph, pw] = match &conv.padding {
        burn::nn::PaddingConfig2d::Explicit(top, left, bottom, right) => {
            assert!(
                top == bottom && left == right,
                "conv2d_module: asymmetric padding"
            );
            [*top, *left]
        }
        burn::nn::PaddingConfig2d::Valid => [0, 0],
        other => panic!("conv2d_module: unsupported padding {other:?}"),
    };
    conv2d_taps(
        x,
        conv.weight.val(),
        conv.bias.as_ref().map(|b| b.val()),
        conv.stride,
        [ph, pw],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::module::{conv2d, conv3d};
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::Distribution;

    type B = NdArray;

    fn max_abs_diff<const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn conv3d_taps_matches_burn_conv3d() {
        let dev = Default::default();
        for (stride, padding, k) in [
            ([1, 1, 1], [0, 1, 1], [3, 3, 3]),
            ([2, 1, 1], [0, 0, 0], [3, 1, 1]),
            ([1, 2, 2], [1, 0, 1], [1, 3, 3]),
            ([1, 1, 1], [0, 0, 0], [1, 1, 1]),
        ] {
            let x = Tensor::<B, 5>::random([2, 3, 5, 7, 6], Distribution::Normal(0.0, 1.0), &dev);
            let w = Tensor::<B, 5>::random(
                [4, 3, k[0], k[1], k[2]],
                Distribution::Normal(0.0, 1.0),
                &dev,
            );
            let bias = Tensor::<B, 1>::random([4], Distribution::Normal(0.0, 1.0), &dev);
            let want = conv3d(
                x.clone(),
                w.clone(),
                Some(bias.clone()),
                ConvOptions::new(stride, padding, [1, 1, 1], 1),
            );
            let got = conv3d_taps(x, w, Some(bias), stride, padding);
            assert_eq!(
                got.dims(),
                want.dims(),
                "stride {stride:?} padding {padding:?}"
            );
            let d = max_abs_diff(got, want);
            assert!(
                d < 1e-4,
                "stride {stride:?} padding {padding:?}: max diff {d}"
            );
        }
    }

    #[test]
    fn conv2d_taps_matches_burn_conv2d() {
        let dev = Default::default();
        for (stride, padding) in [([1, 1], [1, 1]), ([2, 2], [1, 1]), ([2, 2], [0, 0])] {
            let x = Tensor::<B, 4>::random([2, 5, 9, 8], Distribution::Normal(0.0, 1.0), &dev);
            let w = Tensor::<B, 4>::random([6, 5, 3, 3], Distribution::Normal(0.0, 1.0), &dev);
            let want = conv2d(
                x.clone(),
                w.clone(),
                None,
                ConvOptions::new(stride, padding, [1, 1], 1),
            );
            let got = conv2d_taps(x, w, None, stride, padding);
            assert_eq!(got.dims(), want.dims());
            assert!(max_abs_diff(got, want) < 1e-4);
        }
    }

    #[test]
    fn gradients_match_burn_conv3d() {
        use burn::backend::Autodiff;
        type A = Autodiff<NdArray>;
        let dev = Default::default();
        let x0 = Tensor::<A, 5>::random([1, 2, 4, 5, 5], Distribution::Normal(0.0, 1.0), &dev);
        let w0 = Tensor::<A, 5>::random([3, 2, 3, 3, 3], Distribution::Normal(0.0, 1.0), &dev);
        let grads = |taps: bool| {
            let x = x0.clone().detach().require_grad();
            let w = w0.clone().detach().require_grad();
            let y = if taps {
                conv3d_taps(x.clone(), w.clone(), None, [1, 2, 1], [1, 1, 1])
            } else {
                conv3d(
                    x.clone(),
                    w.clone(),
                    None,
                    ConvOptions::new([1, 2, 1], [1, 1, 1], [1, 1, 1], 1),
                )
            };
            let g = y.powi_scalar(2).sum().backward();
            (x.grad(&g).unwrap(), w.grad(&g).unwrap())
        };
        let (gx_a, gw_a) = grads(true);
        let (gx_b, gw_b) = grads(false);
        assert!((gx_a - gx_b).abs().max().into_scalar() < 1e-3);
        assert!((gw_a - gw_b).abs().max().into_scalar() < 1e-3);
    }
}
