//! A light decoder from Wan's latent space to pixels, distilled from the full VAE decoder.
//!
//! The full Wan VAE decoder is a causal 3D convolution stack run latent frame by latent frame
//! with a feature cache; on this project's 2-core CPU it takes ~70% of a bundled-student clip
//! (1.18 of 1.66 s). Peers replace it at inference with a small decoder trained to reproduce it:
//! TAEHV (FastVideo's decoder for FastWan), LightX2V's `lighttae`, Flash-VAED (a pruned Wan
//! decoder). This one takes the *normalised* latents the DiT produces (so the VAE's latent
//! statistics are learned, not applied) and is trained by `cargo xtask distill-decoder`.
//!
//! ```no_run
//! use burn::backend::NdArray;
//! use burn::prelude::*;
//! use tmd_model::light_decoder::LightDecoderConfig;
//!
//! let device = Default::default();
//! let decoder = LightDecoderConfig::world().init::<NdArray>(&device);
//! let z = Tensor::<NdArray, 5>::zeros([1, 16, 5, 16, 16], &device); // normalised latents
//! let video = decoder.forward(z); // [1, 3, 17, 64, 64] in [-1, 1]
//! ```
//!
//! # Architecture
//!
//! Per-frame 2D convolutions with cheap causal temporal mixing, in the spirit of TAEHV; all but
//! the last layer run at the *latent* frame rate:
//!
//! 1. frames are folded into the batch; `conv_in` (3x3) maps the latent channels to
//!    `channels[0]`;
//! 2. `latent_blocks` [`MixBlock`]s at the latent resolution: a residual pair of 3x3
//!    convolutions whose first one also sees the previous latent frame's features (zeros before
//!    the first), so time is mixed causally with one frame of memory;
//! 3. for each further width: nearest-neighbour x2 upsampling, a 3x3 convolution and ReLU;
//! 4. channel-to-time expansion: a 1x1 convolution to `temporal_stride * last` channels, read as
//!    `temporal_stride` frames per latent frame; the first `temporal_stride - 1` frames are
//!    dropped, so `t` latent frames give `1 + temporal_stride (t - 1)` frames exactly as the VAE
//!    does (its first latent frame encodes one frame);
//! 5. `frame_blocks` [`MixBlock`]s at the video frame rate (0 in the world preset);
//! 6. `conv_out` (3x3) to `4 x RGB` channels and depth-to-space: the last x2 is a sub-pixel
//!    convolution, so no layer runs at the output resolution; [`LightDecoder::forward`] clamps
//!    to `[-1, 1]` like the VAE.
//!
//! The decoder is causal in time like the VAE (frames of latent frame `k` depend on latent
//! frames `0..=k` only; tested), which also makes training on the first latent frames of a clip
//! exact.
//!
//! # Why this shape: measurements
//!
//! On the 2-core CPU (NdArray, release, random weights, `cargo run --release -p tmd-model
//! --example light_decoder_speed`), for the README's first clip (5 latent frames of 16x16 ->
//! 17 frames of 64x64; the world VAE compresses 4x in space), other engineers' builds running
//! beside (load ~6, so only ratios are firm):
//!
//! | variant | params | decode |
//! |---|---|---|
//! | full VAE decoder (`assets/world`; 1.88M parameters with the encoder) | - | 1.55 s |
//! | first design: expansion at the latent resolution, widths 48/32/16 with a 16-wide 3x3 stage at 64x64, one frame-rate block, burn's conv2d | 222k | 0.276 s |
//! | the same through the per-tap products of [`crate::conv`] | 222k | 0.369 s |
//! | this design, widths 48/32, 2 latent blocks, no frame block (the world preset), burn's conv2d | 153k | **0.067 s** |
//! | the same through the per-tap products | 153k | 0.456 s |
//! | widths 64/32, 2 latent blocks | 257k | 0.191 s |
//!
//! The first design spent 3/4 of its work at the frame rate and full resolution; moving the
//! channel-to-time expansion after the upsampling (the work at 4x fewer frames) and making the
//! last x2 a sub-pixel convolution cut it 4x. Inference uses burn's own convolution (7x faster
//! than the per-tap products here); training uses [`conv_unfold`] (4 s per step of 4 clips,
//! against 19 s with burn's convolution, whose weight gradient on NdArray is a direct loop).
//! The bundled world's decoder (`assets/world/decoder-light/`, its default) is the wider
//! [`LightDecoderConfig::world_wide`] (64/48, 273k parameters), distilled on an H100: 33.6 dB
//! against the full decoder on held-out clips, the student's prompt accuracy kept, 2.7x the
//! Frechet distance; `docs/results/light-decoder.md`.

