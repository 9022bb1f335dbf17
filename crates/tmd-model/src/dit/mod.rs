//! The Wan2.1 diffusion transformer (`WanModel`; diffusers `WanTransformer3DModel`).
//!
//! ```no_run
//! use burn::backend::NdArray;
//! use burn::prelude::*;
//! use tmd_model::dit::WanModel;
//!
//! let device = Default::default();
//! let model = WanModel::<NdArray<f32>>::from_diffusers_dir("Wan2.1-T2V-1.3B-Diffusers/transformer", &device)?;
//! let x = Tensor::<NdArray<f32>, 5>::zeros([1, 16, 1, 8, 8], &device);
//! let t = Tensor::<NdArray<f32>, 1>::from_floats([999.0], &device);
//! let ctx = Tensor::<NdArray<f32>, 3>::zeros([1, 7, 4096], &device);
//! let v = model.forward(x, t, ctx)?; // [1, 16, 1, 8, 8], the predicted velocity eps - x0
//! # Ok::<(), tmd_model::ModelError>(())
//! ```
//!
//! The forward pass is split into reusable parts so that distillation code can run subsets of
//! blocks (a flow head over the last blocks, GAN features after given blocks) without copying:
//! [`WanModel::embed`] -> [`WanBlock::forward`] for each of [`WanModel::blocks`] ->
//! [`WanModel::head_and_unpatchify`]. Architecture facts: `WAN21.md` (shared reference notes).

mod block;
mod config;
mod keys;
mod precision;
mod rope;

use std::ops::Range;
use std::path::Path;

use burn::module::Param;
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;

pub use block::{layer_norm, modulate, WanAttention, WanBlock, WanFfn};
pub use config::{Precision, WanConfig, PRESETS};
pub use keys::{diffusers_export_key_map, diffusers_key_map, original_key_map, IGNORED_KEYS};
pub use precision::{attention_with, linear_with, matmul_bias_with, to_bf16};
pub use rope::{rope_angles_3d, rope_axis_dims, sinusoidal_time_embedding, RopeTables};

use crate::error::{ModelError, Result};
use crate::weights::{load_module, KeyMap, WeightSource};

/// Number of training timesteps of Wan2.1: the DiT is fed `t * NUM_TRAIN_TIMESTEPS` for a flow
/// time `t` in `[0, 1]` (diffusers `FlowMatchEulerDiscreteScheduler.num_train_timesteps`).
pub const NUM_TRAIN_TIMESTEPS: f64 = 1000.0;

/// Two linear layers with an activation between them (time and text embedders).
#[derive(Module, Debug)]
pub struct MlpEmbedder<B: Backend> {
    /// First layer (original `*.0`, diffusers `*.linear_1`).
    pub linear_1: Linear<B>,
    /// Second layer (original `*.2`, diffusers `*.linear_2`).
    pub linear_2: Linear<B>,
}

impl<B: Backend> MlpEmbedder<B> {
    /// Two randomly initialised layers `d_in -> d_out -> d_out`.
    pub fn new(d_in: usize, d_out: usize, device: &B::Device) -> Self {
        Self {
            linear_1: LinearConfig::new(d_in, d_out).init(device),
            linear_2: LinearConfig::new(d_out, d_out).init(device),
        }
    }
}

/// Output head: modulated non-affine LayerNorm and a projection to `prod(patch) * out_channels`.
#[derive(Module, Debug)]
pub struct WanHead<B: Backend> {
    /// Learned modulation offsets `[1, 2, dim]` added to `e` (diffusers top-level `scale_shift_table`).
    pub modulation: Param<Tensor<B, 3>>,
    /// Projection `dim -> prod(patch_size) * out_channels` (original `head.head`, diffusers `proj_out`).
    pub proj: Linear<B>,
}

