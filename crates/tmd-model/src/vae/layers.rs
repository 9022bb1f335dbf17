//! Building blocks of the Wan VAE: causal 3D convolution, channel RMS norm, residual block,
//! per-frame attention and the four resamplers, each with its cached (chunked) forward pass.

use crate::fused::silu;
use burn::config::Config;
use burn::module::{Initializer, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use crate::conv::{conv2d_module, conv3d};
use crate::dtype::pad_zeros;
use serde::{Deserialize, Serialize};

use super::cache::{trailing_frames, CacheSlot, FeatCache, CACHE_FRAMES};

/// `eps` of `F.normalize`: the L2 norm is clamped to at least this before dividing.
const NORMALIZE_EPS: f64 = 1e-12;

/// Same law as burn-nn's convolutions (uniform in +-1/sqrt(fan_in)); only used before loading.
fn kaiming() -> Initializer {
    Initializer::KaimingUniform {
        gain: 1.0 / 3f64.sqrt(),
        fan_out_only: false,
    }
}

// ---------------------------------------------------------------------------------------------
// CausalConv3d
// ---------------------------------------------------------------------------------------------

/// Configuration of a [`CausalConv3d`].
#[derive(Config, Debug)]
pub struct CausalConv3dConfig {
    /// Input and output channels.
    pub channels: [usize; 2],
    /// Kernel size (time, height, width).
    pub kernel_size: [usize; 3],
    /// Stride (time, height, width).
    #[config(default = "[1, 1, 1]")]
    pub stride: [usize; 3],
    /// The reference's symmetric padding (time, height, width). Height and width are padded on both
    /// sides; time is padded by `2 * padding[0]` frames at the front only.
    #[config(default = "[0, 0, 0]")]
    pub padding: [usize; 3],
}

impl CausalConv3dConfig {
    /// Builds the layer with Kaiming-uniform weights (meant to be overwritten by a checkpoint).
    pub fn init<B: Backend>(&self, device: &B::Device) -> CausalConv3d<B> {
        let [cin, cout] = self.channels;
        let [kt, kh, kw] = self.kernel_size;
        let fan_in = cin * kt * kh * kw;
        CausalConv3d {
            weight: kaiming().init_with([cout, cin, kt, kh, kw], Some(fan_in), None, device),
            bias: kaiming().init_with([cout], Some(fan_in), None, device),
            stride: self.stride,
            padding: self.padding,
        }
    }
}

/// A 3D convolution that is causal in time (`WanCausalConv3d`, original `CausalConv3d`).
///
/// Time is padded only at the front, by `2 * padding[0]` frames; when a history of previous frames
/// is given, it takes the place of that many zero frames.
#[derive(Module, Debug)]
pub struct CausalConv3d<B: Backend> {
    /// Kernel `[out, in, kt, kh, kw]`.
    pub weight: Param<Tensor<B, 5>>,
    /// Bias `[out]`.
    pub bias: Param<Tensor<B, 1>>,
    /// Stride (time, height, width).
    pub stride: [usize; 3],
    /// Reference padding (time, height, width); see [`CausalConv3dConfig::padding`].
    pub padding: [usize; 3],
}

impl<B: Backend> CausalConv3d<B> {
    /// Convolves `x`, optionally preceded by `history` frames.
    ///
    /// # Shapes
    /// - `x`: `[batch, in, frames, height, width]`
    /// - `history`: `[batch, in, h, height, width]` with `h <= 2 * padding[0]` (ignored when the
    ///   layer has no temporal padding)
    /// - returns `[batch, out, frames', height', width']`
    pub fn forward(&self, x: Tensor<B, 5>, history: Option<Tensor<B, 5>>) -> Tensor<B, 5> {
        let mut x = x;
        let mut front = 2 * self.padding[0];
        if front > 0 {
            if let Some(h) = history {
                front = front.saturating_sub(h.dims()[2]);
                x = Tensor::cat(vec![h, x], 2);
            }
        }
        if front > 0 {
            x = pad_zeros(x, [(0, 0), (0, 0), (front, 0), (0, 0), (0, 0)]);
        }
        conv3d(
            x,
            self.weight.val(),
            Some(self.bias.val()),
            self.stride,
            [0, self.padding[1], self.padding[2]],
        )
    }

    /// Convolves one chunk, using and updating this layer's slot of `cache` (for temporal kernel
    /// 3: the history is the last two frames seen before this chunk).
    ///
    /// # Shapes
    /// - `x`: `[batch, in, frames, height, width]`
    /// - returns `[batch, out, frames, height', width']`
    pub fn forward_cached(&self, x: Tensor<B, 5>, cache: &mut FeatCache<B>) -> Tensor<B, 5> {
        let slot = cache.next_slot();
        let previous = match std::mem::take(slot) {
            CacheSlot::Frames(t) => Some(t),
            _ => None,
        };
        *slot = CacheSlot::Frames(trailing_frames(&x, previous.as_ref()));
        self.forward(x, previous)
    }
}

// ---------------------------------------------------------------------------------------------
// RMS norms
// ---------------------------------------------------------------------------------------------

/// `x / max(||x||_2 over dim 1, 1e-12) * sqrt(C)`, the reference's `F.normalize(x, dim=1) * C^0.5`.
/// On LibTorch, `x * (gamma * sqrt(C)) / max(||x||, eps)` as three PyTorch kernels
/// ([`crate::fused::channel_l2_norm`]) instead of burn's seven elementwise passes.
fn normalize_channels_scaled<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, D>,
) -> Tensor<B, D> {
    let c = x.dims()[1] as f64;
    match crate::fused::channel_l2_norm(x, &gamma, c.sqrt(), NORMALIZE_EPS) {
        Ok(y) => y,
        Err(x) => normalize_channels(x) * gamma,
    }
}

