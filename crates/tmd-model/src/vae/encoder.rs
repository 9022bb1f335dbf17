//! The causal 3D encoder (`WanEncoder3d`, original `Encoder3d`).

use crate::fused::silu;
use burn::prelude::*;

use super::cache::FeatCache;
use super::config::WanVaeConfig;
use super::layers::{
    AttentionBlock, AttentionBlockConfig, CausalConv3d, CausalConv3dConfig, ChannelRmsNormConfig,
    MidBlock, MidBlockConfig, Resample, ResampleConfig, ResampleMode, ResidualBlock,
    ResidualBlockConfig, VideoRmsNorm,
};

/// One entry of the encoder's flat list of stages (diffusers `encoder.down_blocks.{i}`,
/// original `encoder.downsamples.{i}`).
// A few dozen layers per model: the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum EncoderLayer<B: Backend> {
    /// A residual block.
    Residual(ResidualBlock<B>),
    /// A per-frame attention block (only where `attn_scales` asks; none in Wan2.1).
    Attention(AttentionBlock<B>),
    /// A spatial or spatio-temporal downsampler ending a stage.
    Resample(Resample<B>),
}

impl<B: Backend> EncoderLayer<B> {
    /// One chunk through the layer, using and updating `cache`.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, frames, height, width]` -> the layer's output
    pub fn forward_cached(&self, x: Tensor<B, 5>, cache: &mut FeatCache<B>) -> Tensor<B, 5> {
        match self {
            Self::Residual(m) => m.forward_cached(x, cache),
            Self::Attention(m) => m.forward(x),
            Self::Resample(m) => m.forward_cached(x, cache),
        }
    }
}

/// The encoder: video `[batch, 3, frames, H, W]` -> `2 * z_dim` channels at stride
/// (temporal, spatial, spatial), one chunk at a time.
#[derive(Module, Debug)]
pub struct Encoder3d<B: Backend> {
    /// Input convolution 3 -> `base_dim` (original `conv1`).
    pub conv_in: CausalConv3d<B>,
    /// Residual blocks, attention blocks and downsamplers, in order (original `downsamples`).
    pub down_blocks: Vec<EncoderLayer<B>>,
    /// Middle block (original `middle`).
    pub mid_block: MidBlock<B>,
    /// Output norm (original `head.0`).
    pub norm_out: VideoRmsNorm<B>,
    /// Output convolution to `2 * z_dim` channels (original `head.2`).
    pub conv_out: CausalConv3d<B>,
}

impl WanVaeConfig {
    /// Builds the encoder of this configuration.
    pub fn init_encoder<B: Backend>(&self, device: &B::Device) -> Encoder3d<B> {
        let dims: Vec<usize> = std::iter::once(1)
            .chain(self.dim_mult.iter().copied())
            .map(|m| self.base_dim * m)
            .collect();
        let conv3 = |i: usize, o: usize| {
            CausalConv3dConfig::new([i, o], [3, 3, 3])
                .with_padding([1, 1, 1])
                .init(device)
        };
        let mut down_blocks = Vec::new();
        let mut scale = 1.0f64;
        let stages = self.dim_mult.len();
        for i in 0..stages {
            let mut in_dim = dims[i];
            let out_dim = dims[i + 1];
            for _ in 0..self.num_res_blocks {
                down_blocks.push(EncoderLayer::Residual(
                    ResidualBlockConfig::new(in_dim, out_dim).init(device),
                ));
                if self.attn_scales.contains(&scale) {
                    down_blocks.push(EncoderLayer::Attention(
                        AttentionBlockConfig::new(out_dim).init(device),
                    ));
                }
                in_dim = out_dim;
            }
            if i + 1 != stages {
                let mode = if self.temperal_downsample[i] {
                    ResampleMode::Downsample3d
                } else {
                    ResampleMode::Downsample2d
                };
                down_blocks.push(EncoderLayer::Resample(
                    ResampleConfig::new(out_dim, mode).init(device),
                ));
                scale /= 2.0;
            }
        }
        let top = dims[stages];
        Encoder3d {
            conv_in: conv3(self.in_channels, dims[0]),
            down_blocks,
            mid_block: MidBlockConfig::new(top).init(device),
            norm_out: ChannelRmsNormConfig::new(top).init_video(device),
            conv_out: conv3(top, 2 * self.z_dim),
        }
    }
}

impl<B: Backend> Encoder3d<B> {
    /// Encodes one chunk (1 frame first, then 4 frames), using and updating `cache`.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, frames, H, W]`
    /// - returns `[batch, 2 * z_dim, 1, H / s, W / s]` for Wan2.1's chunks (s = spatial stride)
    pub fn forward_chunk(&self, x: Tensor<B, 5>, cache: &mut FeatCache<B>) -> Tensor<B, 5> {
        cache.start_chunk();
        let mut x = self.conv_in.forward_cached(x, cache);
        for layer in &self.down_blocks {
            x = layer.forward_cached(x, cache);
        }
        let x = self.mid_block.forward_cached(x, cache);
        let x = silu(self.norm_out.forward(x));
        self.conv_out.forward_cached(x, cache)
    }
}