/// Everything the blocks and the head share within one forward pass, computed once by
/// [`WanModel::embed`].
#[derive(Debug, Clone)]
pub struct WanInputs<B: Backend> {
    /// Patch tokens, `[batch, L, dim]`, ordered frames, height, width (width fastest).
    pub tokens: Tensor<B, 3>,
    /// Token grid `(frames, height, width)` in patches; `L` is their product.
    pub grid: [usize; 3],
    /// Time embedding `e`, `[batch, dim]` (used by the head).
    pub e: Tensor<B, 2>,
    /// Projected modulation `e0`, `[batch, 6, dim]` (used by every block).
    pub e0: Tensor<B, 3>,
    /// Embedded text, `[batch, text_len, dim]`.
    pub context: Tensor<B, 3>,
    /// 3D RoPE tables of the grid.
    pub rope: RopeTables<B>,
}

/// The Wan2.1 DiT. Build with [`WanConfig::init`] or load with [`WanModel::from_diffusers_dir`].
#[derive(Module, Debug)]
pub struct WanModel<B: Backend> {
    /// Patch embedding, Conv3d `in_channels -> dim` with kernel = stride = `patch_size`.
    pub patch_embedding: Conv3d<B>,
    /// Text embedder `text_dim -> dim -> dim` with GELU(tanh).
    pub text_embedding: MlpEmbedder<B>,
    /// Time embedder `freq_dim -> dim -> dim` with SiLU.
    pub time_embedding: MlpEmbedder<B>,
    /// Modulation projection `dim -> 6 dim`, applied after SiLU.
    pub time_projection: Linear<B>,
    /// Transformer blocks.
    pub blocks: Vec<WanBlock<B>>,
    /// Output head.
    pub head: WanHead<B>,
    /// Number of sinusoid channels of the time embedding.
    pub freq_dim: usize,
    /// Text positions (contexts are zero-padded to this).
    pub text_len: usize,
    /// Text feature width.
    pub text_dim: usize,
    /// Latent channels in.
    pub in_channels: usize,
    /// Latent channels out.
    pub out_channels: usize,
    /// Patch size (frames, height, width).
    pub patch_size: [usize; 3],
    /// Number of attention heads.
    pub num_heads: usize,
    /// Epsilon of the head's LayerNorm.
    pub eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// Largest grid index along any axis (reference RoPE table size).
    pub rope_max_seq_len: usize,
    /// Precision policy of the forward pass.
    pub precision: Precision,
}

impl<B: Backend> WanModel<B> {
    /// A randomly initialised model (parameters are initialised lazily, so building a model that
    /// is then loaded costs nothing).
    pub fn new(config: &WanConfig, device: &B::Device) -> Self {
        let [pt, ph, pw] = config.patch_size;
        let out_per_token = pt * ph * pw * config.out_channels;
        Self {
            patch_embedding: Conv3dConfig::new([config.in_channels, config.dim], config.patch_size)
                .with_stride(config.patch_size)
                .init(device),
            text_embedding: MlpEmbedder::new(config.text_dim, config.dim, device),
            time_embedding: MlpEmbedder::new(config.freq_dim, config.dim, device),
            time_projection: LinearConfig::new(config.dim, 6 * config.dim).init(device),
            blocks: (0..config.num_layers)
                .map(|_| WanBlock::new(config, device))
                .collect(),
            head: WanHead {
                modulation: Initializer::Normal {
                    mean: 0.0,
                    std: 1.0 / (config.dim as f64).sqrt(),
                }
                .init([1, 2, config.dim], device),
                proj: LinearConfig::new(config.dim, out_per_token).init(device),
            },
            freq_dim: config.freq_dim,
            text_len: config.text_len,
            text_dim: config.text_dim,
            in_channels: config.in_channels,
            out_channels: config.out_channels,
            patch_size: config.patch_size,
            num_heads: config.num_heads,
            eps: config.eps,
            rope_theta: config.rope_theta,
            rope_max_seq_len: config.rope_max_seq_len,
            precision: config.precision,
        }
    }

    /// Hidden size.
    pub fn dim(&self) -> usize {
        self.time_projection.weight.shape().dims::<2>()[0]
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.dim() / self.num_heads
    }