fn normalize_channels<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let c = x.dims()[1] as f64;
    let norm = x
        .clone()
        .powi_scalar(2)
        .sum_dim(1)
        .sqrt()
        .clamp_min(NORMALIZE_EPS);
    (x / norm).mul_scalar(c.sqrt())
}

/// Configuration of the channel RMS norms ([`VideoRmsNorm`], [`ImageRmsNorm`]).
#[derive(Config, Debug)]
pub struct ChannelRmsNormConfig {
    /// Number of channels.
    pub channels: usize,
}

impl ChannelRmsNormConfig {
    /// A norm over `[batch, C, frames, height, width]`, `gamma` of shape `[C, 1, 1, 1]`, all ones.
    pub fn init_video<B: Backend>(&self, device: &B::Device) -> VideoRmsNorm<B> {
        VideoRmsNorm {
            gamma: Initializer::Ones.init([self.channels, 1, 1, 1], device),
        }
    }

    /// A norm over `[batch, C, height, width]`, `gamma` of shape `[C, 1, 1]`, all ones.
    pub fn init_image<B: Backend>(&self, device: &B::Device) -> ImageRmsNorm<B> {
        ImageRmsNorm {
            gamma: Initializer::Ones.init([self.channels, 1, 1], device),
        }
    }
}

/// Channel RMS norm of video features (`WanRMS_norm(images=False)`): L2-normalise over channels,
/// times `sqrt(C)` and `gamma`. No bias in the Wan2.1 VAE.
#[derive(Module, Debug)]
pub struct VideoRmsNorm<B: Backend> {
    /// Per-channel scale `[C, 1, 1, 1]`.
    pub gamma: Param<Tensor<B, 4>>,
}

impl<B: Backend> VideoRmsNorm<B> {
    /// # Shapes
    /// - `x`: `[batch, C, frames, height, width]` -> same shape
    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let gamma: Tensor<B, 5> = self.gamma.val().unsqueeze_dim(0);
        normalize_channels_scaled(x, gamma)
    }
}

/// Channel RMS norm of per-frame features (`WanRMS_norm(images=True)`), used by the attention block.
#[derive(Module, Debug)]
pub struct ImageRmsNorm<B: Backend> {
    /// Per-channel scale `[C, 1, 1]`.
    pub gamma: Param<Tensor<B, 3>>,
}

impl<B: Backend> ImageRmsNorm<B> {
    /// # Shapes
    /// - `x`: `[batch, C, height, width]` -> same shape
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let gamma: Tensor<B, 4> = self.gamma.val().unsqueeze_dim(0);
        normalize_channels_scaled(x, gamma)
    }

    /// The same norm applied to every frame of a video.
    ///
    /// # Shapes
    /// - `x`: `[batch, C, frames, height, width]` -> same shape
    pub fn forward_video(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let gamma: Tensor<B, 5> = self.gamma.val().unsqueeze_dims(&[0, 2]);
        normalize_channels_scaled(x, gamma)
    }
}

// ---------------------------------------------------------------------------------------------
// Residual block
// ---------------------------------------------------------------------------------------------

/// Configuration of a [`ResidualBlock`].
#[derive(Config, Debug)]
pub struct ResidualBlockConfig {
    /// Input channels.
    pub in_dim: usize,
    /// Output channels.
    pub out_dim: usize,
}

