//! The causal 3D decoder (`WanDecoder3d`, original `Decoder3d`).

use crate::fused::silu;
use burn::prelude::*;

use super::cache::FeatCache;
use super::config::WanVaeConfig;
use super::layers::{
    CausalConv3d, CausalConv3dConfig, ChannelRmsNormConfig, MidBlock, MidBlockConfig, Resample,
    ResampleConfig, ResampleMode, ResidualBlock, ResidualBlockConfig, VideoRmsNorm,
};

/// One decoder stage (`WanUpBlock`; original `decoder.upsamples`, flattened): residual blocks,
/// then an upsampler on every stage but the last.
#[derive(Module, Debug)]
pub struct UpBlock<B: Backend> {
    /// `num_res_blocks + 1` residual blocks.
    pub resnets: Vec<ResidualBlock<B>>,
    /// The upsampler (diffusers `upsamplers.0`), halving the channels.
    pub upsampler: Option<Resample<B>>,
}

/// The decoder: `z_dim` latent channels -> video, one latent frame at a time.
#[derive(Module, Debug)]
pub struct Decoder3d<B: Backend> {
    /// Input convolution `z_dim -> top channels` (original `conv1`).
    pub conv_in: CausalConv3d<B>,
    /// Middle block (original `middle`).
    pub mid_block: MidBlock<B>,
    /// Stages, from the latent resolution up.
    pub up_blocks: Vec<UpBlock<B>>,
    /// Output norm (original `head.0`).
    pub norm_out: VideoRmsNorm<B>,
    /// Output convolution to `out_channels` (original `head.2`).
    pub conv_out: CausalConv3d<B>,
}

impl WanVaeConfig {
    /// Builds the decoder of this configuration.
    pub fn init_decoder<B: Backend>(&self, device: &B::Device) -> Decoder3d<B> {
        let base = self.decoder_dim();
        let dims: Vec<usize> = std::iter::once(*self.dim_mult.last().unwrap_or(&1))
            .chain(self.dim_mult.iter().rev().copied())
            .map(|m| base * m)
            .collect();
        let conv3 = |i: usize, o: usize| {
            CausalConv3dConfig::new([i, o], [3, 3, 3])
                .with_padding([1, 1, 1])
                .init(device)
        };
        let temporal = self.temperal_upsample();
        let stages = self.dim_mult.len();
        let mut up_blocks = Vec::with_capacity(stages);
        for i in 0..stages {
            // Every upsampler halves the channels, so later stages start at half width.
            let mut in_dim = if i > 0 { dims[i] / 2 } else { dims[i] };
            let out_dim = dims[i + 1];
            let mut resnets = Vec::with_capacity(self.num_res_blocks + 1);
            for _ in 0..=self.num_res_blocks {
                resnets.push(ResidualBlockConfig::new(in_dim, out_dim).init(device));
                in_dim = out_dim;
            }
            let upsampler = (i + 1 != stages).then(|| {
                let mode = if temporal[i] {
                    ResampleMode::Upsample3d
                } else {
                    ResampleMode::Upsample2d
                };
                ResampleConfig::new(out_dim, mode).init(device)
            });
            up_blocks.push(UpBlock { resnets, upsampler });
        }
        let last = dims[stages];
        Decoder3d {
            conv_in: conv3(self.z_dim, dims[0]),
            mid_block: MidBlockConfig::new(dims[0]).init(device),
            up_blocks,
            norm_out: ChannelRmsNormConfig::new(last).init_video(device),
            conv_out: conv3(last, self.out_channels),
        }
    }
}

impl<B: Backend> Decoder3d<B> {
    /// Decodes one latent frame, using and updating `cache`. Not clamped.
    ///
    /// # Shapes
    /// - `x`: `[batch, z_dim, 1, h, w]` (after the post-quant convolution)
    /// - returns `[batch, out_channels, n, h * s, w * s]`: `n = 1` for the first latent frame,
    ///   the temporal stride (4 for Wan2.1) afterwards
    pub fn forward_chunk(&self, x: Tensor<B, 5>, cache: &mut FeatCache<B>) -> Tensor<B, 5> {
        cache.start_chunk();
        let x = self.conv_in.forward_cached(x, cache);
        let mut x = self.mid_block.forward_cached(x, cache);
        for block in &self.up_blocks {
            for res in &block.resnets {
                x = res.forward_cached(x, cache);
            }
            if let Some(up) = &block.upsampler {
                x = up.forward_cached(x, cache);
            }
        }
        let x = silu(self.norm_out.forward(x));
        self.conv_out.forward_cached(x, cache)
    }
}