mod config;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::activation::relu;

pub use config::{LightDecoderConfig, PRESETS};

/// Sub-directory of a model directory holding the light decoder (`config.json` with a
/// [`LightDecoderConfig`], and its weights as Burnpack or safetensors).
pub const LIGHT_DECODER_DIR: &str = "decoder-light";

/// Runs one convolution (stride 1, "same" padding): burn's own kernel for inference (on NdArray
/// 7x faster than the per-tap products at the world's sizes, see the module docs); when
/// differentiating, [`conv_unfold`] (one batched matrix product per layer, whose backward is
/// matrix products too: NdArray's native weight gradient is a direct loop), or burn's kernel
/// under `TMD_CONV=native` (LibTorch and CUDA runs).
fn run_conv<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    if B::ad_enabled(&x.device()) && !crate::conv::native_requested() {
        conv_unfold(conv, x)
    } else {
        conv.forward(x)
    }
}

/// A stride-1 "same" convolution as unfold + one batched matrix product: the `k x k` shifted
/// windows of the zero-padded input are stacked along the channels (`[n, k^2 c, h w]`) and
/// multiplied by the weight read as `[out, k^2 c]`. Equal to `conv.forward` up to float
/// summation order (tested).
///
/// # Shapes
/// - `x`: `[n, c, h, w]` -> `[n, out, h, w]`
pub fn conv_unfold<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [o, c, k, _] = conv.weight.dims();
    let [n, _, h, w] = x.dims();
    let p = k / 2;
    let cols = if k == 1 {
        x.reshape([n, c, h * w])
    } else {
        let xp = crate::dtype::pad_zeros(x, [(0, 0), (0, 0), (p, p), (p, p)]);
        let mut taps = Vec::with_capacity(k * k);
        for dy in 0..k {
            for dx in 0..k {
                taps.push(xp.clone().narrow(2, dy, h).narrow(3, dx, w));
            }
        }
        Tensor::cat(taps, 1).reshape([n, k * k * c, h * w])
    };
    let weight = conv
        .weight
        .val()
        .permute([0, 2, 3, 1])
        .reshape([1, o, k * k * c])
        .expand([n, o, k * k * c]);
    let mut y = weight.matmul(cols);
    if let Some(bias) = &conv.bias {
        y = y + bias.val().reshape([1, o, 1]);
    }
    y.reshape([n, o, h, w])
}

fn conv(cin: usize, cout: usize, k: usize) -> Conv2dConfig {
    let p = k / 2;
    Conv2dConfig::new([cin, cout], [k, k]).with_padding(PaddingConfig2d::Explicit(p, p, p, p))
}

/// A residual block with causal temporal mixing: `relu(x + conv2(relu(conv1([x, x_prev]))))`,
/// where `x_prev` is the previous frame's input (zeros for the first frame).
///
/// # Shapes
/// - input: `[batch * frames, channels, h, w]` (frames folded into the batch, frame-major per
///   clip), output: the same
#[derive(Module, Debug)]
pub struct MixBlock<B: Backend> {
    /// 3x3, `2 channels -> channels` (this frame and the previous one).
    pub conv1: Conv2d<B>,
    /// 3x3, `channels -> channels`.
    pub conv2: Conv2d<B>,
}

impl<B: Backend> MixBlock<B> {
    fn new(channels: usize, device: &B::Device) -> Self {
        Self {
            conv1: conv(2 * channels, channels, 3).init(device),
            conv2: conv(channels, channels, 3).init(device),
        }
    }

    /// Runs the block on `frames` frames per clip.
    ///
    /// # Shapes
    /// - `x`: `[batch * frames, channels, h, w]` -> same shape
    pub fn forward(&self, x: Tensor<B, 4>, frames: usize) -> Tensor<B, 4> {
        let prev = previous_frame(x.clone(), frames);
        let y = relu(run_conv(&self.conv1, Tensor::cat(vec![x.clone(), prev], 1)));
        relu(x + run_conv(&self.conv2, y))
    }
}

