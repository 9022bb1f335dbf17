//! The umT5 encoder: token embedding, `num_layers` pre-norm blocks (self-attention with a per-layer
//! relative position bias, gated tanh-GELU feed-forward), final RMS norm. No biases anywhere, no
//! embedding scaling, no `1/sqrt(d)` attention scaling.

use burn::module::{Initializer, Param};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::DType;

use super::bucket::bucket_matrix;
use super::config::UMT5Config;

impl UMT5Config {
    /// Builds a randomly initialised encoder (load weights with
    /// [`UMT5Encoder::from_hf_dir`] or [`crate::weights::load_module`]).
    ///
    /// # Panics
    /// If the config is invalid (zero sizes, bucket count not a multiple of 4): configs from
    /// files are checked by [`UMT5Config::from_hf_config`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> UMT5Encoder<B> {
        if let Err(reason) = self.validate() {
            panic!("invalid UMT5Config: {reason}");
        }
        let inner = self.inner_dim();
        let linear = |i: usize, o: usize| LinearConfig::new(i, o).with_bias(false).init(device);
        let norm = || T5LayerNorm {
            weight: Initializer::Ones.init([self.d_model], device),
            epsilon: self.layer_norm_epsilon,
        };
        let blocks = (0..self.num_layers)
            .map(|_| UMT5Block {
                norm1: norm(),
                attn: UMT5Attention {
                    q: linear(self.d_model, inner),
                    k: linear(self.d_model, inner),
                    v: linear(self.d_model, inner),
                    o: linear(inner, self.d_model),
                    num_heads: self.num_heads,
                    d_kv: self.d_kv,
                },
                norm2: norm(),
                ffn: UMT5FeedForward {
                    gate: linear(self.d_model, self.d_ff),
                    fc1: linear(self.d_model, self.d_ff),
                    fc2: linear(self.d_ff, self.d_model),
                },
                pos_embedding: EmbeddingConfig::new(
                    self.relative_attention_num_buckets,
                    self.num_heads,
                )
                .init(device),
                num_buckets: self.relative_attention_num_buckets,
                max_distance: self.relative_attention_max_distance,
            })
            .collect();
        UMT5Encoder {
            token_embedding: EmbeddingConfig::new(self.vocab_size, self.d_model).init(device),
            blocks,
            norm: norm(),
        }
    }
}

/// T5 layer norm: RMS normalisation without mean subtraction and without bias,
/// `weight * x / sqrt(mean(x^2) + eps)`, computed in f32 whatever the input dtype and cast back
/// (as transformers' `UMT5LayerNorm` and Wan2.1's `T5LayerNorm` do).
#[derive(Module, Debug)]
pub struct T5LayerNorm<B: Backend> {
    /// Scale, `[d_model]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Added to the mean square.
    pub epsilon: f64,
}

impl<B: Backend> T5LayerNorm<B> {
    /// Normalises over the last dimension.
    ///
    /// # Shapes
    /// - `x`: `[..., d_model]`
    /// - output: same as `x`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let x32 = x.cast(DType::F32);
        // A division, not `recip()`: burn-ndarray's SIMD `recip` is an approximation (~1e-4 relative).
        let rms = (x32.clone().square().mean_dim(D - 1) + self.epsilon).sqrt();
        let normed = (x32 / rms).cast(dtype);
        normed * self.weight.val().unsqueeze()
    }
}

/// Multi-head self-attention of umT5: no scaling of the scores, an additive relative position bias
/// and key padding mask, softmax in f32.
#[derive(Module, Debug)]
pub struct UMT5Attention<B: Backend> {
    /// Query projection `d_model -> heads*d_kv`.
    pub q: Linear<B>,
    /// Key projection.
    pub k: Linear<B>,
    /// Value projection.
    pub v: Linear<B>,
    /// Output projection `heads*d_kv -> d_model`.
    pub o: Linear<B>,
    /// Number of heads.
    pub num_heads: usize,
    /// Width of a head.
    pub d_kv: usize,
}