impl ResidualBlockConfig {
    /// Builds the block; a 1x1x1 shortcut convolution exists only when the channel count changes.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ResidualBlock<B> {
        let (i, o) = (self.in_dim, self.out_dim);
        ResidualBlock {
            norm1: ChannelRmsNormConfig::new(i).init_video(device),
            conv1: CausalConv3dConfig::new([i, o], [3, 3, 3])
                .with_padding([1, 1, 1])
                .init(device),
            norm2: ChannelRmsNormConfig::new(o).init_video(device),
            conv2: CausalConv3dConfig::new([o, o], [3, 3, 3])
                .with_padding([1, 1, 1])
                .init(device),
            conv_shortcut: (i != o)
                .then(|| CausalConv3dConfig::new([i, o], [1, 1, 1]).init(device)),
        }
    }
}

/// Residual block (`WanResidualBlock`, original `ResidualBlock`):
/// `shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))))))`.
#[derive(Module, Debug)]
pub struct ResidualBlock<B: Backend> {
    /// First norm (original `residual.0`).
    pub norm1: VideoRmsNorm<B>,
    /// First 3x3x3 causal convolution (original `residual.2`).
    pub conv1: CausalConv3d<B>,
    /// Second norm (original `residual.3`).
    pub norm2: VideoRmsNorm<B>,
    /// Second 3x3x3 causal convolution (original `residual.6`).
    pub conv2: CausalConv3d<B>,
    /// 1x1x1 shortcut when input and output channels differ (original `shortcut`).
    pub conv_shortcut: Option<CausalConv3d<B>>,
}

impl<B: Backend> ResidualBlock<B> {
    /// One chunk through the block, with two cached convolutions.
    ///
    /// # Shapes
    /// - `x`: `[batch, in, frames, height, width]` -> `[batch, out, frames, height, width]`
    pub fn forward_cached(&self, x: Tensor<B, 5>, cache: &mut FeatCache<B>) -> Tensor<B, 5> {
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(x.clone(), None),
            None => x.clone(),
        };
        let h = silu(self.norm1.forward(x));
        let h = self.conv1.forward_cached(h, cache);
        let h = silu(self.norm2.forward(h));
        let h = self.conv2.forward_cached(h, cache);
        h + shortcut
    }
}

// ---------------------------------------------------------------------------------------------
// Attention block
// ---------------------------------------------------------------------------------------------

/// Configuration of an [`AttentionBlock`].
#[derive(Config, Debug)]
pub struct AttentionBlockConfig {
    /// Channels.
    pub dim: usize,
}

impl AttentionBlockConfig {
    /// Builds the block.
    pub fn init<B: Backend>(&self, device: &B::Device) -> AttentionBlock<B> {
        let d = self.dim;
        AttentionBlock {
            norm: ChannelRmsNormConfig::new(d).init_image(device),
            to_qkv: Conv2dConfig::new([d, 3 * d], [1, 1]).init(device),
            proj: Conv2dConfig::new([d, d], [1, 1]).init(device),
        }
    }
}

/// Single-head self-attention over the pixels of each frame (`WanAttentionBlock`), with a
/// residual connection. Frames do not see each other, so chunking does not affect it.
#[derive(Module, Debug)]
pub struct AttentionBlock<B: Backend> {
    /// Norm before the projections.
    pub norm: ImageRmsNorm<B>,
    /// 1x1 convolution to queries, keys and values (`3 * dim` channels, in that order).
    pub to_qkv: Conv2d<B>,
    /// 1x1 output projection.
    pub proj: Conv2d<B>,
}

impl<B: Backend> AttentionBlock<B> {
    /// # Shapes
    /// - `x`: `[batch, C, frames, height, width]` -> same shape
    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let [b, c, t, h, w] = x.dims();
        let (n, hw) = (b * t, h * w);
        let identity = x.clone();
        // The norm first, on the video layout (it acts over channels at each position, so it
        // commutes with moving frames into the batch): its output is a new tensor, and the
        // transposes below never view `identity`'s memory. burn-tch 0.21's `swap_dims` returns a
        // view that it does not track as shared, so the norm's in-place division on a transposed
        // view of `x` wrote the normalised features into `identity` (LibTorch inference only;
        // autodiff keeps other references): the residual then added the wrong tensor
        // (benches/NOTES.md, 2026-11-27, "VAE check").
        let y = self
            .norm
            .forward_video(x)
            .swap_dims(1, 2)
            .reshape([n, c, h, w]);
        let qkv = conv2d_module(&self.to_qkv, y); // [n, 3c, h, w]
        let qkv = qkv.reshape([n, 3 * c, hw]).swap_dims(1, 2); // [n, hw, 3c]
        let head = |i: usize| -> Tensor<B, 4> { qkv.clone().narrow(2, i * c, c).unsqueeze_dim(1) };
        let out = attention(
            head(0),
            head(1),
            head(2),
            None,
            None,
            AttentionModuleOptions::default(),
        );
        let out = out
            .reshape([n, hw, c])
            .swap_dims(1, 2)
            .reshape([n, c, h, w]);
        let out = conv2d_module(&self.proj, out);
        out.reshape([b, t, c, h, w]).swap_dims(1, 2) + identity
    }
}