/// Each frame's predecessor (zeros for the first frame of each clip).
///
/// # Shapes
/// - `x`: `[batch * frames, c, h, w]` -> same shape
fn previous_frame<B: Backend>(x: Tensor<B, 4>, frames: usize) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    if frames <= 1 {
        return x.zeros_like();
    }
    let b = n / frames;
    let x = x.reshape([b, frames, c * h * w]);
    let zeros = crate::dtype::zeros_as(&x, [b, 1, c * h * w]);
    Tensor::cat(vec![zeros, x.narrow(1, 0, frames - 1)], 1).reshape([n, c, h, w])
}

/// Nearest-neighbour x2 upsampling (reshapes and a broadcast, so every backend differentiates it).
///
/// # Shapes
/// - `x`: `[n, c, h, w]` -> `[n, c, 2h, 2w]`
fn upsample2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h, 1, w, 1])
        .expand([n, c, h, 2, w, 2])
        .reshape([n, c, 2 * h, 2 * w])
}

/// The light decoder (see the module docs for the architecture).
#[derive(Module, Debug)]
pub struct LightDecoder<B: Backend> {
    /// 3x3, latent channels -> `channels[0]`.
    pub conv_in: Conv2d<B>,
    /// Mixing blocks at the latent rate.
    pub latent_blocks: Vec<MixBlock<B>>,
    /// 3x3 after each nearest x2 upsampling, `channels[i] -> channels[i + 1]`.
    pub ups: Vec<Conv2d<B>>,
    /// 1x1, `last -> temporal_stride * last` (channel-to-time expansion).
    pub expand: Conv2d<B>,
    /// Mixing blocks at the video frame rate (last width).
    pub frame_blocks: Vec<MixBlock<B>>,
    /// 3x3, last width -> `4 * out_channels`, then depth-to-space x2 (sub-pixel convolution).
    pub conv_out: Conv2d<B>,
    /// Latent channels in.
    pub latent_channels: usize,
    /// Video channels out.
    pub out_channels: usize,
    /// Frames per latent frame after the first.
    pub temporal_stride: usize,
    /// Spatial stride.
    pub spatial_stride: usize,
}

impl LightDecoderConfig {
    /// Builds the decoder with burn's default (Kaiming-uniform) initialisation.
    ///
    /// # Panics
    /// If the config is invalid ([`LightDecoderConfig::validate`]); configs read from disk are
    /// validated with an error first.
    pub fn init<B: Backend>(&self, device: &B::Device) -> LightDecoder<B> {
        if let Err(reason) = self.validate() {
            panic!("invalid LightDecoderConfig: {reason}");
        }
        let c = &self.channels;
        let last = c[c.len() - 1];
        LightDecoder {
            conv_in: conv(self.latent_channels, c[0], 3).init(device),
            latent_blocks: (0..self.latent_blocks)
                .map(|_| MixBlock::new(c[0], device))
                .collect(),
            ups: c
                .windows(2)
                .map(|p| conv(p[0], p[1], 3).init(device))
                .collect(),
            expand: conv(last, self.temporal_stride * last, 1).init(device),
            frame_blocks: (0..self.frame_blocks)
                .map(|_| MixBlock::new(last, device))
                .collect(),
            conv_out: conv(last, 4 * self.out_channels, 3).init(device),
            latent_channels: self.latent_channels,
            out_channels: self.out_channels,
            temporal_stride: self.temporal_stride,
            spatial_stride: self.spatial_stride(),
        }
    }
}

/// Depth-to-space x2: channel `4 c + 2 i + j` becomes pixel `(2 y + i, 2 x + j)` of channel `c`.
///
/// # Shapes
/// - `x`: `[n, 4 c, h, w]` -> `[n, c, 2h, 2w]`
fn depth_to_space2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c4, h, w] = x.dims();
    let c = c4 / 4;
    x.reshape([n, c, 2, 2, h, w])
        .permute([0, 1, 4, 2, 5, 3])
        .reshape([n, c, 2 * h, 2 * w])
}

