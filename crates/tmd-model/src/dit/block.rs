//! One Wan2.1 transformer block and its parts: attention, feed-forward, non-affine LayerNorm.

use burn::module::Param;
use burn::nn::{
    Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig,
};
use burn::prelude::*;

use super::config::{Precision, WanConfig};
use super::precision::{attention_with, linear_with, matmul_input};
use super::rope::RopeTables;
use super::WanInputs;
use crate::fused;

/// LayerNorm over the last dimension without scale or bias (Wan's `norm1`, `norm2` and head norm):
/// `(x - mean) / sqrt(var + eps)`, biased variance.
///
/// # Shapes
/// - `x`: `[..., d]`
/// - output: `[..., d]`
pub fn layer_norm<B: Backend, const D: usize>(x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
    fused::layer_norm_plain(x, eps)
}

/// Adaptive modulation `x * (1 + scale) + shift`.
///
/// # Shapes
/// - `x`: `[batch, L, dim]`
/// - `shift`, `scale`: `[batch, 1, dim]`
/// - output: `[batch, L, dim]`
pub fn modulate<B: Backend>(
    x: Tensor<B, 3>,
    shift: Tensor<B, 3>,
    scale: Tensor<B, 3>,
) -> Tensor<B, 3> {
    fused::modulate(x, shift, scale)
}

/// Multi-head attention of Wan2.1 (`self_attn` / `cross_attn`; diffusers `attn1` / `attn2`):
/// q/k/v/o projections with bias, RMSNorm of q and k over the full `dim` (all heads together).
#[derive(Module, Debug)]
pub struct WanAttention<B: Backend> {
    /// Query projection `dim -> dim`.
    pub q: Linear<B>,
    /// Key projection `dim -> dim`.
    pub k: Linear<B>,
    /// Value projection `dim -> dim`.
    pub v: Linear<B>,
    /// Output projection `dim -> dim`.
    pub o: Linear<B>,
    /// RMSNorm of the projected queries (over `dim`).
    pub norm_q: RmsNorm<B>,
    /// RMSNorm of the projected keys (over `dim`).
    pub norm_k: RmsNorm<B>,
    /// Number of heads.
    pub num_heads: usize,
}

impl<B: Backend> WanAttention<B> {
    fn new(config: &WanConfig, device: &B::Device) -> Self {
        let lin = || LinearConfig::new(config.dim, config.dim).init(device);
        let norm = || {
            RmsNormConfig::new(config.dim)
                .with_epsilon(config.eps)
                .init(device)
        };
        Self {
            q: lin(),
            k: lin(),
            v: lin(),
            o: lin(),
            norm_q: norm(),
            norm_k: norm(),
            num_heads: config.num_heads,
        }
    }

    fn heads(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [b, l, d] = x.dims();
        x.reshape([b, l, self.num_heads, d / self.num_heads])
            .swap_dims(1, 2)
    }

    /// Attention of `x` over `context` (self-attention when `context` is `None`), with RoPE on
    /// q and k when `rope` is given.
    ///
    /// # Shapes
    /// - `x`: `[batch, L, dim]`
    /// - `context`: `[batch, L_ctx, dim]`
    /// - output: `[batch, L, dim]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        context: Option<Tensor<B, 3>>,
        rope: Option<&RopeTables<B>>,
        precision: Precision,
    ) -> Tensor<B, 3> {
        let [b, l, d] = x.dims();
        // Rounded once for the q, k and v products (each would round it again to the same values).
        let x = matmul_input(x, precision);
        let kv_in = context.map_or_else(|| x.clone(), |c| matmul_input(c, precision));
        let q = fused::rms_norm(&self.norm_q, linear_with(&self.q, x, precision));
        let k = fused::rms_norm(&self.norm_k, linear_with(&self.k, kv_in.clone(), precision));
        let v = linear_with(&self.v, kv_in, precision);
        let (mut q, mut k, v) = (self.heads(q), self.heads(k), self.heads(v));
        if let Some(rope) = rope {
            q = rope.apply(q);
            k = rope.apply(k);
        }
        // Under the bf16 policy the attention output stays bf16 into the output projection.
        let out = attention_with(q, k, v, precision)
            .swap_dims(1, 2)
            .reshape([b, l, d]);
        linear_with(&self.o, out, precision)
    }
}

/// Feed-forward network `Linear(dim -> ffn_dim) -> GELU(tanh) -> Linear(ffn_dim -> dim)`.
#[derive(Module, Debug)]
pub struct WanFfn<B: Backend> {
    /// Up projection (original `ffn.0`, diffusers `ffn.net.0.proj`).
    pub fc1: Linear<B>,
    /// Down projection (original `ffn.2`, diffusers `ffn.net.2`).
    pub fc2: Linear<B>,
}

