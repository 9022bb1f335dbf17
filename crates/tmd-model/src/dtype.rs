//! Running a whole module in another float dtype (bf16 inference of the VAE and of umT5).
//!
//! The DiT has its own mixed policy ([`crate::dit::Precision`]: bf16 matrix products, f32 stream),
//! because that is what the original's autocast does. The reference runs the VAE and the text
//! encoder differently: diffusers and the Wan2.1 code load them with `torch_dtype=bfloat16` and
//! every operation, convolutions and norms included, computes in bf16 (umT5's RMS norms and
//! softmax in f32, as [`crate::t5`] already does). [`cast_float_params`] gives a module that
//! behaviour: its float parameters are cast, and the modules' forward passes keep the dtype of
//! their weights (every tensor they create is made in the input's dtype).
//!
//! Only backends with the dtype can run it ([`supports`]); NdArray has no bf16, so there the
//! models stay f32 (and the dtype-following code paths are tested in f64).

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::DType;

/// Whether `B` stores and computes floats of `dtype` on `device`.
pub fn supports<B: Backend>(device: &B::Device, dtype: DType) -> bool {
    B::supports_dtype(device, dtype)
}

/// `module` with every float parameter cast to `dtype` (integer and bool parameters untouched).
/// Parameter ids are kept, so a cast module still matches its record's keys.
pub fn cast_float_params<B: Backend, M: Module<B>>(module: M, dtype: DType) -> M {
    struct Cast(DType);
    impl<B: Backend> ModuleMapper<B> for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, tensor, mapper) = param.consume();
            let tensor = if tensor.dtype() == self.0 {
                tensor
            } else {
                tensor.cast(self.0)
            };
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    module.map(&mut Cast(dtype))
}

/// Zeros of `x`'s dtype and device.
pub(crate) fn zeros_as<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    shape: [usize; D],
) -> Tensor<B, D> {
    Tensor::zeros(shape, (&x.device(), x.dtype()))
}

/// `x` padded with zeros of its own dtype: `padding[d] = (before, after)` for each dimension.
///
/// burn 0.21's `Tensor::pad` builds the padded tensor in the device's default float dtype, so on
/// LibTorch a bf16 tensor came out f32. This pads by concatenation instead.
///
/// # Shapes
/// - `x`: any rank `D`; output: each dimension grown by its `before + after`
pub fn pad_zeros<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    padding: [(usize, usize); D],
) -> Tensor<B, D> {
    let mut x = x;
    for (dim, &(before, after)) in padding.iter().enumerate() {
        if before == 0 && after == 0 {
            continue;
        }
        let mut parts = Vec::with_capacity(3);
        let mut shape = x.dims();
        if before > 0 {
            shape[dim] = before;
            parts.push(zeros_as(&x, shape));
        }
        let after_part = (after > 0).then(|| {
            shape[dim] = after;
            zeros_as(&x, shape)
        });
        parts.push(x);
        parts.extend(after_part);
        x = Tensor::cat(parts, dim);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::ops::PadMode;
    use burn::tensor::Distribution;

    type B = NdArray<f32>;

    #[test]
    fn pad_zeros_equals_burn_pad_and_keeps_the_dtype() {
        let dev = Default::default();
        let x = Tensor::<B, 3>::random([2, 3, 4], Distribution::Normal(0.0, 1.0), &dev);
        let want = x
            .clone()
            .pad([(1, 0), (0, 2), (3, 1)], PadMode::Constant(0.0));
        let got = pad_zeros(x.clone(), [(1, 0), (0, 2), (3, 1)]);
        assert_eq!(got.dims(), want.dims());
        got.to_data().assert_eq(&want.to_data(), true);

        let x64 = x.cast(DType::F64);
        let got = pad_zeros(x64, [(0, 1), (2, 0), (0, 0)]);
        assert_eq!(got.dtype(), DType::F64);
        assert_eq!(got.dims(), [3, 5, 4]);
    }

    #[test]
    fn cast_float_params_casts_every_float_parameter() {
        let dev = Default::default();
        let lin = burn::nn::LinearConfig::new(3, 2).init::<B>(&dev);
        let lin = cast_float_params(lin, DType::F64);
        assert_eq!(lin.weight.val().dtype(), DType::F64);
        assert_eq!(lin.bias.as_ref().unwrap().val().dtype(), DType::F64);
        let y = lin.forward(Tensor::<B, 2>::ones([1, 3], &dev).cast(DType::F64));
        assert_eq!(y.dtype(), DType::F64);
    }
}