impl<B: Backend> LightDecoder<B> {
    /// The decoder with its weights cast to `dtype`; it then computes in that dtype (latents of
    /// another dtype are cast on the way in) and returns pixels of that dtype. bf16 on LibTorch and
    /// CUDA, as the full VAE ([`crate::vae::WanVae::with_dtype`]).
    pub fn with_dtype(self, dtype: burn::tensor::DType) -> Self {
        crate::dtype::cast_float_params(self, dtype)
    }

    /// The dtype of the weights (what the decoder computes in).
    pub fn dtype(&self) -> burn::tensor::DType {
        self.conv_in.weight.val().dtype()
    }

    /// Number of video frames made from `latent_frames`: `1 + temporal_stride (latent_frames - 1)`.
    pub fn decoded_frames(&self, latent_frames: usize) -> usize {
        1 + self.temporal_stride * latent_frames.saturating_sub(1)
    }

    /// Decodes normalised latents to a video clamped to `[-1, 1]`.
    ///
    /// # Shapes
    /// - `z`: `[batch, latent_channels, t, h, w]`, `t >= 1`
    /// - returns `[batch, out_channels, 1 + temporal_stride (t - 1), s h, s w]` (`s` the spatial
    ///   stride; `[batch, 3, 1 + 4 (t - 1), 8 h, 8 w]` for Wan2.1)
    ///
    /// # Panics
    /// If `z` does not have `latent_channels` channels or has an empty dimension (callers check
    /// with [`LightDecoder::check_latents`]).
    pub fn forward(&self, z: Tensor<B, 5>) -> Tensor<B, 5> {
        self.forward_unclamped(z).clamp(-1.0, 1.0)
    }

    /// Checks that `dims` are those of a latent this decoder takes
    /// (`[batch, latent_channels, t, h, w]`, no empty dimension).
    ///
    /// # Errors
    /// [`crate::ModelError::BadShape`] naming the expected channels.
    pub fn check_latents(&self, dims: [usize; 5]) -> crate::Result<()> {
        if dims[1] != self.latent_channels || dims.contains(&0) {
            return Err(crate::ModelError::BadShape {
                what: "latents of the light decoder".into(),
                expected: format!(
                    "[batch, {}, frames, height, width], none empty",
                    self.latent_channels
                ),
                found: dims.to_vec(),
            });
        }
        Ok(())
    }

