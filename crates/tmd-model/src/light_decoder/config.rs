//! Configuration of the [`LightDecoder`](super::LightDecoder): sizes and named presets.

use burn::config::Config;

use crate::error::{ModelError, Result};

/// Configuration of a [`LightDecoder`](super::LightDecoder).
///
/// `channels[0]` is the width at the latent resolution; each further entry is the width after one
/// nearest-neighbour x2 upsampling, and the output convolution adds a last x2 (sub-pixel), so the
/// spatial stride is `2^channels.len()` (8 for Wan2.1: three entries). The temporal stride is
/// produced by one channel-to-time expansion at the last width.
#[derive(Config, Debug, PartialEq)]
pub struct LightDecoderConfig {
    /// Latent channels in (the VAE's `z_dim`: 16 for Wan2.1).
    #[config(default = 16)]
    pub latent_channels: usize,
    /// Video channels out (RGB: 3).
    #[config(default = 3)]
    pub out_channels: usize,
    /// Frames made per latent frame after the first (the VAE's temporal stride: 4 for Wan2.1;
    /// `t` latent frames give `1 + temporal_stride (t - 1)` frames).
    #[config(default = 4)]
    pub temporal_stride: usize,
    /// Width at the latent resolution, then after each nearest x2 upsampling.
    #[config(default = "vec![64, 48, 32]")]
    pub channels: Vec<usize>,
    /// Residual blocks with causal temporal mixing at the latent resolution and latent frame
    /// rate.
    #[config(default = 2)]
    pub latent_blocks: usize,
    /// Residual blocks with causal temporal mixing at the last width and the video frame rate,
    /// after the expansion.
    #[config(default = 0)]
    pub frame_blocks: usize,
}

/// Names accepted by [`LightDecoderConfig::preset`].
pub const PRESETS: &[&str] = &["world", "world-wide", "wan2.1", "tiny"];

impl LightDecoderConfig {
    /// The bundled world's light decoder: its VAE (`assets/world/vae`) has 16 latent channels,
    /// 4x temporal but only 4x spatial compression (64x64 clips -> 16x16 latents), hence two
    /// widths, 48 at the latent resolution and 32 after one x2 upsampling (the sub-pixel output
    /// makes the second x2), with two latent-rate mixing blocks and no frame-rate block. Sized to
    /// decode the README's first clip (5 latent frames of 16x16 -> 17 frames of 64x64) in about
    /// a tenth of the full decoder's time on two CPU cores (docs/results/light-decoder.md).
    pub fn world() -> Self {
        Self::new().with_channels(vec![48, 32])
    }

    /// [`LightDecoderConfig::world`] widened to 64/48 (about 1.8x its multiply-adds per latent
    /// frame: 118M against 66M), for when the narrow one loses detail the evaluator reads.
    pub fn world_wide() -> Self {
        Self::new().with_channels(vec![64, 48])
    }

    /// For Wan2.1 (16 latent channels, 4x8x8): the widths of TAEHV's decoder (256/128/64/64),
    /// the tiny autoencoder FastVideo decodes Wan clips with, three latent-rate mixing blocks and
    /// one frame-rate block. Real footage has texture the world does not; this is the starting
    /// point for `cargo xtask distill-decoder` on a converted Wan2.1 directory.
    pub fn wan2_1() -> Self {
        Self::new()
            .with_channels(vec![256, 128, 64])
            .with_latent_blocks(3)
            .with_frame_blocks(1)
    }

    /// A test configuration for the tiny random VAE (`WanVaeConfig::tiny`: 4 latent channels,
    /// 4x8x8): widths 8/8/4/4, one block each.
    pub fn tiny() -> Self {
        Self::new()
            .with_latent_channels(4)
            .with_channels(vec![8, 8, 4])
            .with_latent_blocks(1)
            .with_frame_blocks(1)
    }

    /// A preset by name: `"world"`, `"world-wide"`, `"wan2.1"` or `"tiny"`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "world" => Ok(Self::world()),
            "world-wide" | "world_wide" => Ok(Self::world_wide()),
            "wan2.1" | "wan2_1" => Ok(Self::wan2_1()),
            "tiny" => Ok(Self::tiny()),
            _ => Err(ModelError::UnknownPreset {
                name: name.to_string(),
                known: PRESETS.join(", "),
            }),
        }
    }

    /// Spatial stride: `2^channels.len()`.
    pub fn spatial_stride(&self) -> usize {
        1 << self.channels.len()
    }

    /// Checks the sizes, with the reason as an error message.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.latent_channels == 0 || self.out_channels == 0 || self.temporal_stride == 0 {
            return Err(
                "latent_channels, out_channels and temporal_stride must be positive".into(),
            );
        }
        if self.channels.is_empty() || self.channels.contains(&0) {
            return Err(format!(
                "channels must be a non-empty list of positive widths, got {:?}",
                self.channels
            ));
        }
        Ok(())
    }
}