// ---------------------------------------------------------------------------------------------
// Resample
// ---------------------------------------------------------------------------------------------

/// What a [`Resample`] layer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResampleMode {
    /// Nearest x2 in height and width, then a 3x3 convolution (`upsample2d`).
    Upsample2d,
    /// Like [`Upsample2d`](Self::Upsample2d), preceded by a causal time convolution to `2C`
    /// channels whose halves become two consecutive frames (`upsample3d`); the first chunk skips
    /// it, so frames go 1 -> 1 for the first latent frame and t -> 2t afterwards.
    Upsample3d,
    /// Zero pad right and bottom by one, 3x3 convolution with stride 2 (`downsample2d`).
    Downsample2d,
    /// Like [`Downsample2d`](Self::Downsample2d), followed by a time convolution (kernel 3,
    /// stride 2) over the previous chunk's last frame and this chunk (`downsample3d`); the first
    /// chunk skips it.
    Downsample3d,
}

/// Configuration of a [`Resample`] layer.
#[derive(Config, Debug)]
pub struct ResampleConfig {
    /// Input channels.
    pub dim: usize,
    /// What the layer does.
    pub mode: ResampleMode,
}

impl ResampleConfig {
    /// Builds the layer. Upsamplers halve the channels (`dim -> dim / 2`), downsamplers keep them.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Resample<B> {
        let d = self.dim;
        let (resample, time_conv) = match self.mode {
            ResampleMode::Upsample2d | ResampleMode::Upsample3d => (
                Conv2dConfig::new([d, d / 2], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device),
                (self.mode == ResampleMode::Upsample3d).then(|| {
                    CausalConv3dConfig::new([d, 2 * d], [3, 1, 1])
                        .with_padding([1, 0, 0])
                        .init(device)
                }),
            ),
            ResampleMode::Downsample2d | ResampleMode::Downsample3d => (
                Conv2dConfig::new([d, d], [3, 3])
                    .with_stride([2, 2])
                    .init(device),
                (self.mode == ResampleMode::Downsample3d).then(|| {
                    CausalConv3dConfig::new([d, d], [3, 1, 1])
                        .with_stride([2, 1, 1])
                        .init(device)
                }),
            ),
        };
        Resample {
            resample,
            time_conv,
            mode: self.mode,
        }
    }
}

/// Spatial (and optionally temporal) up- or downsampling (`WanResample`, original `Resample`).
#[derive(Module, Debug)]
pub struct Resample<B: Backend> {
    /// The per-frame 3x3 convolution (reference `resample.1`).
    pub resample: Conv2d<B>,
    /// The time convolution of the 3D modes (reference `time_conv`).
    pub time_conv: Option<CausalConv3d<B>>,
    /// What the layer does.
    pub mode: ResampleMode,
}

/// Nearest-neighbour x2 upsampling of height and width (`nearest-exact` with an integer factor
/// copies each pixel into a 2x2 block).
///
/// # Shapes
/// - `x`: `[n, c, h, w]` -> `[n, c, 2h, 2w]`
fn upsample_nearest_2x<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h, 1, w, 1])
        .expand([n, c, h, 2, w, 2])
        .reshape([n, c, 2 * h, 2 * w])
}