impl<B: Backend> UMT5Attention<B> {
    /// Self-attention over `x`.
    ///
    /// # Shapes
    /// - `x`: `[batch, len, d_model]`
    /// - `position_bias`: `[1, heads, len, len]`, added to the scores (model dtype)
    /// - `key_mask`: `[batch, 1, 1, len]` f32, `0` for real keys and a large negative for padding
    /// - output: `[batch, len, d_model]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        position_bias: Tensor<B, 4>,
        key_mask: Tensor<B, 4>,
    ) -> Tensor<B, 3> {
        let [batch, len, _] = x.dims();
        let heads = |t: Tensor<B, 3>| {
            t.reshape([batch, len, self.num_heads, self.d_kv])
                .swap_dims(1, 2)
        };
        let q = heads(self.q.forward(x.clone()));
        let k = heads(self.k.forward(x.clone()));
        let v = heads(self.v.forward(x));
        let scores = q.matmul(k.swap_dims(2, 3)) + position_bias;
        let dtype = scores.dtype();
        let weights = softmax(scores.cast(DType::F32) + key_mask, 3).cast(dtype);
        let out =
            weights
                .matmul(v)
                .swap_dims(1, 2)
                .reshape([batch, len, self.num_heads * self.d_kv]);
        self.o.forward(out)
    }
}

/// Gated feed-forward network of umT5: `fc2(gelu_tanh(gate(x)) * fc1(x))`
/// (transformers: `wo(gelu_new(wi_0 x) * wi_1 x)`).
#[derive(Module, Debug)]
pub struct UMT5FeedForward<B: Backend> {
    /// Gate projection `d_model -> d_ff` (transformers `wi_0`, Wan `gate.0`), followed by GELU.
    pub gate: Linear<B>,
    /// Linear projection `d_model -> d_ff` (transformers `wi_1`).
    pub fc1: Linear<B>,
    /// Output projection `d_ff -> d_model` (transformers `wo`).
    pub fc2: Linear<B>,
}

impl<B: Backend> UMT5FeedForward<B> {
    /// # Shapes
    /// - `x`: `[batch, len, d_model]`
    /// - output: `[batch, len, d_model]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let hidden = gelu_tanh(self.gate.forward(x.clone())) * self.fc1.forward(x);
        self.fc2.forward(hidden)
    }
}

/// Tanh approximation of GELU, `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`
/// (transformers `gelu_new`, Wan2.1 `GELU`), with the cube as a product (no `powf` of negative numbers).
///
/// # Shapes
/// - `x`: any; output: same
pub fn gelu_tanh<const D: usize, B: Backend>(x: Tensor<B, D>) -> Tensor<B, D> {
    if crate::fused::is_libtorch::<B>() {
        // One PyTorch kernel (f32 inside, rounded once to x's dtype).
        return crate::fused::gelu_tanh(x);
    }
    const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
    let cube = x.clone() * x.clone() * x.clone();
    let inner = (x.clone() + cube * 0.044715) * SQRT_2_OVER_PI;
    x * (inner.tanh() + 1.0) * 0.5
}

/// One umT5 encoder layer: `x += attn(norm1(x))`, `x += ffn(norm2(x))`, with its own relative
/// position bias table.
#[derive(Module, Debug)]
pub struct UMT5Block<B: Backend> {
    /// RMS norm before attention (transformers `layer.0.layer_norm`).
    pub norm1: T5LayerNorm<B>,
    /// Self-attention.
    pub attn: UMT5Attention<B>,
    /// RMS norm before the feed-forward network (transformers `layer.1.layer_norm`).
    pub norm2: T5LayerNorm<B>,
    /// Gated feed-forward network.
    pub ffn: UMT5FeedForward<B>,
    /// Relative position bias table `[num_buckets, heads]` of this layer.
    pub pos_embedding: Embedding<B>,
    /// Number of relative position buckets.
    pub num_buckets: usize,
    /// Maximum distance of the bucketing.
    pub max_distance: usize,
}

impl<B: Backend> UMT5Block<B> {
    /// The additive position bias of this layer for a sequence of `len` tokens.
    ///
    /// # Shapes
    /// - `buckets`: `[1, len*len]` bucket indices (see [`bucket_matrix`])
    /// - output: `[1, heads, len, len]`
    pub fn position_bias(&self, buckets: Tensor<B, 2, Int>, len: usize) -> Tensor<B, 4> {
        let [_, heads] = self.pos_embedding.weight.dims();
        self.pos_embedding
            .forward(buckets)
            .reshape([len, len, heads])
            .permute([2, 0, 1])
            .unsqueeze::<4>()
    }