    /// The same model with another precision policy (weights untouched).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        for block in &mut self.blocks {
            block.precision = precision;
        }
        self
    }

    /// Loads a diffusers `transformer/` folder: `config.json` and every `*.safetensors` in it
    /// (sharded or not), diffusers key names.
    pub fn from_diffusers_dir(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = WanConfig::from_diffusers_config(&dir.join("config.json"))?;
        let source = WeightSource::open_dir(dir)?;
        config
            .init::<B>(device)
            .load_with(&source, &diffusers_key_map())
    }

    /// Loads official Wan2.1 checkpoint files (`diffusion_pytorch_model*.safetensors` of
    /// `Wan-AI/Wan2.1-T2V-*`, or ComfyUI files with a `model.diffusion_model.` prefix) into a model
    /// of the given configuration (e.g. [`WanConfig::t2v_1_3b`]).
    pub fn from_original_files(
        config: &WanConfig,
        files: &[std::path::PathBuf],
        device: &B::Device,
    ) -> Result<Self> {
        config.validate(Path::new("WanConfig"))?;
        let source = WeightSource::open_files(files)?;
        config
            .init::<B>(device)
            .load_with(&source, &original_key_map())
    }

    /// Fills this model's parameters from `source`, renaming keys with `map`; every parameter
    /// must be provided, with the right shape, and no key may be left over (except
    /// [`IGNORED_KEYS`]).
    pub fn load_with(self, source: &WeightSource, map: &KeyMap) -> Result<Self> {
        load_module::<B, _>(self, source, map, IGNORED_KEYS, "Wan DiT")
    }

    /// Checks the shapes of the forward inputs; returns `(batch, context length)`.
    fn check_inputs(
        &self,
        x: &Tensor<B, 5>,
        timestep: &Tensor<B, 1>,
        context: &Tensor<B, 3>,
    ) -> Result<[usize; 3]> {
        let [b, c, f, h, w] = x.dims();
        let [pt, ph, pw] = self.patch_size;
        let grid = [f / pt, h / ph, w / pw];
        if c != self.in_channels
            || b == 0
            || f % pt != 0
            || h % ph != 0
            || w % pw != 0
            || grid.contains(&0)
        {
            return Err(ModelError::BadShape {
                what: "DiT latent x".into(),
                expected: format!(
                    "[batch>0, {}, frames, height, width] with frames, height, width positive multiples of {:?}",
                    self.in_channels, self.patch_size
                ),
                found: x.dims().to_vec(),
            });
        }
        if let Some(&too_big) = grid.iter().find(|&&g| g > self.rope_max_seq_len) {
            return Err(ModelError::BadShape {
                what: "DiT latent x".into(),
                expected: format!(
                    "at most {} patches along each axis (rope_max_seq_len), got {too_big}",
                    self.rope_max_seq_len
                ),
                found: x.dims().to_vec(),
            });
        }
        if timestep.dims() != [b] {
            return Err(ModelError::BadShape {
                what: "DiT timestep".into(),
                expected: format!("[{b}] (one value per batch item)"),
                found: timestep.dims().to_vec(),
            });
        }
        let [cb, cl, cd] = context.dims();
        if cb != b || cd != self.text_dim || cl > self.text_len {
            return Err(ModelError::BadShape {
                what: "DiT text context".into(),
                expected: format!(
                    "[{b}, length <= text_len {}, text_dim {}]",
                    self.text_len, self.text_dim
                ),
                found: context.dims().to_vec(),
            });
        }
        Ok(grid)
    }

    /// Patch embedding: Conv3d with kernel = stride = patch size, then tokens in f, h, w order.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, frames, height, width]`
    /// - output: `[batch, L, dim]`
    pub fn patchify(&self, x: Tensor<B, 5>) -> Tensor<B, 3> {
        let [b, c, f, h, w] = x.dims();
        let [pt, ph, pw] = self.patch_size;
        let (gf, gh, gw) = (f / pt, h / ph, w / pw);
        let k = pt * ph * pw;
        // At most 6 dims at a time (NdArray's limit): [b c F, pt, H, ph, W, pw] -> [b c F, H, W, pt, ph, pw].
        let patches = x
            .reshape([b * c * gf, pt, gh, ph, gw, pw])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([b, c, gf, gh * gw, k])
            .permute([0, 2, 3, 1, 4])
            .reshape([b, gf * gh * gw, c * k]);
        let weight = self.patch_embedding.weight.val();
        let dim = weight.dims()[0];
        let weight = weight.reshape([dim, c * k]).transpose();
        let bias = self.patch_embedding.bias.as_ref().map(|b| b.val());
        matmul_bias_with(patches, weight, bias, self.precision)
    }

    /// Time embedding `e = time_embedding(sinusoid(t))` and modulation `e0 = time_projection(SiLU(e))`,
    /// in the stream's float type regardless of the precision policy (as in the original).
    ///
    /// # Shapes
    /// - `timestep`: `[batch]`
    /// - output: `e` `[batch, dim]`, `e0` `[batch, 6, dim]`
    pub fn time_embed(&self, timestep: Tensor<B, 1>) -> (Tensor<B, 2>, Tensor<B, 3>) {
        let [b] = timestep.dims();
        let sinusoid = sinusoidal_time_embedding(timestep, self.freq_dim);
        let e = self
            .time_embedding
            .linear_2
            .forward(silu(self.time_embedding.linear_1.forward(sinusoid)));
        let e0 = self.time_projection.forward(silu(e.clone()));
        let dim = e.dims()[1];
        (e, e0.reshape([b, 6, dim]))
    }

    /// Text embedding of a context zero-padded to `text_len`.
    ///
    /// # Shapes
    /// - `context`: `[batch, l <= text_len, text_dim]`
    /// - output: `[batch, text_len, dim]`
    pub fn text_embed(&self, context: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, l, d] = context.dims();
        let context = if l < self.text_len {
            let pad = Tensor::<B, 3>::zeros(
                [b, self.text_len - l, d],
                (&context.device(), context.dtype()),
            );
            Tensor::cat(vec![context, pad], 1)
        } else {
            context
        };
        let h = crate::fused::gelu_tanh(linear_with(
            &self.text_embedding.linear_1,
            context,
            self.precision,
        ));
        linear_with(&self.text_embedding.linear_2, h, self.precision)
    }

    /// Everything before the first block: patch tokens, time embedding and modulation, embedded
    /// text (zero-padded to `text_len`) and the RoPE tables of the token grid.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, frames, height, width]`
    /// - `timestep`: `[batch]`, values in `[0, 1000]`
    /// - `context`: `[batch, l <= text_len, text_dim]`
    ///
    /// # Errors
    /// [`ModelError::BadShape`] if a shape does not fit the model.
    pub fn embed(
        &self,
        x: Tensor<B, 5>,
        timestep: Tensor<B, 1>,
        context: Tensor<B, 3>,
    ) -> Result<WanInputs<B>> {
        let grid = self.check_inputs(&x, &timestep, &context)?;
        let rope = RopeTables::new(grid, self.head_dim(), self.rope_theta, &x.device());
        let tokens = self.patchify(x);
        let (e, e0) = self.time_embed(timestep);
        let context = self.text_embed(context);
        Ok(WanInputs {
            tokens,
            grid,
            e,
            e0,
            context,
            rope,
        })
    }

    /// Runs the blocks `range` (e.g. `0..L-H` for the trunk, `L-H..L` for a flow head) on `tokens`.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, L, dim]`
    /// - output: `[batch, L, dim]`
    pub fn forward_blocks(
        &self,
        tokens: Tensor<B, 3>,
        inputs: &WanInputs<B>,
        range: Range<usize>,
    ) -> Tensor<B, 3> {
        self.blocks[range]
            .iter()
            .fold(tokens, |x, block| block.forward(x, inputs))
    }

    /// Output head and unpatchify: modulated LayerNorm with `e` (not `e0`), projection, and the
    /// per-token outputs laid out `(p_t, p_h, p_w, c)` (channels fastest) back into a latent.
    /// Runs in the stream's float type regardless of the precision policy (as in the original).
    ///
    /// # Shapes
    /// - `tokens`: `[batch, L, dim]` with `L = grid[0] * grid[1] * grid[2]`
    /// - `e`: `[batch, dim]`
    /// - output: `[batch, out_channels, grid[0]*p_t, grid[1]*p_h, grid[2]*p_w]`
    pub fn head_and_unpatchify(
        &self,
        tokens: Tensor<B, 3>,
        e: Tensor<B, 2>,
        grid: [usize; 3],
    ) -> Tensor<B, 5> {
        let [b, _, _] = tokens.dims();
        let m = (self.head.modulation.val() + e.unsqueeze_dim::<3>(1)).chunk(2, 1);
        let (shift, scale) = (m[0].clone(), m[1].clone());
        let out = self
            .head
            .proj
            .forward(modulate(layer_norm(tokens, self.eps), shift, scale));
        let [pt, ph, pw] = self.patch_size;
        let [gf, gh, gw] = grid;
        let c = self.out_channels;
        // At most 6 dims at a time (NdArray's limit).
        out.reshape([b, gf, gh * gw, pt * ph * pw, c])
            .permute([0, 4, 1, 2, 3])
            .reshape([b * c * gf, gh, gw, pt, ph, pw])
            .permute([0, 3, 1, 4, 2, 5])
            .reshape([b, c, gf * pt, gh * ph, gw * pw])
    }

    /// Full forward pass: the predicted flow velocity.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, frames, height, width]`, spatial sizes multiples of the patch
    /// - `timestep`: `[batch]`, values in `[0, 1000]`
    /// - `context`: `[batch, l <= text_len, text_dim]` (zero-padded to `text_len`)
    /// - output: `[batch, out_channels, frames, height, width]`
    ///
    /// # Errors
    /// [`ModelError::BadShape`] if a shape does not fit the model.
    pub fn forward(
        &self,
        x: Tensor<B, 5>,
        timestep: Tensor<B, 1>,
        context: Tensor<B, 3>,
    ) -> Result<Tensor<B, 5>> {
        Ok(self.forward_with_features(x, timestep, context, &[])?.0)
    }

    /// Forward pass that also returns the token features after the given blocks
    /// (0-based indices, in the order asked; repeats allowed).
    ///
    /// # Shapes
    /// - as [`WanModel::forward`]; each feature is `[batch, L, dim]`
    ///
    /// # Errors
    /// [`ModelError::BadShape`] for bad input shapes, [`ModelError::InvalidConfig`] for a block
    /// index `>= num_layers`.
    pub fn forward_with_features(
        &self,
        x: Tensor<B, 5>,
        timestep: Tensor<B, 1>,
        context: Tensor<B, 3>,
        feature_blocks: &[usize],
    ) -> Result<(Tensor<B, 5>, Vec<Tensor<B, 3>>)> {
        if let Some(&bad) = feature_blocks.iter().find(|&&i| i >= self.blocks.len()) {
            return Err(ModelError::config(
                "feature_blocks",
                format!(
                    "block index {bad} out of range: the model has {} blocks",
                    self.blocks.len()
                ),
            ));
        }
        let inputs = self.embed(x, timestep, context)?;
        let mut kept: Vec<Option<Tensor<B, 3>>> = vec![None; self.blocks.len()];
        let mut tokens = inputs.tokens.clone();
        for (i, block) in self.blocks.iter().enumerate() {
            tokens = block.forward(tokens, &inputs);
            if feature_blocks.contains(&i) {
                kept[i] = Some(tokens.clone());
            }
        }
        let features = feature_blocks
            .iter()
            .filter_map(|&i| kept[i].clone())
            .collect();
        let out = self.head_and_unpatchify(tokens, inputs.e, inputs.grid);
        Ok((out, features))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type TB = NdArray<f32>;

    fn tiny() -> (WanModel<TB>, burn::tensor::Device<TB>) {
        let device = Default::default();
        (WanConfig::tiny().init::<TB>(&device), device)
    }

    #[test]
    fn presets_resolve() {
        assert_eq!(WanConfig::preset("wan2.1-t2v-1.3b").unwrap().dim, 1536);
        assert_eq!(WanConfig::preset("wan2.1-t2v-14b").unwrap().num_heads, 40);
        assert!(WanConfig::preset("tiny").is_ok());
        assert!(matches!(
            WanConfig::preset("nope"),
            Err(ModelError::UnknownPreset { .. })
        ));
        for p in PRESETS {
            WanConfig::preset(p)
                .unwrap()
                .validate(Path::new(p))
                .unwrap();
        }
    }

    #[test]
    fn parameter_counts_match_wan() {
        // Counts from WAN21.md (the released checkpoints).
        let count = |c: WanConfig| {
            let d = c.dim;
            let per_block =
                2 * (4 * (d * d + d) + 2 * d) + 2 * d + c.ffn_dim * d * 2 + c.ffn_dim + d + 6 * d;
            let embed = d * c.in_channels * 4
                + d
                + c.text_dim * d
                + d
                + d * d
                + d
                + c.freq_dim * d
                + d
                + d * d
                + d;
            let head = 6 * d * d + 6 * d + 2 * d + d * 4 * c.out_channels + 4 * c.out_channels;
            embed + head + c.num_layers * per_block
        };
        assert_eq!(count(WanConfig::t2v_1_3b()), 1_418_996_800);
        assert_eq!(count(WanConfig::t2v_14b()), 14_288_491_584);
        let (model, _) = tiny();
        assert_eq!(model.num_params(), count(WanConfig::tiny()));
    }

    #[test]
    fn shapes_and_features() {
        let (model, device) = tiny();
        let x = Tensor::<TB, 5>::random(
            [2, 4, 3, 6, 4],
            burn::tensor::Distribution::Default,
            &device,
        );
        let t = Tensor::<TB, 1>::from_floats([999.0, 10.0], &device);
        let ctx = Tensor::<TB, 3>::ones([2, 5, 32], &device);
        let (out, feats) = model
            .forward_with_features(x.clone(), t.clone(), ctx.clone(), &[1, 0])
            .unwrap();
        assert_eq!(out.dims(), [2, 4, 3, 6, 4]);
        assert_eq!(feats.len(), 2);
        assert_eq!(feats[0].dims(), [2, 18, 48]);
        // Splitting into embed / blocks / head gives the same result.
        let inputs = model.embed(x.clone(), t.clone(), ctx.clone()).unwrap();
        let tokens = model.forward_blocks(inputs.tokens.clone(), &inputs, 0..1);
        let tokens = model.forward_blocks(tokens, &inputs, 1..2);
        let out2 = model.head_and_unpatchify(tokens.clone(), inputs.e.clone(), inputs.grid);
        out.into_data()
            .assert_approx_eq::<f32>(&out2.into_data(), burn::tensor::Tolerance::absolute(1e-6));
        feats[0]
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&tokens.into_data(), burn::tensor::Tolerance::absolute(1e-6));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let (model, device) = tiny();
        let t = Tensor::<TB, 1>::from_floats([1.0], &device);
        let ok_x = Tensor::<TB, 5>::zeros([1, 4, 1, 4, 4], &device);
        let long_ctx = Tensor::<TB, 3>::zeros([1, 17, 32], &device);
        assert!(matches!(
            model.forward(ok_x.clone(), t.clone(), long_ctx),
            Err(ModelError::BadShape { .. })
        ));
        let odd_x = Tensor::<TB, 5>::zeros([1, 4, 1, 5, 4], &device);
        let ctx = Tensor::<TB, 3>::zeros([1, 3, 32], &device);
        assert!(model.forward(odd_x, t.clone(), ctx.clone()).is_err());
        let two_t = Tensor::<TB, 1>::from_floats([1.0, 2.0], &device);
        assert!(model.forward(ok_x.clone(), two_t, ctx.clone()).is_err());
        assert!(model.forward_with_features(ok_x, t, ctx, &[2]).is_err());
    }

    #[test]
    fn bf16_matmul_is_close_but_not_equal() {
        let (model, device) = tiny();
        let x = Tensor::<TB, 5>::random(
            [1, 4, 2, 4, 4],
            burn::tensor::Distribution::Default,
            &device,
        );
        let t = Tensor::<TB, 1>::from_floats([500.0], &device);
        let ctx =
            Tensor::<TB, 3>::random([1, 16, 32], burn::tensor::Distribution::Default, &device);
        let a = model.forward(x.clone(), t.clone(), ctx.clone()).unwrap();
        let model = model.with_precision(Precision::Bf16Matmul);
        let b = model.forward(x, t, ctx).unwrap();
        let scale = a.clone().abs().max().into_scalar();
        let diff = (a - b).abs().max().into_scalar() / scale;
        assert!(diff > 0.0 && diff < 5e-2, "bf16 rel diff {diff}");
    }
}