impl<B: Backend> WanFfn<B> {
    /// # Shapes
    /// - `x`: `[batch, L, dim]`
    /// - output: `[batch, L, dim]`
    pub fn forward(&self, x: Tensor<B, 3>, precision: Precision) -> Tensor<B, 3> {
        let x = match precision {
            Precision::Bf16Matmul => {
                let param = |l: &Linear<B>| (l.weight.val(), l.bias.as_ref().map(|b| b.val()));
                let ((w1, b1), (w2, b2)) = (param(&self.fc1), param(&self.fc2));
                match fused::ffn_bf16(x, (&w1, b1.as_ref()), (&w2, b2.as_ref())) {
                    Ok(y) => return y,
                    Err(x) => x,
                }
            }
            Precision::F32 => x,
        };
        let h = fused::gelu_tanh(linear_with(&self.fc1, x, precision));
        linear_with(&self.fc2, h, precision)
    }
}

/// One Wan2.1 DiT block: modulated self-attention with RoPE, cross-attention over the text,
/// modulated feed-forward.
#[derive(Module, Debug)]
pub struct WanBlock<B: Backend> {
    /// Learned modulation offsets `[1, 6, dim]` added to `e0` (diffusers `scale_shift_table`).
    pub modulation: Param<Tensor<B, 3>>,
    /// Self-attention (diffusers `attn1`).
    pub self_attn: WanAttention<B>,
    /// Affine LayerNorm before cross-attention (diffusers `norm2`).
    pub norm3: LayerNorm<B>,
    /// Cross-attention over the embedded text (diffusers `attn2`).
    pub cross_attn: WanAttention<B>,
    /// Feed-forward network.
    pub ffn: WanFfn<B>,
    /// Epsilon of the non-affine LayerNorms.
    pub eps: f64,
    /// Precision policy.
    pub precision: Precision,
}

impl<B: Backend> WanBlock<B> {
    /// A randomly initialised block.
    pub fn new(config: &WanConfig, device: &B::Device) -> Self {
        let scale = 1.0 / (config.dim as f64).sqrt();
        Self {
            modulation: Initializer::Normal {
                mean: 0.0,
                std: scale,
            }
            .init([1, 6, config.dim], device),
            self_attn: WanAttention::new(config, device),
            norm3: LayerNormConfig::new(config.dim)
                .with_epsilon(config.eps)
                .init(device),
            cross_attn: WanAttention::new(config, device),
            ffn: WanFfn {
                fc1: LinearConfig::new(config.dim, config.ffn_dim).init(device),
                fc2: LinearConfig::new(config.ffn_dim, config.dim).init(device),
            },
            eps: config.eps,
            precision: config.precision,
        }
    }

    /// Runs the block on the token stream with the shared inputs of one forward pass
    /// (`e0`, embedded text, RoPE tables) from [`WanModel::embed`](super::WanModel::embed).
    ///
    /// # Shapes
    /// - `x`: `[batch, L, dim]`
    /// - output: `[batch, L, dim]`
    pub fn forward(&self, x: Tensor<B, 3>, inputs: &WanInputs<B>) -> Tensor<B, 3> {
        self.forward_parts(x, inputs.e0.clone(), inputs.context.clone(), &inputs.rope)
    }

    /// [`WanBlock::forward`] with the inputs given one by one.
    ///
    /// # Shapes
    /// - `x`: `[batch, L, dim]`
    /// - `e0`: `[batch, 6, dim]` projected time embedding
    /// - `context`: `[batch, text_len, dim]` embedded text
    /// - output: `[batch, L, dim]`
    pub fn forward_parts(
        &self,
        x: Tensor<B, 3>,
        e0: Tensor<B, 3>,
        context: Tensor<B, 3>,
        rope: &RopeTables<B>,
    ) -> Tensor<B, 3> {
        let m = (self.modulation.val() + e0).chunk(6, 1);
        let (shift_sa, scale_sa, gate_sa) = (m[0].clone(), m[1].clone(), m[2].clone());
        let (shift_ff, scale_ff, gate_ff) = (m[3].clone(), m[4].clone(), m[5].clone());

        let h = modulate(layer_norm(x.clone(), self.eps), shift_sa, scale_sa);
        let x = fused::add_gated(
            x,
            self.self_attn.forward(h, None, Some(rope), self.precision),
            gate_sa,
        );

        let h = self.norm3.forward(x.clone());
        let x = x + self
            .cross_attn
            .forward(h, Some(context), None, self.precision);

        let h = modulate(layer_norm(x.clone(), self.eps), shift_ff, scale_ff);
        fused::add_gated(x, self.ffn.forward(h, self.precision), gate_ff)
    }
}