    /// # Shapes
    /// - `x`: `[batch, len, d_model]`
    /// - `buckets`: `[1, len*len]`
    /// - `key_mask`: `[batch, 1, 1, len]` (f32 additive mask)
    /// - output: `[batch, len, d_model]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        buckets: Tensor<B, 2, Int>,
        key_mask: Tensor<B, 4>,
    ) -> Tensor<B, 3> {
        let len = x.dims()[1];
        let bias = self.position_bias(buckets, len);
        let x = clamp_f16(x.clone() + self.attn.forward(self.norm1.forward(x), bias, key_mask));
        clamp_f16(x.clone() + self.ffn.forward(self.norm2.forward(x)))
    }
}

/// Keeps f16 activations finite (transformers clamps to `finfo(f16).max - 1000` after each
/// sub-layer); a no-op for other dtypes.
fn clamp_f16<const D: usize, B: Backend>(x: Tensor<B, D>) -> Tensor<B, D> {
    if x.dtype() == DType::F16 {
        let limit = 65_504.0 - 1000.0;
        x.clamp(-limit, limit)
    } else {
        x
    }
}

/// The umT5 encoder (transformers `UMT5EncoderModel`, Wan2.1 `T5Encoder`).
///
/// Module paths follow the official Wan2.1 checkpoint (`token_embedding`, `blocks.{i}.{norm1, attn.{q,k,v,o},
/// norm2, ffn.{gate,fc1,fc2}, pos_embedding}`, `norm`); see [`hf_key_map`](super::hf_key_map) and
/// [`original_key_map`](super::original_key_map).
#[derive(Module, Debug)]
pub struct UMT5Encoder<B: Backend> {
    /// Token embedding `[vocab_size, d_model]` (transformers `shared` / `encoder.embed_tokens`).
    pub token_embedding: Embedding<B>,
    /// Encoder layers.
    pub blocks: Vec<UMT5Block<B>>,
    /// Final RMS norm (transformers `encoder.final_layer_norm`).
    pub norm: T5LayerNorm<B>,
}

impl<B: Backend> UMT5Encoder<B> {
    /// Encodes token ids; padded keys (mask 0) receive no attention.
    ///
    /// Outputs at padded positions are computed like the reference does (they attend to the real
    /// tokens) and are not zeroed here; [`TextEncoder`](super::TextEncoder) zeroes them.
    ///
    /// # Shapes
    /// - `ids`: `[batch, len]` token ids
    /// - `mask`: `[batch, len]`, 1 for real tokens, 0 for padding
    /// - output: `[batch, len, d_model]`
    pub fn forward(&self, ids: Tensor<B, 2, Int>, mask: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [batch, len] = ids.dims();
        let device = ids.device();
        // (1 - mask) * f32::MIN, in f32, as the reference's extended attention mask.
        let key_mask = (mask.float().cast(DType::F32).neg() + 1.0)
            .mul_scalar(f32::MIN)
            .reshape([batch, 1, 1, len]);
        let mut x = self.token_embedding.forward(ids);
        if let Some(first) = self.blocks.first() {
            let buckets = bucket_matrix(len, first.num_buckets, first.max_distance);
            let buckets =
                Tensor::<B, 2, Int>::from_data(TensorData::new(buckets, [1, len * len]), &device);
            for block in &self.blocks {
                x = block.forward(x, buckets.clone(), key_mask.clone());
            }
        }
        self.norm.forward(x)
    }

    /// Width of the output.
    pub fn d_model(&self) -> usize {
        self.token_embedding.weight.dims()[1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    /// The encoder computes in its weights' dtype (f64 standing in for bf16, which NdArray lacks):
    /// the same values as f32, in the weights' dtype.
    #[test]
    fn runs_in_the_weights_dtype() {
        let device = Default::default();
        B::seed(&device, 5);
        let enc = UMT5Config::tiny().init::<B>(&device);
        let len = 7;
        let ids = Tensor::<B, 2, Int>::from_data(
            TensorData::new(
                (0..len as i64).map(|i| (i * 5) % 30 + 1).collect(),
                [1, len],
            ),
            &device,
        );
        let mask = Tensor::<B, 2, Int>::from_data(
            TensorData::new(vec![1i64, 1, 1, 1, 1, 0, 0], [1, len]),
            &device,
        );
        let want = enc.forward(ids.clone(), mask.clone());
        let enc64 = crate::dtype::cast_float_params(enc, DType::F64);
        let got = enc64.forward(ids, mask);
        assert_eq!(got.dtype(), DType::F64);
        let err = (got.cast(DType::F32) - want.clone())
            .abs()
            .max()
            .into_scalar();
        assert!(err < 1e-4, "f64 encoder differs from f32 by {err}");
        assert!(want.abs().max().into_scalar() > 1e-3);
    }
}