    /// [`LightDecoder::forward`] without the final clamp (what training compares, so that
    /// overshooting pixels still get a gradient).
    ///
    /// # Shapes
    /// As [`LightDecoder::forward`].
    pub fn forward_unclamped(&self, z: Tensor<B, 5>) -> Tensor<B, 5> {
        let [b, c, t, h, w] = z.dims();
        assert!(
            self.check_latents([b, c, t, h, w]).is_ok(),
            "light decoder: latents {:?}, expected [batch, {}, t, h, w]",
            [b, c, t, h, w],
            self.latent_channels
        );
        let dtype = self.dtype();
        let z = if z.dtype() == dtype { z } else { z.cast(dtype) };
        let x = z.permute([0, 2, 1, 3, 4]).reshape([b * t, c, h, w]);
        let mut x = relu(run_conv(&self.conv_in, x));
        for block in &self.latent_blocks {
            x = block.forward(x, t);
        }
        for up in &self.ups {
            x = relu(run_conv(up, upsample2(x)));
        }
        // Channel-to-time: [b*t, s*c, h', w'] -> [b, t*s, c, h', w'], first s-1 frames dropped.
        let [_, _, hh, ww] = x.dims();
        let s = self.temporal_stride;
        let cl = self.expand.weight.dims()[0] / s;
        let frames = self.decoded_frames(t);
        let x = run_conv(&self.expand, x)
            .reshape([b, t * s, cl, hh, ww])
            .narrow(1, s - 1, frames)
            .reshape([b * frames, cl, hh, ww]);
        let mut x = relu(x);
        for block in &self.frame_blocks {
            x = block.forward(x, frames);
        }
        let y = depth_to_space2(run_conv(&self.conv_out, x));
        let [_, oc, oh, ow] = y.dims();
        y.reshape([b, frames, oc, oh, ow]).permute([0, 2, 1, 3, 4])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::Distribution;

    type B = NdArray;

    #[test]
    fn shapes_follow_the_vae_layout() {
        let dev = Default::default();
        let d = LightDecoderConfig::tiny().init::<B>(&dev);
        for t in [1, 2, 3] {
            let z = Tensor::<B, 5>::random([2, 4, t, 3, 5], Distribution::Normal(0.0, 1.0), &dev);
            let y = d.forward(z);
            assert_eq!(y.dims(), [2, 3, 1 + 4 * (t - 1), 24, 40], "t = {t}");
            let max: f32 = y.abs().max().into_scalar();
            assert!(max <= 1.0);
        }
    }

    #[test]
    fn decoding_is_causal_in_time() {
        // The first frames depend only on the first latent frames (as the VAE's decode does):
        // changing latent frame 2 leaves frames 0..=4 unchanged and changes later ones.
        let dev = Default::default();
        let d = LightDecoderConfig::tiny().init::<B>(&dev);
        let z = Tensor::<B, 5>::random([1, 4, 3, 2, 2], Distribution::Normal(0.0, 1.0), &dev);
        let z2 = z.clone().slice_assign(
            [0..1, 0..4, 2..3, 0..2, 0..2],
            Tensor::random([1, 4, 1, 2, 2], Distribution::Normal(0.0, 1.0), &dev),
        );
        let (a, b) = (d.forward_unclamped(z), d.forward_unclamped(z2));
        let head: f32 = (a.clone().narrow(2, 0, 5) - b.clone().narrow(2, 0, 5))
            .abs()
            .max()
            .into_scalar();
        let tail: f32 = (a.narrow(2, 5, 4) - b.narrow(2, 5, 4))
            .abs()
            .max()
            .into_scalar();
        assert_eq!(head, 0.0);
        assert!(tail > 0.0);
    }

    /// Every tensor the decoder makes follows the weights' dtype (burn's `pad` and `zeros` make
    /// the default float type): f64 weights on NdArray give f64 pixels equal to the f32 ones.
    #[test]
    fn computes_in_the_weights_dtype() {
        use burn::tensor::DType;
        let dev = Default::default();
        let d = LightDecoderConfig::tiny().init::<B>(&dev);
        let z = Tensor::<B, 5>::random([1, 4, 2, 3, 3], Distribution::Normal(0.0, 1.0), &dev);
        let want = d.forward_unclamped(z.clone());
        let d64 = d.with_dtype(DType::F64);
        assert_eq!(d64.dtype(), DType::F64);
        let got = d64.forward_unclamped(z);
        assert_eq!(got.dtype(), DType::F64);
        let diff: f32 = (got.cast(DType::F32) - want).abs().max().into_scalar();
        assert!(diff < 1e-4, "{diff}");
    }

    #[test]
    fn depth_to_space_places_subpixels() {
        let dev = Default::default();
        // One output channel, 4 sub-pixel channels of a 1x2 image.
        let x = Tensor::<B, 4>::from_floats(
            [[[[0.0, 10.0]], [[1.0, 11.0]], [[2.0, 12.0]], [[3.0, 13.0]]]],
            &dev,
        );
        let y = depth_to_space2(x);
        assert_eq!(y.dims(), [1, 1, 2, 4]);
        let y = y.into_data().into_vec::<f32>().unwrap();
        assert_eq!(y, vec![0.0, 1.0, 10.0, 11.0, 2.0, 3.0, 12.0, 13.0]);
    }

    #[test]
    fn conv_unfold_matches_burn_conv2d() {
        let dev = Default::default();
        for (cin, cout, k) in [(3, 5, 3), (4, 6, 1)] {
            let layer = conv(cin, cout, k).init::<B>(&dev);
            let x = Tensor::<B, 4>::random([2, cin, 5, 7], Distribution::Normal(0.0, 1.0), &dev);
            let diff: f32 = (conv_unfold(&layer, x.clone()) - layer.forward(x))
                .abs()
                .max()
                .into_scalar();
            assert!(diff < 1e-5, "k = {k}: {diff}");
        }
    }

    #[test]
    fn upsample_repeats_pixels() {
        let dev = Default::default();
        let x = Tensor::<B, 4>::from_floats([[[[1.0, 2.0], [3.0, 4.0]]]], &dev);
        let y = upsample2(x).into_data().into_vec::<f32>().unwrap();
        assert_eq!(
            y,
            vec![1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0]
        );
    }
}
