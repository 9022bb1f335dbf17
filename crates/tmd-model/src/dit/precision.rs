//! Mixed-precision helpers implementing [`Precision`]: bf16 matrix products with an f32 stream.

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::module::linear;
use burn::tensor::DType;

use super::config::Precision;
use crate::attention::scaled_dot_product;

/// Rounds `x` to bf16 precision and returns it in bf16 when the backend has bf16, else in its
/// own dtype with bf16-rounded values (host emulation, round-to-nearest-even, straight-through
/// gradient).
pub fn to_bf16<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if B::supports_dtype(&x.device(), DType::BF16) {
        return x.cast(DType::BF16);
    }
    let device = x.device();
    let dtype = x.dtype();
    let shape = x.shape();
    let values: Vec<f32> = x
        .to_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap_or_default()
        .into_iter()
        .map(|v| half::bf16::from_f32(v).to_f32())
        .collect();
    let rounded = Tensor::<B, D>::from_data(TensorData::new(values, shape), (&device, dtype));
    // Straight-through: the value of `rounded`, the gradient of `x`. `rounded - x` is exact.
    x.clone() + (rounded - x).detach()
}

/// `y = x W + b` under the precision policy: with [`Precision::Bf16Matmul`] the input, weight
/// and bias are rounded to bf16, the product is done (in bf16 where the backend has it) and
/// the output is rounded to bf16 and returned in the weight's dtype (the stream's: an input that
/// is already bf16, see [`matmul_input`], still gives a stream-dtype output).
///
/// # Shapes
/// - `x`: `[..., d_in]`
/// - `weight`: `[d_in, d_out]` (burn layout)
/// - `bias`: `[d_out]`
/// - output: `[..., d_out]`
pub fn matmul_bias_with<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
    precision: Precision,
) -> Tensor<B, D> {
    match precision {
        Precision::F32 => linear(x, weight, bias),
        Precision::Bf16Matmul => {
            let x = match crate::fused::linear_bf16(x, &weight, bias.as_ref()) {
                Ok(y) => return y,
                Err(x) => x,
            };
            let dtype = weight.dtype();
            let y = linear(to_bf16(x), to_bf16(weight), bias.map(to_bf16));
            to_bf16(y).cast(dtype)
        }
    }
}

/// A burn [`Linear`] layer under the precision policy (see [`matmul_bias_with`]).
///
/// # Shapes
/// - `x`: `[..., d_in]`
/// - output: `[..., d_out]`
pub fn linear_with<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: Tensor<B, D>,
    precision: Precision,
) -> Tensor<B, D> {
    match precision {
        Precision::F32 => layer.forward(x),
        Precision::Bf16Matmul => matmul_bias_with(
            x,
            layer.weight.val(),
            layer.bias.as_ref().map(|b| b.val()),
            precision,
        ),
    }
}

/// The input of the policy's matrix products: bf16-rounded under [`Precision::Bf16Matmul`]
/// (once, where several products share it: rounding is idempotent), unchanged under `F32`.
pub fn matmul_input<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    precision: Precision,
) -> Tensor<B, D> {
    match precision {
        Precision::F32 => x,
        Precision::Bf16Matmul => to_bf16(x),
    }
}

/// Scaled dot-product attention `softmax(q k^T / sqrt(head_dim)) v`, without mask, under the
/// precision policy: with [`Precision::Bf16Matmul`], bf16 inputs and a bf16 output (in bf16
/// where the backend has it: it feeds the output projection, which takes bf16 inputs).
///
/// # Shapes
/// - `q`: `[batch, heads, L_q, head_dim]`
/// - `k`, `v`: `[batch, heads, L_k, head_dim]`
/// - output: `[batch, heads, L_q, head_dim]`
pub fn attention_with<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    precision: Precision,
) -> Tensor<B, 4> {
    match precision {
        Precision::F32 => scaled_dot_product(q, k, v),
        Precision::Bf16Matmul => to_bf16(scaled_dot_product(to_bf16(q), to_bf16(k), to_bf16(v))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn bf16_rounding_emulated_on_ndarray() {
        let device = Default::default();
        let x = Tensor::<NdArray<f32>, 1>::from_floats([1.0, 1.0 + 1.0 / 512.0, 3.3], &device);
        let y: Vec<f32> = to_bf16(x).into_data().to_vec().unwrap();
        // bf16 keeps 8 significant bits: 1 + 2^-9 rounds to 1 (ties to even), 3.3 to 3.296875.
        assert_eq!(y, vec![1.0, 1.0, 3.296875]);
    }
}