impl<B: Backend> Resample<B> {
    /// One chunk through the layer, using and updating its cache slot (3D modes only).
    ///
    /// # Shapes
    /// - `x`: `[batch, C, frames, height, width]`
    /// - returns `[batch, C/2, frames', 2*height, 2*width]` (upsampling; `frames' = frames` on the
    ///   first chunk of `Upsample3d` and for `Upsample2d`, `2*frames` afterwards) or
    ///   `[batch, C, frames', height/2, width/2]` (downsampling; `Downsample3d` after its first
    ///   chunk: `frames' = frames / 2` for even chunk lengths).
    pub fn forward_cached(&self, x: Tensor<B, 5>, cache: &mut FeatCache<B>) -> Tensor<B, 5> {
        let mut x = x;
        if let (ResampleMode::Upsample3d, Some(time_conv)) = (self.mode, &self.time_conv) {
            let slot = cache.next_slot();
            match std::mem::take(slot) {
                CacheSlot::Empty => *slot = CacheSlot::FirstChunkDone,
                previous => {
                    let [b, c, t, h, w] = x.dims();
                    let history = match previous {
                        CacheSlot::Frames(p) => Some(p),
                        _ => None, // after the first chunk: zero history
                    };
                    let keep = match (&history, t >= CACHE_FRAMES) {
                        (Some(p), _) => trailing_frames(&x, Some(p)),
                        (None, true) => trailing_frames(&x, None),
                        (None, false) => Tensor::cat(vec![x.zeros_like(), x.clone()], 2),
                    };
                    *slot = CacheSlot::Frames(keep);
                    // [b, 2c, t, h, w] -> channel half s of frame i becomes frame 2i + s.
                    let y = time_conv.forward(x, history);
                    x = y
                        .reshape([b, 2, c, t, h, w])
                        .permute([0, 2, 3, 1, 4, 5])
                        .reshape([b, c, 2 * t, h, w]);
                }
            }
        }

        let [b, c, t, h, w] = x.dims();
        let frames = x.swap_dims(1, 2).reshape([b * t, c, h, w]);
        let frames = match self.mode {
            ResampleMode::Upsample2d | ResampleMode::Upsample3d => {
                conv2d_module(&self.resample, upsample_nearest_2x(frames))
            }
            ResampleMode::Downsample2d | ResampleMode::Downsample3d => conv2d_module(
                &self.resample,
                pad_zeros(frames, [(0, 0), (0, 0), (0, 1), (0, 1)]),
            ),
        };
        let [_, c2, h2, w2] = frames.dims();
        let mut x = frames.reshape([b, t, c2, h2, w2]).swap_dims(1, 2);

        if let (ResampleMode::Downsample3d, Some(time_conv)) = (self.mode, &self.time_conv) {
            let slot = cache.next_slot();
            // A copy, not a view of the whole chunk (see `trailing_frames`).
            let last = Tensor::cat(vec![x.clone().narrow(2, t - 1, 1)], 2);
            if let CacheSlot::Frames(previous) = std::mem::take(slot) {
                let pt = previous.dims()[2];
                let input = Tensor::cat(vec![previous.narrow(2, pt - 1, 1), x], 2);
                x = time_conv.forward(input, None);
            }
            *slot = CacheSlot::Frames(last);
        }
        x
    }
}

// ---------------------------------------------------------------------------------------------
// Middle block
// ---------------------------------------------------------------------------------------------

/// Configuration of a [`MidBlock`].
#[derive(Config, Debug)]
pub struct MidBlockConfig {
    /// Channels.
    pub dim: usize,
}

impl MidBlockConfig {
    /// Builds residual, attention, residual.
    pub fn init<B: Backend>(&self, device: &B::Device) -> MidBlock<B> {
        let res = ResidualBlockConfig::new(self.dim, self.dim);
        MidBlock {
            resnets: vec![res.init(device), res.init(device)],
            attentions: vec![AttentionBlockConfig::new(self.dim).init(device)],
        }
    }
}

/// Middle of the encoder and of the decoder (`WanMidBlock`, original `middle`):
/// residual block, attention, residual block.
#[derive(Module, Debug)]
pub struct MidBlock<B: Backend> {
    /// Residual blocks (original `middle.0` and `middle.2`).
    pub resnets: Vec<ResidualBlock<B>>,
    /// Attention blocks, one between each pair of residual blocks (original `middle.1`).
    pub attentions: Vec<AttentionBlock<B>>,
}

impl<B: Backend> MidBlock<B> {
    /// One chunk through the block.
    ///
    /// # Shapes
    /// - `x`: `[batch, C, frames, height, width]` -> same shape
    pub fn forward_cached(&self, x: Tensor<B, 5>, cache: &mut FeatCache<B>) -> Tensor<B, 5> {
        let mut x = x;
        if let Some(first) = self.resnets.first() {
            x = first.forward_cached(x, cache);
        }
        for (attn, res) in self.attentions.iter().zip(self.resnets.iter().skip(1)) {
            x = attn.forward(x);
            x = res.forward_cached(x, cache);
        }
        x
    }
}
